"""The report's sections, built from a ``dynabit demo`` run directory.

Each section has a paragraph, a table with human labels and units, and a figure whose caption
names the model (FP32 float, QAT float, frozen integer, engine) and the images it comes from.
Accuracies of different models are only drawn together when they were measured on the same
images; anything measured on fewer images says so.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from dynabit.hardware.iso_area import break_even_words, summary_rows
from dynabit.reports import plots
from dynabit.reports.data import (
    DESIGN_LABELS,
    MODE_LABELS,
    MODE_WHAT,
    MeasuredImages,
    measured_images,
    metrics,
    read_json,
    threshold_history,
)

QAT_MODEL = "the QAT model (float, fake-quantized)"
INTEGER_MODEL = "the frozen integer model"


@dataclass
class Section:
    """One part of the report: a title, a paragraph, an optional table and figure.

    ``table`` rows are tuples of cells; with a ``header`` the table has column titles,
    without one the first cell of each row is its label.
    """

    key: str
    title: str
    text: str
    table: list[tuple[str, ...]] = field(default_factory=list)
    header: tuple[str, ...] | None = None
    figure: bytes | None = None  # PNG
    caption: str = ""


def _png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _pct(v: float) -> str:
    return f"{v:.2f} %"


def decision_overlays(
    qat: Path, samples: int
) -> tuple[str, np.ndarray, np.ndarray, list[str]] | None:
    """``(layer, pixels (N,H,W[,3]), maps (N,H,W), labels)`` for the first dynamic layer, with
    the share of its blocks refined per group upsampled onto the first ``samples`` test images."""
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


def summary_section(run_dir: Path, s: dict[str, Any], imgs: MeasuredImages) -> Section:
    """The demo's figures in words, one row each."""
    rows: list[tuple[str, ...]] = [("test images", imgs.all())]
    if "top1_fp32" in s:
        rows += [
            ("top-1 FP32 (float model)", _pct(s["top1_fp32"])),
            ("top-1 uniform 8-bit, post-training quantization", _pct(s["top1_w8a8"])),
            (
                f"top-1 dynamic, budget {s['budget']:g} bits (QAT model, fake-quantized float)",
                _pct(s["top1_dynamic"]),
            ),
        ]
    if "top1_integer" in s:
        rows.append(("top-1 frozen integer model (integer engine)", _pct(s["top1_integer"])))
    if "b_avg" in s:
        rows.append(
            (
                "B_avg measured, MAC-weighted / element-weighted",
                f"{s['b_avg']:.3f} / {s['b_avg_elements']:.3f} bits",
            )
        )
    if "speedup_vs_uniform8" in s:
        hw = s.get("hardware", "")
        rows += [
            (f"speedup vs uniform 8-bit, same {hw} array", f"{s['speedup_vs_uniform8']:.3f}x"),
            ("ideal speedup B / B_avg", f"{s['ideal_speedup']:.3f}x"),
            (
                "per-element gating at the same refine ratio, vs uniform 8-bit",
                f"{s['speedup_per_element_gating']:.3f}x",
            ),
            ("energy saving vs uniform 8-bit", f"{100 * s['energy_saving_vs_uniform8']:.1f} %"),
            *summary_rows(s),
        ]
    if "parity" in s:
        verdict = (
            f"identical on all {s['parity_samples']} test images"
            if s["parity"]
            else f"MISMATCH on the {s['parity_samples']} test images (see parity.json)"
        )
        rows.append(("integer engine vs frozen integer model", verdict))
    if "seconds" in s:
        rows.append(("demo wall time (first run)", f"{s['seconds']:.0f} s"))
    where = html.escape(str(run_dir))
    text = (
        f"Run directory <code>{where}</code>. Every accuracy below is measured on "
        f"{imgs.all()}. " + float_vs_integer(s)
    )
    return Section("summary", "Summary", text, table=rows)


def float_vs_integer(s: dict[str, Any], short: bool = False) -> str:
    """Why the QAT model and the integer model may score differently (when both are known)."""
    if "top1_dynamic" not in s or "top1_integer" not in s:
        return ""
    diff = s["top1_integer"] - s["top1_dynamic"]
    n = s.get("parity_samples") or 0
    if abs(diff) < 1e-9:
        verdict = "here the two score the same on these images"
    else:
        moved = f", about {round(abs(diff) * n / 100)} of {n} images" if n else ""
        verdict = f"here it scores {diff:+.2f} points against the QAT model{moved}"
    if short:
        return (
            "The integer model rounds its requantisation between layers where the QAT model "
            f"computes in floating point, which moves a few predictions; {verdict}."
        )
    return (
        f"The dynamic accuracy is that of {QAT_MODEL}: floating-point arithmetic on quantized "
        f"values, as trained. {INTEGER_MODEL.capitalize()} (<code>dynabit.convert</code>) is "
        "what the integer engine runs: integer weights and thresholds, exact integer "
        "accumulators and a rounded fixed-point requantisation between layers. That rounding "
        f"can move a few predictions near a class boundary; {verdict}. The engine reproduces "
        "the frozen model exactly (the parity row)."
    )


