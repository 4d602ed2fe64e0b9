"""The area table: yosys figures of every dot-product PE design, per lane count.

One row per (design, lanes): the dual-precision PE (plain, and ``dual_midpoint`` with the
mid-point offset), bit-parallel INT8 and INT4, and the bit-serial PE taking 1 or 2 activation
bits per step, all with one accumulator sized for
``k_max`` (:mod:`dynabit.rtl.lanes`). The checked-in table (:data:`AREA_TABLE`) is written by
``dynabit rtl --area-table`` (its ``command`` field records the exact call) and read by whatever
normalises a comparison per area; a test regenerates its small rows and compares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dynabit.rtl.lanes import LaneParams
from dynabit.rtl.synth import Tool, synthesize

#: The checked-in table (package data).
AREA_TABLE = Path(__file__).resolve().parents[1] / "configs" / "pe_area.json"

#: Default K the accumulators are sized for: a 3x3 window over 512 channels (ResNet-18's widest).
DEFAULT_K_MAX = 3 * 3 * 512


def design_params(lanes: int, k_max: int = DEFAULT_K_MAX) -> list[LaneParams]:
    """The six PE designs compared at ``lanes`` lanes (8-bit codes, 4 + 4 split, W8)."""
    return [
        LaneParams(lanes, "dual", k_max=k_max),
        LaneParams(lanes, "dual", k_max=k_max, midpoint=True),
        LaneParams(lanes, "int8", k_max=k_max),
        LaneParams(lanes, "int4", k_max=k_max),
        LaneParams(lanes, "bitserial", k_max=k_max, serial_bits=1),
        LaneParams(lanes, "bitserial", k_max=k_max, serial_bits=2),
    ]


def area_rows(
    lanes: Iterable[int], k_max: int = DEFAULT_K_MAX, tool: Tool = "full"
) -> list[dict[str, Any]]:
    """Synthesize every design at every lane count; one row each (no timing fields)."""
    rows = []
    for n in lanes:
        for p in design_params(n, k_max):
            s = synthesize(p, tool)
            rows.append(
                {
                    "pe": p.tag,
                    "design": table_design(p),
                    "lanes": n,
                    "serial_bits": p.serial_bits if p.design == "bitserial" else None,
                    "acc_bits": p.width,
                    "cells": s.cells,
                    "flops": s.flops,
                    "transistors": s.transistors,
                    "tool": s.tool,
                }
            )
    return rows


def table_design(p: LaneParams) -> str:
    """The design name of ``p``'s row: its design, ``dual_midpoint`` with the offset."""
    return "dual_midpoint" if p.midpoint else p.design


def write_table(path: Path, rows: list[dict[str, Any]], k_max: int, command: str) -> Path:
    """Write the table as JSON (rows sorted by lanes, then design)."""
    rows = sorted(rows, key=lambda r: (r["lanes"], r["pe"]))
    doc = {"k_max": k_max, "command": command, "unit": "one PE", "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def load_table(path: Path = AREA_TABLE) -> dict[str, Any]:
    """The area table as written by :func:`write_table`."""
    return json.loads(Path(path).read_text())


def find_row(
    table: dict[str, Any], design: str, lanes: int, serial_bits: int = 1, where: str = "the table"
) -> dict[str, Any]:
    """The row of ``design`` at ``lanes`` (bit-serial: at ``serial_bits``) in a loaded table;
    ``KeyError`` names what is missing and the rows there are."""
    for row in table["rows"]:
        same = row["design"] == design and row["lanes"] == lanes
        if same and (design != "bitserial" or row["serial_bits"] == serial_bits):
            return dict(row)
    have = sorted({(r["design"], r["lanes"]) for r in table["rows"]})
    raise KeyError(f"no area row for {design} with {lanes} lanes in {where}; rows: {have}")


def pe_transistors(design: str, lanes: int, serial_bits: int = 1, path: Path = AREA_TABLE) -> int:
    """Transistor estimate of one PE from the table; ``KeyError`` names what is missing."""
    return int(find_row(load_table(path), design, lanes, serial_bits, str(path))["transistors"])
