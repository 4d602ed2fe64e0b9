"""``dynabit report``: one self-contained HTML page (plus Markdown) about a ``dynabit demo`` run.

The HTML embeds its figures as base64 PNGs and its CSS inline (no external URLs), so it can be
mailed or archived as one file; the Markdown beside it links the same PNGs written next to it.
The sections themselves are built in :mod:`dynabit.reports.sections`.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from dynabit.reports.data import threshold_history
from dynabit.reports.sections import Section, build_sections, decision_overlays
from dynabit.utils.files import atomic_write_text

__all__ = [
    "Section",
    "build_sections",
    "decision_overlays",
    "render_html",
    "render_markdown",
    "threshold_history",
    "write_report",
]

CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { border-bottom: 2px solid #446; }
h2 { margin-top: 2em; color: #335; }
p { line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 3px 10px; text-align: left; }
th { background: #eef; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 90%; color: #555; }
"""


def _html_table(s: Section) -> list[str]:
    out = ["<table>"]
    if s.header:
        out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in s.header) + "</tr>")
        out += [
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in s.table
        ]
    else:
        out += [
            f"<tr><th>{html.escape(row[0])}</th>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in row[1:])
            + "</tr>"
            for row in s.table
        ]
    out.append("</table>")
    return out


def render_html(sections: list[Section], title: str) -> str:
    """The self-contained page (figures as base64 data URIs)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2><p>{s.text}</p>')
        if s.table:
            parts += _html_table(s)
        if s.figure is not None:
            data = base64.b64encode(s.figure).decode()
            parts.append(
                f'<figure><img alt="{html.escape(s.title)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(s.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(sections: list[Section], title: str) -> str:
    """Markdown linking ``<key>.png`` beside it."""
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", "", re.sub(r"</?code>", "`", s.text), ""]
        if s.table:
            head = s.header or ("", *[""] * (len(s.table[0]) - 1))
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(row) + " |" for row in s.table]
            lines.append("")
        if s.figure is not None:
            lines += [f"![{s.title}]({s.key}.png)", "", f"*{s.caption}*", ""]
    return "\n".join(lines)


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    samples: int = 6,
    eval_subset: int | None = None,
) -> Path:
    """Write ``report.html``, ``report.md`` and the PNGs into ``out_dir`` (default
    ``<run_dir>/report``); returns the HTML path.

    ``samples``: test images in the decision maps; ``eval_subset``: re-evaluate the refine
    ratios on the first N test images (default: the demo's own evaluation, all of them).
    """
    run = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(run, samples=samples, eval_subset=eval_subset)
    title = f"dynabit report: {run.name or run.resolve().name}"
    for s in sections:
        if s.figure is not None:
            (out / f"{s.key}.png").write_bytes(s.figure)
    atomic_write_text(out / "report.md", render_markdown(sections, title))
    path = out / "report.html"
    atomic_write_text(path, render_html(sections, title))
    return path