def accuracy_section(run_dir: Path, s: dict[str, Any], imgs: MeasuredImages) -> Section | None:
    """Top-1 against ``B_avg``: FP32, W8A8 and every QAT epoch, all on the same images."""
    qat = run_dir / "train" / "qat"
    base = read_json(run_dir / "baseline-w8a8.json")
    rows: list[tuple[str, ...]] = []
    points: list[dict[str, Any]] = []
    fp32 = s.get("top1_fp32", _last_top1(run_dir / "train" / "fp32"))
    if fp32 is not None:
        points.append({"label": "FP32 (32 bits)", "b_avg": 32.0, "top1": fp32})
        rows.append(("FP32", "FP32 float model", "32 (float)", f"{fp32:.2f}"))
    if base.get("top1") is not None:
        points.append({"label": "uniform 8-bit (PTQ)", "b_avg": 8.0, "top1": base["top1"]})
        rows.append(
            ("uniform 8-bit", "FP32 model quantized after training", "8", f"{base['top1']:.2f}")
        )
    epochs = [m for m in metrics(qat) if m.get("event") == "epoch" and m.get("b_avg_macs")]
    for m in epochs:
        points.append(
            {
                "label": f"QAT epoch {m['epoch'] + 1}",
                "series": "dynamic QAT, after each epoch",
                "b_avg": m["b_avg_macs"],
                "top1": m["test_top1"],
            }
        )
        rows.append(
            (
                f"dynamic, QAT epoch {m['epoch'] + 1}",
                "QAT model (float, fake-quantized)",
                f"{m['b_avg_macs']:.3f}",
                f"{m['test_top1']:.2f}",
            )
        )
    if not points:
        return None
    text = (
        f"Top-1 against the MAC-weighted average activation width, every point on {imgs.all()}. "
        "The bit axis is logarithmic, so FP32 sits at its real 32 bits."
    )
    if "top1_integer" in s:
        text += (
            f" {INTEGER_MODEL.capitalize()} is not drawn (its decisions are those of the "
            f"integer engine): it scores {s['top1_integer']:.2f} % on the same images. "
            + float_vs_integer(s, short=True)
        )
    caption = (
        "Models: FP32 float model; uniform 8-bit post-training quantization of it; "
        f"{QAT_MODEL} after each QAT epoch (the last one is the final model). "
        f"Images: {imgs.all()}, the same for every point."
    )
    return Section(
        "accuracy",
        "Accuracy vs B_avg",
        text,
        table=rows,
        header=("point", "model", "B_avg (bits)", "top-1 (%)"),
        figure=_png(plots.accuracy_vs_bavg(points, s.get("budget"))),
        caption=caption,
    )


def ratios_section(run_dir: Path, imgs: MeasuredImages, eval_subset: int | None) -> Section | None:
    """Per-layer and per-block refine ratios against their bounds."""
    qat = run_dir / "train" / "qat"
    if eval_subset is None:
        stats = read_json(qat / "summary.json").get("stats", {})
        layers, which = stats.get("layers", {}), imgs.all()
    else:
        from dynabit.train import evaluate_checkpoint

        layers = evaluate_checkpoint(qat, subset=eval_subset)["layers"]
        which = imgs.first(eval_subset)
    layers = {n: v for n, v in layers.items() if v.get("dynamic", True)}
    if not layers:
        return None
    rows: list[tuple[str, ...]] = []
    for n, v in layers.items():
        lo, hi = v["bounds"]
        blocks = v.get("block_ratios", [])
        rows.append(
            (
                n,
                f"{v['ratio_macs']:.3f}",
                f"{lo:.2f} to {hi:.2f}",
                f"{_inside(lo, hi, blocks)} of {len(blocks)}",
            )
        )
    return Section(
        "ratios",
        "Refine ratios",
        f"Share of each dynamic layer's low-pass work that ran, per layer and per block, on "
        f"{which}, against the bounds the budget penalty keeps them in.",
        table=rows,
        header=("layer", "refine ratio (MAC-weighted)", "bounds", "blocks inside bounds"),
        figure=_png(plots.refine_ratios(layers)),
        caption=(
            f"Model: {QAT_MODEL}, final checkpoint. Images: {which}. Bars: the layer's ratio; "
            "dots: one per output-channel block; green band: the layer's bounds."
        ),
    )


