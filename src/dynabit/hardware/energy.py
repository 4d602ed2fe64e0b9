"""Energy of one layer from its operation counts and the config's per-operation table.

* compute: every chunk MAC the PEs perform (PEs outside the used rows/columns and PEs whose
  output needs no low pass are clock-gated), the shift-and-add merging high and low sums, and
  two operand-register writes per lane per PE per streamed step; with ``lanes = N > 1`` a
  product costs :meth:`~dynabit.config.hardware.EnergyTable.lane_mac` (one accumulator add
  per step shared by ``N`` products, plus the adder tree);
* SRAM: array-side reads and writes plus the buffer fills and drains to DRAM, at the energy of
  each buffer's size;
* DRAM: every word moved;
* control: one comparator per decision input (per output for output-directed decisions, per
  input element for input-directed ones) and one threshold-register read per decision.

Leakage is not part of :func:`layer_energy`: it depends on the design's area, which the
cycle model does not know; :func:`leakage_energy` charges ``leakage_nw_per_transistor`` x
transistors x cycles (used by :mod:`dynabit.hardware.iso_area`).
"""

from __future__ import annotations

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.lowpass import LowPass
from dynabit.hardware.mapping import FoldPlan
from dynabit.hardware.shapes import LayerShape
from dynabit.hardware.traffic import Precision, Traffic

ENERGY_KEYS = ("compute", "sram", "dram", "control")


def layer_energy(
    shape: LayerShape,
    plan: FoldPlan,
    hw: HardwareConfig,
    lp: LowPass,
    prec: Precision,
    traffic: Traffic,
) -> dict[str, np.ndarray]:
    """Energy in pJ per sample, split into compute, SRAM, DRAM and control."""
    e = hw.energy
    mac = e.lane_mac(prec.chunk_bits, hw.weight_bits, hw.lanes)
    hi_macs = float(shape.macs * prec.c_hi)
    area = (plan.rows_used * plan.cols_used).astype(np.float64)
    pe_steps = (plan.t * prec.c_hi + lp.lo_main + lp.t_second).astype(np.float64) @ area
    compute = (hi_macs + lp.lo_macs) * mac + lp.merged * e.shift_add_pj
    compute = compute + 2.0 * hw.lanes * pe_steps * e.register_pj

    word = float(hw.word_bits)
    sram = np.zeros(lp.samples)
    for buf in ("input", "weight", "output"):
        sram = sram + traffic.sram_reads[buf] / word * hw.sram_pj(buf)  # type: ignore[arg-type]
        sram = sram + traffic.sram_writes[buf] / word * hw.sram_pj(buf, write=True)  # type: ignore[arg-type]
    dram = traffic.dram_total / word * hw.dram_pj()
    control = np.full(lp.samples, lp.compares * e.comparator_pj + lp.decisions * e.register_pj)
    return {"compute": compute, "sram": sram, "dram": dram, "control": control}


def leakage_energy(
    transistors: float, cycles: np.ndarray | float, hw: HardwareConfig
) -> np.ndarray:
    """Leakage (pJ) of ``transistors`` powered for ``cycles`` (area x time, see the table)."""
    c = np.asarray(cycles, dtype=np.float64)
    return hw.energy.leakage_pj(transistors, 1.0, hw.clock_mhz) * c
