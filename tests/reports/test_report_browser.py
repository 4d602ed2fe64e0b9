"""The report in a real headless browser (Debian's ``chromium``): it loads without errors,
every figure decodes and has a caption naming its model and images, and no table cell shows a
raw JSON key. Fails, not skips, when chromium is missing (CI installs it)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"

# Injected into a copy of the page: records errors (resource ones too, via capture) and, once
# loaded, writes what it saw into the DOM for --dump-dom to return.
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.target.src
  || "error").slice(0, 80)), true);
</script>"""
PROBE_BODY = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const figs = Array.from(document.querySelectorAll("figure"));
  const r = {title: document.title, images: imgs.length,
             decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
             errors: window.__errors,
             captions: figs.map(f => {
               const c = f.querySelector("figcaption");
               return c ? c.textContent : "";
             }),
             cells: Array.from(document.querySelectorAll("th, td")).map(c => c.textContent)};
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


# What a caption must name: the model its numbers come from, and the images.
MODEL = re.compile(r"Models?: .*(FP32 float model|QAT model|frozen integer model|engine)")
IMAGES = re.compile(r"Images: .*(test images of|training batches)")
SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")  # a raw key such as top1_fp32


def _chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    assert path, (
        "chromium is not installed: the report's browser test needs Debian's `chromium` "
        "package (apt-get install -y chromium)"
    )
    return path


def test_report_loads_in_headless_chromium(report_run, tmp_path) -> None:
    browser = _chromium()
    _, html_path = report_run
    page = html_path.read_text()
    page = page.replace("</head>", PROBE_HEAD + "</head>", 1)
    page = page.replace("</body>", PROBE_BODY + "</body>", 1)
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    shot = tmp_path / "shot.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
    ]
    url = probe.resolve().as_uri()
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, f"the page did not finish loading:\n{dom.stdout[-1000:]}\n{dom.stderr[-1000:]}"
    res = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert res["title"].startswith("dynabit report")
    assert res["errors"] == []
    assert res["images"] == 5 and res["decoded"] == res["images"], res
    # Every figure says which model and which images it shows ...
    assert len(res["captions"]) == res["images"]
    for caption in res["captions"]:
        assert MODEL.search(caption) and IMAGES.search(caption), caption
    # ... and no table shows a raw JSON key.
    assert len(res["cells"]) > 40
    raw = [c for c in res["cells"] if SNAKE.search(c)]
    assert raw == [], raw

    subprocess.run(
        [browser, *flags, "--window-size=1200,2000", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000  # the plots were painted
