"""``dynabit report``: one self-contained HTML page (plus Markdown) about a ``dynabit demo`` run.

The HTML embeds its figures as base64 PNGs and its CSS inline (no external URLs), so it can be
mailed or archived as one file; the Markdown beside it links the same PNGs written next to it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from dynabit.reports import plots
from dynabit.utils.files import atomic_write_text

CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { border-bottom: 2px solid #446; }
h2 { margin-top: 2em; color: #335; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 3px 10px; text-align: left; }
th { background: #eef; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 90%; color: #555; }
"""


@dataclass
class Section:
    """One part of the report: a title, a paragraph, optional table rows and figure."""

    key: str
    title: str
    text: str
    table: list[tuple[str, str]] = field(default_factory=list)
    figure: bytes | None = None  # PNG
    caption: str = ""


def _png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _metrics(stage: Path) -> list[dict[str, Any]]:
    path = stage / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def threshold_history(stage: Path) -> tuple[list[int], dict[str, list[list[float]]]]:
    """Block thresholds per training step: from ``metrics.jsonl`` when it logs them (an event
    with a ``thresholds`` dict), else one point per checkpoint of ``stage``."""
    steps: list[int] = []
    out: dict[str, list[list[float]]] = {}
    logged = [m for m in _metrics(stage) if isinstance(m.get("thresholds"), dict)]
    if logged:
        for m in logged:
            steps.append(int(m.get("global_step", len(steps))))
            for name, v in m["thresholds"].items():
                out.setdefault(name, []).append([float(x) for x in np.atleast_1d(v)])
        return steps, out
    from safetensors import safe_open

    ckpts = sorted(
        (int(m.group(1)), p)
        for p in (stage / "checkpoints").glob("step-*")
        if (m := re.fullmatch(r"step-(\d+)", p.name)) and (p / "model.safetensors").is_file()
    )
    for step, p in ckpts:
        with safe_open(str(p / "model.safetensors"), framework="pt") as f:
            keys = sorted(k for k in f.keys() if k.endswith(".threshold"))  # noqa: SIM118
            if not keys:
                continue
            steps.append(step)
            for k in keys:
                vals = f.get_tensor(k).float().flatten().tolist()
                out.setdefault(k.removesuffix(".threshold"), []).append(vals)
    return steps, out


def decision_overlays(
    qat: Path, samples: int
) -> tuple[str, np.ndarray, np.ndarray, list[str]] | None:
    """``(layer, pixels (N,H,W[,3]), maps (N,H,W), labels)`` for the first dynamic layer, with
    the share of its blocks refined per group upsampled onto the input images."""
    import torch.nn.functional as F

    from dynabit.data import load_dataset
    from dynabit.quant import record_decisions
    from dynabit.train import load_model

    model, cfg, _ = load_model(qat)
    test = load_dataset(cfg.train.dataset, "test", cfg.train.data_dir, samples)
    images = test.images[:samples]
    with torch.no_grad(), record_decisions(model) as rec:
        logits = model(images)
    rec = {k: v for k, v in rec.items() if v}
    if not rec:
        return None
    layer = next(iter(rec))
    masks = torch.cat(rec[layer]).float()  # (N, blocks, gh, gw)
    h, w = images.shape[-2:]
    maps = F.interpolate(masks.mean(1, keepdim=True), size=(h, w), mode="nearest")[:, 0]
    pix = test.pixels()[:samples]
    pix_np = pix[:, 0].numpy() if pix.shape[1] == 1 else pix.permute(0, 2, 3, 1).numpy()
    pred = logits.argmax(1)
    labels = [
        f"label {int(t)} / pred {int(p)}" for t, p in zip(test.labels[:samples], pred, strict=True)
    ]
    return layer, pix_np, maps.numpy(), labels