def decisions_section(run_dir: Path, imgs: MeasuredImages, samples: int) -> Section | None:
    """Where the first dynamic layer refined, on a few test images."""
    dec = decision_overlays(run_dir / "train" / "qat", samples)
    if dec is None:
        return None
    layer, pix, maps, labels = dec
    which = imgs.first(len(pix))
    return Section(
        "decisions",
        "Decision maps",
        "Regions that ran the low pass (full 8-bit precision) in "
        f"<code>{html.escape(layer)}</code>, the first dynamic layer, upsampled from its "
        "group grid onto the input.",
        figure=_png(plots.decision_maps(pix, maps, labels, layer)),
        caption=(
            f"Model: {QAT_MODEL}. Images: {which}, with their label and the model's "
            "prediction. Bottom row, red: the share of output-channel blocks refined in "
            "that group."
        ),
    )


def hardware_section(sim: dict[str, Any], imgs: MeasuredImages) -> Section | None:
    """Cycles and energy against the baselines, and the bit-parallel comparison in words."""
    runs = {m: r["layers"] for m, r in sim.get("runs", {}).items() if r.get("layers")}
    if "dynamic" not in runs or "uniform" not in sim.get("runs", {}):
        return None
    summ = {m: r["summary"] for m, r in sim["runs"].items()}
    hw = sim.get("hardware", {})
    array = f"{hw.get('rows', '?')}x{hw.get('cols', '?')} {hw.get('dataflow', '?')}"
    ref = summ["uniform"]["cycles"]
    rows: list[tuple[str, ...]] = [
        (
            MODE_LABELS.get(m, m),
            MODE_WHAT.get(m, ""),
            f"{v['cycles']:,.0f}",
            f"{ref / v['cycles']:.2f}x",
            f"{v['energy_uj']:.2f}",
        )
        for m, v in summ.items()
    ]
    which = imgs.first(int(sim.get("samples", 0)))
    text = (
        f"Simulated {array} accelerator of {hw.get('act_chunk_bits', 4)}x"
        f"{hw.get('weight_bits', 8)}-bit PEs, running the decisions that {QAT_MODEL} took on "
        f"{which}; figures are means per image. " + bitparallel_words(summ, sim.get("per_area"))
    )
    caption = (
        f"Model: the decisions of {QAT_MODEL}, simulated on the {array} array (the baselines "
        f"run the same layers). Images: {which}, mean per image. Top: cycles per layer and "
        "design. Bottom: energy of the whole network per image, by component."
    )
    return Section(
        "hardware",
        "Cycles and energy",
        text,
        table=rows,
        header=(
            "design",
            "what it runs",
            "cycles per image",
            "speedup vs uniform 8-bit",
            "energy per image (uJ)",
        ),
        figure=_png(plots.cycles_energy(runs, MODE_LABELS)),
        caption=caption,
    )


def bitparallel_words(summ: dict[str, dict[str, Any]], per_area: dict[str, Any] | None) -> str:
    """The bit-parallel baseline explained, with the honest verdict against the dynamic one."""
    if "bitparallel" not in summ:
        return ""
    dyn, bp = summ["dynamic"]["cycles"], summ["bitparallel"]["cycles"]
    out = (
        "The speedups are against uniform 8-bit on the same array: two 4-bit passes wherever "
        "the dynamic design runs one or two. The bit-parallel baseline is a different array "
        "with the same number of PEs, each multiplying the whole 8-bit code by the weight in "
        "one pass, so it never needs a second pass. "
    )
    if bp < dyn:
        out += (
            f"It is faster than the dynamic design here: {bp:,.0f} against {dyn:,.0f} cycles "
            f"per image (the dynamic design takes {dyn / bp:.2f}x as long), because refining "
            "even a minority of the groups costs a second pass that bit-parallel PEs never pay. "
        )
    else:
        out += (
            f"The dynamic design is faster than it here: {dyn:,.0f} against {bp:,.0f} cycles "
            "per image. "
        )
    if per_area:
        out += "The PEs differ in size, though: the next section compares the designs per area."
    return out


