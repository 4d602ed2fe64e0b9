"""The report's figures (matplotlib, Agg backend): one function per figure, each returns it."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ENERGY_PARTS = ("compute", "sram", "dram", "control")
ENERGY_LABELS = {"compute": "compute", "sram": "SRAM", "dram": "DRAM", "control": "control"}


def _short(name: str) -> str:
    """``features.block2.conv`` -> ``block2.conv`` (keeps the axes readable)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else name


def accuracy_vs_bavg(points: list[dict[str, Any]], budget: float | None) -> Figure:
    """Top-1 against average activation bits; ``points`` have ``label``, ``b_avg``, ``top1``
    and optionally ``series`` (points of one series are joined, e.g. QAT epochs).

    The bit axis is logarithmic (base 2) so that FP32 sits at its real 32 bits while the
    points between 4 and 8 bits stay apart.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4))
    series: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        if p.get("series"):
            series.setdefault(p["series"], []).append(p)
        else:
            ax.scatter([p["b_avg"]], [p["top1"]], s=60, zorder=3, label=p["label"])
    for name, ps in series.items():
        ax.plot([p["b_avg"] for p in ps], [p["top1"] for p in ps], "o--", alpha=0.7, label=name)
    if budget is not None:
        ax.axvline(budget, color="grey", ls=":", label=f"budget {budget:g} bits")
    ax.set_xscale("log", base=2)
    ticks = sorted({4, 5, 6, 8, 16, 32} | ({budget} if budget is not None else set()))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(3.5, 40)
    ax.set_xlabel("B_avg: average activation bits, MAC-weighted (log scale)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("Accuracy vs average bit width")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def refine_ratios(layers: dict[str, dict[str, Any]]) -> Figure:
    """Per-layer refine ratio (bars) and per-block ratios (dots) against each layer's bounds."""
    names = [n for n, s in layers.items() if s.get("dynamic", True)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(names) + 2), 4))
    x = np.arange(len(names))
    for i, n in enumerate(names):
        s = layers[n]
        lo, hi = s["bounds"]
        ax.fill_between(
            [i - 0.4, i + 0.4],
            lo,
            hi,
            color="tab:green",
            alpha=0.15,
            label="bounds" if i == 0 else None,
        )
        blocks = s.get("block_ratios", [])
        jitter = np.linspace(-0.25, 0.25, len(blocks)) if len(blocks) > 1 else np.zeros(1)
        ax.scatter(
            i + jitter[: len(blocks)],
            blocks,
            s=14,
            color="black",
            zorder=3,
            label="per block" if i == 0 else None,
        )
    ax.bar(
        x,
        [layers[n]["ratio_macs"] for n in names],
        width=0.6,
        alpha=0.6,
        color="tab:blue",
        label="per layer",
    )
    ax.set_xticks(x, [_short(n) for n in names], rotation=20, ha="right")
    ax.set_ylabel("refine ratio r")
    ax.set_ylim(0, 1)
    ax.set_title("Refine ratios against their bounds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def decision_maps(pixels: np.ndarray, maps: np.ndarray, labels: list[str], layer: str) -> Figure:
    """Input images (``(N, H, W)`` or ``(N, H, W, 3)`` in [0, 1]) with ``maps`` (``(N, H, W)``,
    share of blocks refined per region, upsampled) overlaid in red."""
    n = len(pixels)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n + 0.6, 3.6), squeeze=False)
    for i in range(n):
        img = pixels[i]
        cmap = "gray" if img.ndim == 2 else None
        axes[0, i].imshow(img, cmap=cmap, vmin=0, vmax=1)
        axes[0, i].set_title(labels[i], fontsize=8)
        axes[1, i].imshow(img, cmap=cmap, vmin=0, vmax=1)
        overlay = np.zeros((*maps[i].shape, 4))
        overlay[..., 0] = 1.0
        overlay[..., 3] = 0.65 * np.clip(maps[i], 0, 1)
        axes[1, i].imshow(overlay)
        for a in axes[:, i]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=8)
    axes[1, 0].set_ylabel("refined", fontsize=8)
    fig.suptitle(
        f"Full-precision regions ({_short(layer)}; redder: more blocks refined)", fontsize=9
    )
    fig.tight_layout()
    return fig


def cycles_energy(runs: dict[str, list[dict[str, Any]]], labels: dict[str, str]) -> Figure:
    """Per-layer cycles (one bar per design, stall cycles on top where there are any) and the
    network's energy per design stacked by component. ``labels`` names each design."""
    modes = list(runs)
    layers = [r["layer"] for r in runs[modes[0]]]
    x = np.arange(len(layers))
    width = 0.8 / max(1, len(modes))
    fig, (ax_c, ax_e) = plt.subplots(
        2, 1, figsize=(max(7.0, 1.2 * len(layers) * len(modes) / 2), 7.5)
    )
    colors = plt.get_cmap("tab10")
    any_stall = False
    for j, mode in enumerate(modes):
        rows = {r["layer"]: r for r in runs[mode]}
        off = x + (j - (len(modes) - 1) / 2) * width
        comp = np.array([rows[n]["compute_cycles"] for n in layers])
        stall = np.array([rows[n]["stall_cycles"] for n in layers])
        ax_c.bar(off, comp, width, color=colors(j), label=labels.get(mode, mode))
        if stall.any():
            any_stall = True
            ax_c.bar(off, stall, width, bottom=comp, color=colors(j), alpha=0.35)
    ax_c.set_ylabel("cycles (mean per image)")
    title = "Per-layer cycles"
    ax_c.set_title(title + (" (lighter top: stall cycles)" if any_stall else ""))
    ax_c.set_xticks(x, [_short(n) for n in layers], rotation=20, ha="right")
    ax_c.legend(fontsize=8)
    totals = {
        m: {p: sum(r.get(f"energy_{p}_uj", 0.0) for r in runs[m]) for p in ENERGY_PARTS}
        for m in modes
    }
    bottom = np.zeros(len(modes))
    xe = np.arange(len(modes))
    parts = plt.get_cmap("Set2")  # not the designs' colours: these bars are components
    for k, part in enumerate(ENERGY_PARTS):
        vals = np.array([totals[m][part] for m in modes])
        ax_e.bar(xe, vals, 0.6, bottom=bottom, color=parts(k), label=ENERGY_LABELS[part])
        bottom += vals
    ax_e.set_xticks(xe, [labels.get(m, m) for m in modes], rotation=15, ha="right", fontsize=8)
    ax_e.set_ylabel("energy (uJ per image)")
    ax_e.set_title("Energy of the whole network by component")
    ax_e.legend(fontsize=8)
    for a in (ax_c, ax_e):
        a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def threshold_trajectories(steps: list[int], thresholds: dict[str, list[list[float]]]) -> Figure:
    """Every block's threshold against the training step (one panel per layer)."""
    names = list(thresholds)
    fig, axes = plt.subplots(
        1, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 3.2), squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=False):
        vals = np.array(thresholds[name])  # (checkpoints, blocks)
        style = "o-" if len(steps) <= 30 else "-"  # markers only while they stay apart
        for b in range(vals.shape[1]):
            ax.plot(steps, vals[:, b], style, ms=3, lw=1)
        ax.set_title(_short(name), fontsize=9)
        ax.set_xlabel("QAT step")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("threshold")
    fig.suptitle("Block thresholds during QAT (one line per block)", fontsize=10)
    fig.tight_layout()
    return fig