def build_sections(
    run_dir: Path, *, samples: int = 6, eval_subset: int | None = 1000
) -> list[Section]:
    """Read a ``dynabit demo`` run directory and build every section (figures rendered)."""
    from dynabit.train import evaluate_checkpoint

    torch.manual_seed(0)
    summary = _read_json(run_dir / "summary.json")
    base = _read_json(run_dir / "baseline-w8a8.json")
    parity = _read_json(run_dir / "parity.json")
    sim = _read_json(run_dir / "simulation.json")
    fp32, qat = run_dir / "train" / "fp32", run_dir / "train" / "qat"
    if not qat.is_dir():
        raise FileNotFoundError(f"{str(run_dir)!r} has no train/qat stage (not a demo run?)")
    sections: list[Section] = []

    rows = [(k, _fmt(v)) for k, v in summary.items() if k != "run_dir"]
    if parity:
        rows.append(
            ("parity details", f"{parity.get('samples', '?')} images, ok={parity.get('parity')}")
        )
    where = html.escape(str(run_dir))
    sections.append(
        Section("summary", "Summary", f"Run directory <code>{where}</code>.", table=rows)
    )

    ev = evaluate_checkpoint(qat, subset=eval_subset)
    layers = ev["layers"]
    points: list[dict[str, Any]] = []
    fp32_top1 = summary.get("top1_fp32", _last_top1(fp32))
    if fp32_top1 is not None:
        points.append({"label": "FP32 (32 bits)", "b_avg": 32.0, "top1": fp32_top1})
    if base.get("top1") is not None:
        points.append({"label": "W8A8 PTQ", "b_avg": 8.0, "top1": base["top1"]})
    for m in _metrics(qat):
        if m.get("event") == "epoch" and m.get("b_avg_macs") is not None:
            points.append(
                {
                    "label": f"epoch {m['epoch']}",
                    "series": "dynamic QAT (per epoch)",
                    "b_avg": m["b_avg_macs"],
                    "top1": m["test_top1"],
                }
            )
    if ev.get("b_avg_macs") is not None:
        points.append({"label": "dynamic (final)", "b_avg": ev["b_avg_macs"], "top1": ev["top1"]})
    budget = summary.get("budget")
    # Keep the FP32 point from squashing the axis: plot it at 9 bits with its label saying so.
    for p in points:
        if p["b_avg"] > 16:
            p["b_avg"], p["label"] = 9.0, "FP32 (drawn at 9)"
    sections.append(
        Section(
            "accuracy",
            "Accuracy vs B_avg",
            "Top-1 on the test split against the MAC-weighted average activation bit width.",
            table=[
                (p["label"], f"B_avg {p['b_avg']:.3f}, top-1 {p['top1']:.2f} %") for p in points
            ],
            figure=_png(plots.accuracy_vs_bavg(points, budget)),
            caption="Dynamic points: measured decisions; W8A8 at 8 bits; FP32 drawn at 9 bits.",
        )
    )

    if layers:
        rows = [
            (
                n,
                f"r={s['ratio_macs']:.3f} bounds [{s['bounds'][0]:.2f}, {s['bounds'][1]:.2f}] "
                f"blocks in bounds {_in_bounds(s):.0%}",
            )
            for n, s in layers.items()
            if s.get("dynamic", True)
        ]
        sections.append(
            Section(
                "ratios",
                "Refine ratios",
                f"Per-layer and per-block refine ratios on {ev['samples']} test images.",
                table=rows,
                figure=_png(plots.refine_ratios(layers)),
                caption="Bars: layer ratio; dots: one per block; green band: the layer's bounds.",
            )
        )

    dec = decision_overlays(qat, samples)
    if dec is not None:
        layer, pix, maps, labels = dec
        sections.append(
            Section(
                "decisions",
                "Decision maps",
                "Regions that ran the low pass (full 8-bit precision) in "
                f"<code>{html.escape(layer)}</code>, the first dynamic layer, upsampled from its "
                "group grid onto the input.",
                figure=_png(plots.decision_maps(pix, maps, labels, layer)),
                caption="Red: share of output-channel blocks refined in that group.",
            )
        )

    runs = {m: r["layers"] for m, r in sim.get("runs", {}).items() if r.get("layers")}
    if runs:
        rows = [
            (m, f"{r['summary']['cycles']:.0f} cycles, {r['summary']['energy_uj']:.2f} uJ")
            for m, r in sim["runs"].items()
        ]
        sections.append(
            Section(
                "hardware",
                "Cycles and energy",
                f"Simulated accelerator ({sim.get('samples', '?')} test images), dynamic mode "
                "against the baselines.",
                table=rows,
                figure=_png(plots.cycles_energy(runs)),
                caption="Energy components: compute, SRAM, DRAM, control.",
            )
        )

    steps, thr = threshold_history(qat)
    if thr:
        sections.append(
            Section(
                "thresholds",
                "Threshold trajectories",
                f"Block thresholds of the dynamic layers at {len(steps)} point(s) during QAT.",
                figure=_png(plots.threshold_trajectories(steps, thr)),
                caption="One line per block.",
            )
        )
    return sections


def _in_bounds(s: dict[str, Any]) -> float:
    lo, hi = s["bounds"]
    b = s.get("block_ratios", [])
    return sum(lo - 1e-9 <= r <= hi + 1e-9 for r in b) / max(1, len(b))


def _last_top1(stage: Path) -> float | None:
    tops = [m["test_top1"] for m in _metrics(stage) if m.get("test_top1") is not None]
    return tops[-1] if tops else None


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


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
            parts.append("<table>")
            parts += [
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in s.table
            ]
            parts.append("</table>")
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
            lines += ["| item | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in s.table]
            lines.append("")
        if s.figure is not None:
            lines += [f"![{s.title}]({s.key}.png)", "", f"*{s.caption}*", ""]
    return "\n".join(lines)


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    samples: int = 6,
    eval_subset: int | None = 1000,
) -> Path:
    """Write ``report.html``, ``report.md`` and the PNGs into ``out_dir`` (default
    ``<run_dir>/report``); returns the HTML path."""
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
