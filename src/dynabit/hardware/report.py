"""Writing results as JSON, CSV and Markdown (one function each, for runs and comparisons)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from dynabit.hardware.compare import Comparison
from dynabit.hardware.mapping import fold_plan
from dynabit.hardware.simulator import SimResult, uses_group_mapping


def layer_rows(res: SimResult) -> list[dict[str, Any]]:
    """One dict per layer: means over samples (cycles also min/max), bytes and microjoules."""
    rows = []
    util = res.utilisation
    energy = res.energy_total
    for i, s in enumerate(res.layers):
        plan = fold_plan(s, res.hw, uses_group_mapping(s, res.mode))
        cyc = res.cycles[i]
        row: dict[str, Any] = {
            "mode": res.mode,
            "layer": s.name,
            "kind": s.kind,
            "dynamic": s.dynamic,
            "decision": s.decision,
            "group": f"{s.group[0]}x{s.group[1]}",
            "block": s.block_size,
            "M": s.pixels,
            "K": s.window,
            "N": s.out_channels,
            "folds": plan.n_folds,
            "cycles": float(cyc.mean()),
            "cycles_min": int(cyc.min()),
            "cycles_max": int(cyc.max()),
            "compute_cycles": float(res.compute_cycles[i].mean()),
            "stall_cycles": float(res.stall_cycles[i].mean()),
            "utilisation": float(util[i].mean()),
            "refine_ratio": float(res.refined[i].mean()),
            "bits_avg": float(res.bits_avg[i].mean()),
        }
        for k, v in res.sram_bits.items():
            row[f"sram_{k}_bytes"] = float(v[i].mean() / 8)
        for k, v in res.dram_bits.items():
            row[f"dram_{k}_bytes"] = float(v[i].mean() / 8)
        for k, v in res.energy_pj.items():
            row[f"energy_{k}_uj"] = float(v[i].mean() / 1e6)
        row["energy_uj"] = float(energy[i].mean() / 1e6)
        rows.append(row)
    return rows


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def to_dict(obj: SimResult | Comparison) -> dict[str, Any]:
    """JSON-able dict of a run or a comparison."""
    if isinstance(obj, Comparison):
        return _clean(
            {
                "reference": obj.reference,
                "hardware": obj.ours.hw.model_dump(mode="json"),
                "samples": obj.ours.samples,
                "headline": obj.headline(),
                "compute_bound_layers": obj.compute_bound_layers(),
                "per_area": obj.per_area,
                "per_area_note": obj.per_area_note,
                "runs": {
                    m: {"summary": r.summary(), "layers": layer_rows(r)}
                    for m, r in obj.results.items()
                },
            }
        )
    return _clean(
        {
            "mode": obj.mode,
            "hardware": obj.hw.model_dump(mode="json"),
            "samples": obj.samples,
            "summary": obj.summary(),
            "layers": layer_rows(obj),
        }
    )


def _write(text: str, path: str | Path | None) -> str:
    if path is not None:
        from dynabit.utils.files import atomic_write_text

        atomic_write_text(Path(path), text)
    return text


def to_json(obj: SimResult | Comparison, path: str | Path | None = None) -> str:
    """JSON text (written to ``path`` when given)."""
    return _write(json.dumps(to_dict(obj), indent=1), path)


def to_csv(obj: SimResult | Comparison, path: str | Path | None = None) -> str:
    """One row per layer (and per mode for a comparison)."""
    runs = list(obj.results.values()) if isinstance(obj, Comparison) else [obj]
    rows = [r for res in runs for r in layer_rows(res)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return _write(buf.getvalue(), path)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _layers_md(res: SimResult) -> str:
    header = ["layer", "folds", "cycles", "stall", "util", "r", "SRAM lo KiB", "DRAM KiB", "uJ"]
    rows = []
    for row in layer_rows(res):
        dram = sum(v for k, v in row.items() if k.startswith("dram_") and k.endswith("_bytes"))
        rows.append(
            [
                row["layer"],
                str(row["folds"]),
                f"{row['cycles']:.0f}",
                f"{row['stall_cycles']:.0f}",
                f"{row['utilisation']:.2f}",
                f"{row['refine_ratio']:.2f}",
                f"{row['sram_in_lo_bytes'] / 1024:.1f}",
                f"{dram / 1024:.1f}",
                f"{row['energy_uj']:.2f}",
            ]
        )
    return _table(header, rows)


def to_markdown(obj: SimResult | Comparison, path: str | Path | None = None) -> str:
    """A summary table (per mode for a comparison) followed by the per-layer table."""
    hw = obj.ours.hw if isinstance(obj, Comparison) else obj.hw
    title = f"{hw.rows}x{hw.cols} {hw.dataflow.upper()} array, {hw.clock_mhz:g} MHz"
    if not isinstance(obj, Comparison):
        s = obj.summary()
        text = (
            f"## {obj.mode}: {title}\n\n"
            f"cycles {s['cycles']:.0f} (stall {s['stall_cycles']:.0f}), "
            f"utilisation {s['utilisation']:.2f}, energy {s['energy_uj']:.1f} uJ\n\n"
            + _layers_md(obj)
        )
        return _write(text, path)
    head = ["mode", "cycles", "stall", "util", "DRAM MiB", "energy uJ", "speedup", "energy saving"]
    rows = []
    for mode, res in obj.results.items():
        s = res.summary()
        rows.append(
            [
                mode,
                f"{s['cycles']:.0f}",
                f"{s['stall_cycles']:.0f}",
                f"{s['utilisation']:.2f}",
                f"{s['dram_bytes'] / 2**20:.2f}",
                f"{s['energy_uj']:.1f}",
                "1" if mode == obj.reference else f"{obj.speedup(mode):.3f}",
                "-" if mode == obj.reference else f"{obj.energy_saving(mode):+.1%}",
            ]
        )
    h = obj.headline()
    skip = ("speedup_vs", "energy_", "throughput_per_area", "break_even", "lanes")
    lines = [f"- {k}: {v:.4g}" for k, v in h.items() if not k.startswith(skip)]
    text = (
        f"## {title}: ours ({obj.reference}) against the baselines\n\n"
        "speedup = baseline cycles / ours; energy saving = 1 - ours / baseline\n\n"
        + _table(head, rows)
        + "\n"
        + "\n".join(lines)
        + "\n\n"
        + per_area_line(obj)
        + "\n\n### ours per layer\n\n"
        + _layers_md(obj.ours)
    )
    return _write(text, path)


def per_area_line(obj: Comparison) -> str:
    """The dual design against INT8 and INT4 arrays of the same organisation, in one line."""
    if obj.per_area is None:
        return f"per area: not available ({obj.per_area_note})"
    from dynabit.hardware.iso_area import break_even_words

    h, res = obj.headline(), obj.per_area
    return (
        f"per area, against designs of the same organisation ({res['array']}, {res['lanes']}-lane "
        "PEs, one accumulator each, equal buffers; core transistors): throughput per area "
        f"{h['throughput_per_area_vs_int8']:.3f}x INT8's and "
        f"{h['throughput_per_area_vs_int4']:.3f}x INT4's, energy per inference "
        f"{h['energy_per_inference_vs_int8']:.3f}x INT8's; break-even refine ratio against "
        f"INT8 {break_even_words(res)}"
    )
