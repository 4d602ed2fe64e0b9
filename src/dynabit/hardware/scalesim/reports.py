"""SCALE-Sim 3.0.0's per-layer CSV reports from a dense ``SimResult``, and dynabit's own columns.

``COMPUTE_REPORT.csv``, ``BANDWIDTH_REPORT.csv`` and ``DETAILED_ACCESS_REPORT.csv`` keep
SCALE-Sim 3.0.0's headers, column order and row format (``", "`` separators and a trailing
comma), so scripts written for SCALE-Sim read them. What each column holds in our model is in
``docs/hardware.md``; dynabit's own per-layer columns (per-plane traffic, refine ratios,
energy) go to ``DYNABIT_REPORT.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynabit.hardware.mapping import fold_plan
from dynabit.hardware.report import to_csv
from dynabit.hardware.simulator import SimResult

COMPUTE_HEADER = (
    "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, "
    "Mapping Efficiency %, Compute Util %,"
)
BANDWIDTH_HEADER = (
    "LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, "
    "Avg IFMAP DRAM BW, Avg FILTER DRAM BW, Avg OFMAP DRAM BW,"
)
DETAIL_HEADER = (
    "LayerID, "
    "SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads, "
    "SRAM Filter Start Cycle, SRAM Filter Stop Cycle, SRAM Filter Reads, "
    "SRAM OFMAP Start Cycle, SRAM OFMAP Stop Cycle, SRAM OFMAP Writes, "
    "DRAM IFMAP Start Cycle, DRAM IFMAP Stop Cycle, DRAM IFMAP Reads, "
    "DRAM Filter Start Cycle, DRAM Filter Stop Cycle, DRAM Filter Reads, "
    "DRAM OFMAP Start Cycle, DRAM OFMAP Stop Cycle, DRAM OFMAP Writes,"
)
REPORT_FILES = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")
OWN_FILE = "DYNABIT_REPORT.csv"


def header_columns(header: str) -> list[str]:
    """Column names of a SCALE-Sim header line."""
    return [c.strip() for c in header.split(",") if c.strip()]


def _line(values: list[object]) -> str:
    return ", ".join(str(v) for v in values) + ","


def layer_reports(res: SimResult) -> dict[str, list[list[object]]]:
    """Rows (without the header) of the three SCALE-Sim reports, one per layer (sample 0)."""
    hw = res.hw
    r, c = hw.rows, hw.cols
    out: dict[str, list[list[object]]] = {f: [] for f in REPORT_FILES}
    byte = 8.0
    for i, s in enumerate(res.layers):
        plan = fold_plan(s, hw)
        total = int(res.cycles[i, 0])
        stall = int(res.stall_cycles[i, 0])
        used = plan.rows_used * plan.cols_used
        mapping = float(np.mean(used / (r * c))) * 100
        flow = hw.flow
        compute_util = float(np.mean(used * plan.t / (r * c * flow.report_span(plan, c)))) * 100
        overall = s.macs * 100 / (max(total, 1) * r * c)
        if_reads, f_reads = flow.sram_reads(plan)
        of_writes = float(s.pixels * s.out_channels)
        d_if = float(res.dram_bits["in_hi"][i, 0] + res.dram_bits["in_lo"][i, 0]) / byte
        d_f = float(res.dram_bits["weight"][i, 0]) / byte
        d_of = float(res.dram_bits["out"][i, 0]) / byte
        prefetch = int(np.ceil(min(d_if, hw.input_buffer_kib * 512) / hw.dram_words_per_cycle))
        span = max(total, 1)
        out["COMPUTE_REPORT.csv"].append(
            [i, total + prefetch, total, stall, overall, mapping, compute_util]
        )
        out["BANDWIDTH_REPORT.csv"].append(
            [
                i,
                if_reads / span,
                f_reads / span,
                of_writes / span,
                d_if / (span + prefetch),
                d_f / (span + prefetch),
                d_of / span,
            ]
        )
        out["DETAILED_ACCESS_REPORT.csv"].append(
            [
                i,
                0,
                total,
                int(if_reads),
                0,
                total,
                int(f_reads),
                0,
                total,
                int(of_writes),
                -prefetch,
                total,
                int(d_if),
                -prefetch,
                total,
                int(d_f),
                0,
                total,
                int(d_of),
            ]
        )
    return out


def write_reports(res: SimResult, folder: str | Path) -> list[Path]:
    """Write the three SCALE-Sim reports and ``DYNABIT_REPORT.csv`` into ``folder``."""
    from dynabit.utils.files import atomic_write_text

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    headers = dict(
        zip(REPORT_FILES, (COMPUTE_HEADER, BANDWIDTH_HEADER, DETAIL_HEADER), strict=True)
    )
    paths = []
    for name, rows in layer_reports(res).items():
        text = "\n".join([headers[name], *(_line(row) for row in rows)]) + "\n"
        atomic_write_text(d / name, text)
        paths.append(d / name)
    to_csv(res, d / OWN_FILE)
    paths.append(d / OWN_FILE)
    return paths


def read_report(path: str | Path) -> tuple[list[str], list[list[float]]]:
    """Columns and numeric rows of a SCALE-Sim-style report (ours or SCALE-Sim's)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    cols = header_columns(lines[0])
    rows = [[float(v) for v in ln.split(",") if v.strip()] for ln in lines[1:]]
    return cols, rows
