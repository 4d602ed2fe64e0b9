"""Designs of the same organisation compared per area: dual, INT8, INT4 and bit-serial arrays.

Every design is an ``R x C`` output-stationary array of ``N``-lane dot-product PEs with one
accumulator each (:mod:`dynabit.rtl.lanes`) and the **same buffers** (one activation buffer of
whole codes, so the total input capacity is equal; weights and outputs alike):

==========  ==========================================  ================================
 design      cycle model (``HardwareConfig.lanes = N``)   activation work per window
==========  ==========================================  ================================
 dual        mode ``dynamic``, 4-bit chunks, the masks   high plane; low plane if refined
 dual_mid…   as ``dual`` (the offset changes no cycle)    as ``dual``, 5-bit lane operands
 int8        mode ``dense``, 8-bit chunks                 one 8-bit pass
 int4        mode ``dense``, 4-bit chunks                 one 4-bit pass (the high code)
 bitserial   mode ``uniform``, ``s``-bit chunks            ``ceil(B / s)`` passes at ``B`` bits
==========  ==========================================  ================================

Area (transistors, Yosys' CMOS estimate) has three levels: the **PE array** (``R * C`` PEs of
the area table ``dynabit/configs/pe_area.json``); the **core** (PE array + a capture register
per PE for the drain, ``acc_bits`` flip-flops with enable, in every design + the dual
design's decision logic: an AND/OR tree over the ``R * C`` flags, the per-column threshold
registers, as wide as the compared high-pass sum, and the element-0 latch of ``C * N`` weights
and ``R * N`` low-plane operands, 4 bits each); and the **tile** (core + the
buffers as 6-transistor SRAM bits, equal across designs). Registers and gates outside the
table are counted with the synthesis flow's CMOS constants (:mod:`dynabit.rtl.synth`:
16 transistors a flip-flop, 12 its enable, 6 a 2-input AND/OR).

``dual_midpoint`` is the dual design with the mid-point offset (:mod:`dynabit.rtl.lanes`):
its own PE row, a comparator and threshold one bit wider, a latched low operand one bit wider
(the residual), a refined-bias register per column at the drain and the plane logic at the
tile's edge (``B_hi + 2`` gates per row lane); its lane
MAC energy is the 4x8 entry's multiply scaled by 5/4 (one partial-product row more).

Energy per inference is the cycle model's (compute with the lane MAC of the energy table,
SRAM, DRAM, control) plus leakage: ``leakage_nw_per_transistor`` x tile transistors x cycles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.energy import leakage_energy
from dynabit.hardware.shapes import LayerShape
from dynabit.hardware.simulator import simulate

DESIGNS: tuple[str, ...] = ("dual", "int8", "int4", "bitserial", "dual_midpoint")
DYNAMIC: tuple[str, ...] = ("dual", "dual_midpoint")  # designs that follow the masks

DFF, ENABLE, GATE2 = 16, 12, 6  # CMOS transistors (as in dynabit.rtl.synth)
SRAM_BIT = 6


@dataclass(frozen=True)
class Design:
    """One design: ``design`` in :data:`DESIGNS`, ``lanes`` N, bit-serial step ``serial_bits``
    and the code width ``bits`` a bit-serial design runs at (``None``: the layer's)."""

    design: str
    lanes: int = 8
    serial_bits: int = 1
    bits: int | None = None

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.lanes < 1 or self.serial_bits not in (1, 2):
            raise ValueError("lanes >= 1 and serial_bits 1 or 2")

    @property
    def name(self) -> str:
        """The design (``bitserial_s2`` for 2-bit steps)."""
        return self.design + (f"_s{self.serial_bits}" if self.serial_bits != 1 else "")

    @property
    def chunk_bits(self) -> int:
        """Activation bits a lane multiplies per step."""
        return {"dual": 4, "dual_midpoint": 4, "int8": 8, "int4": 4}.get(
            self.design, self.serial_bits
        )

    @property
    def mac_bits(self) -> int:
        """Activation bits of a lane multiplier (the mid-point operand is one bit wider)."""
        return self.chunk_bits + int(self.design == "dual_midpoint")

    @property
    def mode(self) -> str:
        """The cycle model's mode for this design."""
        if self.design in DYNAMIC:
            return "dynamic"
        return {"bitserial": "uniform"}.get(self.design, "dense")


def load_area_table(path: Path | None = None) -> dict[str, Any]:
    """The PE area table (``rows``: one per design and lane count; default: the checked-in
    one, :data:`dynabit.rtl.area.AREA_TABLE`)."""
    from dynabit.rtl.area import AREA_TABLE, load_table  # the table's one reader

    return load_table(path or AREA_TABLE)


def pe_row(d: Design, table: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The table row of ``d``'s PE; ``KeyError`` names what is missing."""
    from dynabit.rtl.area import find_row

    return find_row(dict(table or load_area_table()), d.design, d.lanes, d.serial_bits)


def area(d: Design, hw: HardwareConfig, table: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Transistors of ``d`` on ``hw``'s array: PE array, core and tile (see the module doc)."""
    row = pe_row(d, table)
    pes = hw.rows * hw.cols
    array = pes * int(row["transistors"])
    drain = pes * int(row["acc_bits"]) * (DFF + ENABLE)
    decision = 0
    if d.design in DYNAMIC:
        mid = d.design == "dual_midpoint"
        cmp_bits = int(row["acc_bits"]) - 4 + mid  # the high-pass sum: 4 (3) bits narrower
        low_bits = 4 + mid  # a latched low-plane operand (the mid-point residual: 5 bits)
        latch_bits = (hw.rows * low_bits + hw.cols * hw.weight_bits) * d.lanes + hw.rows
        decision = 2 * pes * GATE2 + (hw.cols * cmp_bits + latch_bits) * (DFF + ENABLE)
        if mid:  # refined-bias register per column; nz, h' and r per row lane at the edge
            decision += hw.cols * int(row["acc_bits"]) * (DFF + ENABLE)
            decision += hw.rows * d.lanes * (4 + 2) * GATE2
    kib = hw.input_buffer_kib + hw.weight_buffer_kib + hw.output_buffer_kib
    buffers = int(kib * 8192 * SRAM_BIT)
    core = array + drain + decision
    return {
        "pe": int(row["transistors"]),
        "pe_cells": int(row["cells"]),
        "array": array,
        "drain": drain,
        "decision": decision,
        "core": core,
        "buffers": buffers,
        "tile": core + buffers,
    }


def design_config(d: Design, hw: HardwareConfig) -> HardwareConfig:
    """``hw`` with the design's chunk width and lanes (MAC entries for 1- and 2-bit chunks
    scaled from the 8-bit multiply by partial-product bits, as the default 4x8 entry); the
    dual design's two planes get half the input buffer each, so every design has the same
    total input capacity (the config's ``input_buffer_kib`` is per plane)."""
    table = hw.energy
    key = f"{d.chunk_bits}x{hw.weight_bits}"
    acc = table.accumulate_pj
    if key not in table.mac_pj:
        ref = table.mac(8, hw.weight_bits)
        mac = (ref - acc) * d.chunk_bits / 8 + acc
        table = table.model_copy(update={"mac_pj": {**table.mac_pj, key: mac}})
    if d.mac_bits != d.chunk_bits:  # the mid-point lane: one partial-product row more
        mac = (table.mac(d.chunk_bits, hw.weight_bits) - acc) * d.mac_bits / d.chunk_bits + acc
        table = table.model_copy(update={"mac_pj": {**table.mac_pj, key: mac}})
    update: dict[str, Any] = {"act_chunk_bits": d.chunk_bits, "lanes": d.lanes, "energy": table}
    if d.design in DYNAMIC:
        # one buffer of whole codes: the two planes share the other designs' input capacity
        update["input_buffer_kib"] = hw.input_buffer_kib / 2
    return hw.model_copy(update=update)


def design_shapes(d: Design, shapes: Sequence[LayerShape]) -> list[LayerShape]:
    """Layer shapes as ``d`` runs them: a bit-serial design streams every layer's whole code
    (``bits`` or the layer's), ``ceil(B / s)`` chunk passes; the others take them as they are."""
    if d.design != "bitserial":
        return list(shapes)
    out = []
    for s in shapes:
        b = d.bits or s.bits
        out.append(replace(s, dynamic=False, bits=b, hi_bits=b))
    return out


@dataclass
class DesignRun:
    """One design on one workload: cycles, energy and area per inference."""

    design: str
    cycles: float  # per inference (compute + stalls), mean over samples
    compute_cycles: float
    energy_pj: float  # dynamic (cycle model) + leakage
    leakage_pj: float
    area: dict[str, int]

    def per_area(self, level: str = "core", stalls: bool = False) -> float:
        """Inferences per cycle per transistor at ``level`` (``array``, ``core``, ``tile``);
        ``stalls``: count the DRAM stalls of the memory model too (else compute cycles, what
        the RTL is verified against)."""
        cyc = self.cycles if stalls else self.compute_cycles
        return 1.0 / (cyc * self.area[level])

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "cycles": self.cycles,
            "compute_cycles": self.compute_cycles,
            "energy_uj": self.energy_pj / 1e6,
            "leakage_uj": self.leakage_pj / 1e6,
            "area": self.area,
        }


def run_design(
    d: Design,
    shapes: Sequence[LayerShape],
    masks: Mapping[str, np.ndarray] | None,
    hw: HardwareConfig,
    table: Mapping[str, Any] | None = None,
) -> DesignRun:
    """Simulate ``d`` on ``shapes`` (the dual design follows ``masks``) and price it."""
    cfg = design_config(d, hw)
    sh = design_shapes(d, shapes)
    if d.mode == "dynamic":
        if masks is None:
            raise ValueError("the dual design needs masks")
        res = simulate(sh, masks, cfg, mode="dynamic")
    else:
        res = simulate(sh, None, cfg, mode=d.mode)  # type: ignore[arg-type]
    cyc = res.total_cycles.astype(np.float64)
    ar = area(d, hw, table)
    leak = leakage_energy(ar["tile"], cyc, hw)
    dyn = res.energy_total.sum(axis=0)
    return DesignRun(
        design=d.name,
        cycles=float(cyc.mean()),
        compute_cycles=float(res.compute_cycles.sum(axis=0).mean()),
        energy_pj=float((dyn + leak).mean()),
        leakage_pj=float(leak.mean()),
        area=ar,
    )


def ratios(
    runs: Mapping[str, DesignRun], base: str, level: str = "core", stalls: bool = False
) -> dict[str, float]:
    """Throughput per area of every design over ``base``'s (>1: more work per transistor)."""
    ref = runs[base].per_area(level, stalls)
    return {k: r.per_area(level, stalls) / ref for k, r in runs.items()}


def energy_ratios(runs: Mapping[str, DesignRun], base: str) -> dict[str, float]:
    """Energy per inference of every design over ``base``'s (<1: less energy)."""
    ref = runs[base].energy_pj
    return {k: r.energy_pj / ref for k, r in runs.items()}


def break_even(ratio_grid: Sequence[float], advantage: Sequence[float]) -> float | None:
    """Refine ratio where ``advantage`` (dual over a baseline, per area) crosses 1, by linear
    interpolation on the grid; ``None`` when it never does (0.0 if it never wins)."""
    pts = list(zip(ratio_grid, advantage, strict=True))
    if pts[0][1] < 1.0:
        return 0.0
    for (r0, a0), (r1, a1) in zip(pts, pts[1:], strict=False):
        if a0 >= 1.0 > a1:
            return r0 + (a0 - 1.0) * (r1 - r0) / (a0 - a1)
    return None


#: Refine ratios the break-even ratio is searched on.
GRID: tuple[float, ...] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
LEVELS: tuple[str, ...] = ("array", "core", "tile")


def break_even_grid(
    shapes: Sequence[LayerShape],
    hw: HardwareConfig,
    grid: Sequence[float] = GRID,
    table: Mapping[str, Any] | None = None,
    seed: int = 1,
    design: str = "dual",
) -> dict[str, Any]:
    """The dual design's (``design``: or ``dual_midpoint``) throughput per area over INT8's
    (same lanes) on ``shapes`` with synthetic block masks (one sample) at every refine ratio
    of ``grid``, at every area level, and the refine ratio where it crosses 1
    (:func:`break_even`)."""
    from dynabit.hardware.masks import synthetic_masks

    table = table or load_area_table()
    int8 = run_design(Design("int8", hw.lanes), shapes, None, hw, table)
    adv: dict[str, list[float]] = {lvl: [] for lvl in LEVELS}
    for r in grid:
        m = synthetic_masks(shapes, r, samples=1, seed=seed)
        dual = run_design(Design(design, hw.lanes), shapes, m, hw, table)
        for lvl in LEVELS:
            adv[lvl].append(dual.per_area(lvl) / int8.per_area(lvl))
    return {
        "ratios": list(grid),
        "dual_per_area_over_int8": adv,
        "break_even": {lvl: break_even(grid, adv[lvl]) for lvl in LEVELS},
    }


def compare_designs(
    shapes: Sequence[LayerShape],
    masks: Mapping[str, np.ndarray],
    hw: HardwareConfig,
    budget_bits: int = 5,
    table: Mapping[str, Any] | None = None,
    with_break_even: bool = True,
    midpoint: bool = False,
) -> dict[str, Any]:
    """Dual (``masks``), INT8, INT4 and bit-serial at ``budget_bits`` on ``hw``'s array and
    lanes: each design's figures and its throughput per area and energy against INT8 and INT4;
    ``with_break_even``: the break-even refine ratio against INT8 on these layers
    (:func:`break_even_grid`); ``midpoint``: also ``dual_midpoint`` on the same masks (the
    offset's area and energy cost at equal cycles) and its break-even ratio. ``KeyError`` when
    the area table has no row for ``hw.lanes``."""
    if (hw.weight_bits, hw.act_chunk_bits) != (8, 4):  # what every row of the table is
        raise KeyError(
            f"no area row for W{hw.weight_bits} PEs with {hw.act_chunk_bits}-bit chunks: "
            "the area table's PEs are W8 with 4-bit chunks"
        )
    table = table or load_area_table()
    ds = [
        Design("dual", hw.lanes),
        Design("int8", hw.lanes),
        Design("int4", hw.lanes),
        Design("bitserial", hw.lanes, 1, budget_bits),
    ]
    if midpoint:
        ds.insert(1, Design("dual_midpoint", hw.lanes))
    runs = {d.name: run_design(d, shapes, masks, hw, table) for d in ds}
    out: dict[str, Any] = {
        "lanes": hw.lanes,
        "array": f"{hw.rows}x{hw.cols}",
        "budget_bits": budget_bits,
        "designs": {k: r.to_dict() for k, r in runs.items()},
        "per_area_vs_int8": ratios(runs, "int8", "core"),
        "per_area_vs_int4": ratios(runs, "int4", "core"),
        "per_area_vs_int8_tile": ratios(runs, "int8", "tile"),
        "energy_vs_int8": energy_ratios(runs, "int8"),
    }
    if with_break_even:
        grid = break_even_grid(shapes, hw, table=table)
        out["break_even_ratio_vs_int8"] = grid["break_even"]["core"]
        out["break_even_grid"] = grid
        if midpoint:
            mid = break_even_grid(shapes, hw, table=table, design="dual_midpoint")
            out["break_even_ratio_vs_int8_midpoint"] = mid["break_even"]["core"]
    return out


def headline(res: Mapping[str, Any]) -> dict[str, float]:
    """The dual design's figures of a :func:`compare_designs` result, as a comparison's
    headline names them (``break_even_ratio_vs_int8`` only when it crosses: NaN if never)."""
    even = res.get("break_even_ratio_vs_int8", float("nan"))
    return {
        "throughput_per_area_vs_int8": res["per_area_vs_int8"]["dual"],
        "throughput_per_area_vs_int4": res["per_area_vs_int4"]["dual"],
        "energy_per_inference_vs_int8": res["energy_vs_int8"]["dual"],
        "break_even_ratio_vs_int8": float("nan") if even is None else float(even),
        "lanes": float(res["lanes"]),
    }


def designs_markdown(res: Mapping[str, Any]) -> str:
    """The :func:`compare_designs` result as a markdown table."""
    lines = [
        f"## Per area: designs of the same organisation ({res['array']}, {res['lanes']} lanes, "
        f"equal buffers; bit-serial at A{res['budget_bits']})",
        "",
        "| design | compute cycles | transistors (core) | throughput/area vs INT8 | vs INT4 "
        "| with buffers vs INT8 | energy vs INT8 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in res["designs"].items():
        lines.append(
            f"| {name} | {d['compute_cycles']:.0f} | {d['area']['core']} "
            f"| {res['per_area_vs_int8'][name]:.3f} | {res['per_area_vs_int4'][name]:.3f} "
            f"| {res['per_area_vs_int8_tile'][name]:.3f} | {res['energy_vs_int8'][name]:.3f} |"
        )
    if "break_even_ratio_vs_int8" in res:
        lines += ["", f"break-even refine ratio against INT8 (core): {break_even_words(res)}"]
    return "\n".join(lines) + "\n"


def break_even_words(res: Mapping[str, Any]) -> str:
    """The break-even refine ratio of a :func:`compare_designs` result in words."""
    even = res.get("break_even_ratio_vs_int8")
    if even is None:
        return "none: the dual design wins at every refine ratio up to 1"
    if even == 0.0:
        return "none: the dual design loses even with no refinement"
    return f"{even:.3f} (the dual design wins below it)"


#: The per-area figures a run summary carries (from a comparison's :func:`headline`).
SUMMARY_KEYS: tuple[str, ...] = (
    "throughput_per_area_vs_int8",
    "throughput_per_area_vs_int4",
    "energy_per_inference_vs_int8",
    "break_even_ratio_vs_int8",
)


def summary_figures(head: Mapping[str, float]) -> dict[str, Any]:
    """The per-area figures of a comparison's headline for a run summary (``{}`` when the
    comparison has none; a break-even ratio that never crosses is ``None``), with the lanes
    as ``per_area_lanes``."""
    if "throughput_per_area_vs_int8" not in head:
        return {}
    out: dict[str, Any] = {k: head[k] if np.isfinite(head[k]) else None for k in SUMMARY_KEYS}
    out["per_area_lanes"] = int(head["lanes"])
    return out


def summary_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label/value rows of a run summary's per-area figures (none when it has none)."""
    if "throughput_per_area_vs_int8" not in s:
        return []
    org = f"INT8 of the same organisation ({s['per_area_lanes']}-lane PEs, equal buffers)"
    even = s["break_even_ratio_vs_int8"]
    return [
        (f"throughput per area vs {org}", f"{s['throughput_per_area_vs_int8']:.3f}x"),
        (
            "throughput per area vs INT4, same organisation",
            f"{s['throughput_per_area_vs_int4']:.3f}x",
        ),
        (
            "energy per inference vs INT8, same organisation",
            f"{s['energy_per_inference_vs_int8']:.3f}x",
        ),
        ("break-even refine ratio vs INT8", _even_short(even)),
    ]


def _even_short(even: float | None) -> str:
    if even is None:
        return "none (the dual design wins up to ratio 1)"
    if even == 0.0:
        return "0 (the dual design loses even unrefined)"
    return f"{even:.3f} (the dual design wins below it)"