def per_area_words(res: dict[str, Any] | None) -> str:
    """The dual design against INT8 and INT4 arrays of the same organisation, per area."""
    if not res:
        return ""
    d = res["designs"]["dual"]["area"]["core"], res["designs"]["int8"]["area"]["core"]
    a8, a4 = res["per_area_vs_int8"]["dual"], res["per_area_vs_int4"]["dual"]
    verdict = "better" if a8 > 1 else "worse"
    return (
        "Same-array speedups ignore that the PEs differ in size. Per unit of PE area, against "
        f"arrays of the same organisation ({res['array']} arrays of {res['lanes']}-lane "
        "dot-product PEs, one accumulator each, equal buffers), normalised by the core's "
        "transistors (PEs, drain registers, decision logic) from the checked-in yosys area "
        "table: the dual "
        f"design's core is {d[0]:,} transistors against {d[1]:,} for INT8, and its throughput "
        f"per area is {a8:.2f}x INT8's ({verdict}) and {a4:.2f}x INT4's; energy per inference "
        f"{res['energy_vs_int8']['dual']:.2f}x INT8's. Break-even refine ratio against INT8: "
        f"{break_even_words(res)}."
    )


def per_area_section(sim: dict[str, Any]) -> Section | None:
    """Throughput per area and energy per inference of the designs of the same organisation."""
    res = sim.get("per_area")
    if not res:
        return None
    rows: list[tuple[str, ...]] = [
        (
            DESIGN_LABELS.get(name, name),
            f"{d['compute_cycles']:,.0f}",
            f"{d['area']['core']:,}",
            f"{res['per_area_vs_int8'][name]:.3f}x",
            f"{res['per_area_vs_int4'][name]:.3f}x",
            f"{res['energy_vs_int8'][name]:.3f}x",
        )
        for name, d in res["designs"].items()
    ]
    text = (
        f"{per_area_words(res)} Cycles are compute cycles (what the RTL is verified against); "
        "the break-even ratio comes from synthetic block masks on the same layers."
    )
    return Section(
        "per_area",
        "Throughput per area",
        text,
        table=rows,
        header=(
            "design",
            "compute cycles per image",
            "core transistors",
            "throughput per area vs INT8",
            "vs INT4",
            "energy per image vs INT8",
        ),
    )


def thresholds_section(run_dir: Path) -> Section | None:
    """Every block's threshold through QAT."""
    qat = run_dir / "train" / "qat"
    steps, thr = threshold_history(qat)
    if not thr:
        return None
    logged = any("thresholds" in m for m in metrics(qat))
    source = "logged during QAT" if logged else "read from the saved checkpoints"
    first = "from calibration (step 0) " if steps and steps[0] == 0 else ""
    return Section(
        "thresholds",
        "Threshold trajectories",
        f"Trainable block thresholds of the dynamic layers at {len(steps)} points "
        f"{first}to step {steps[-1]}, {source}.",
        figure=_png(plots.threshold_trajectories(steps, thr)),
        caption=(
            f"Model: {QAT_MODEL} during training, one line per output-channel block. Images: "
            "the training batches it learns from (thresholds are parameters; no test images)."
        ),
    )


def build_sections(
    run_dir: Path, *, samples: int = 6, eval_subset: int | None = None
) -> list[Section]:
    """Read a ``dynabit demo`` run directory and build every section (figures rendered).

    ``eval_subset``: re-evaluate the refine ratios on the first N test images instead of
    reading those of the demo's own evaluation (all its test images).
    """
    torch.manual_seed(0)
    if not (run_dir / "train" / "qat").is_dir():
        raise FileNotFoundError(f"{str(run_dir)!r} has no train/qat stage (not a demo run?)")
    summary = read_json(run_dir / "summary.json")
    sim = read_json(run_dir / "simulation.json")
    imgs = measured_images(run_dir, summary)
    parts = [
        summary_section(run_dir, summary, imgs),
        accuracy_section(run_dir, summary, imgs),
        ratios_section(run_dir, imgs, eval_subset),
        decisions_section(run_dir, imgs, samples),
        hardware_section(sim, imgs),
        per_area_section(sim),
        thresholds_section(run_dir),
    ]
    return [p for p in parts if p is not None]


def _inside(lo: float, hi: float, blocks: list[float]) -> int:
    return sum(lo - 1e-9 <= r <= hi + 1e-9 for r in blocks)


def _last_top1(stage: Path) -> float | None:
    tops = [m["test_top1"] for m in metrics(stage) if m.get("test_top1") is not None]
    return tops[-1] if tops else None
