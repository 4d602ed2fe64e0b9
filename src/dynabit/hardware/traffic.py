"""SRAM and DRAM traffic of one layer, per bit plane, and the DRAM-bandwidth stalls.

SRAM traffic is what the array's edges read and write (one access per operand per streamed
step, as SCALE-Sim counts demands), split into the high and low activation planes, weights,
outputs / partial sums and mask metadata. DRAM traffic follows a reuse model (see
``docs/hardware.md``): an operand is fetched once per layer when its buffer holds it, and once
per outer-loop iteration that needs it when it does not. The low plane is fetched only where
a low pass reads it: the receptive fields of the output pixels whose low pass runs
(output-directed) or the refined input regions (input-directed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.lowpass import LowPass
from dynabit.hardware.mapping import FoldPlan
from dynabit.hardware.shapes import LayerShape

SRAM_KEYS = ("in_hi", "in_lo", "weight", "out", "meta")
DRAM_KEYS = ("in_hi", "in_lo", "weight", "out", "meta")


@dataclass(frozen=True)
class Precision:
    """How one layer's activations are streamed in one mode."""

    chunk_bits: int  # activation bits per PE pass
    c_hi: int  # chunk passes of the high plane
    c_lo: int  # chunk passes of the low plane (0: no low plane)
    hi_bits: int  # bits stored in the high plane
    lo_bits: int  # bits stored in the low plane
    masked: bool  # the low plane runs only where masks say


@dataclass
class Traffic:
    """Bits moved, per sample: ``sram_*`` at the array's edges, ``dram`` to/from DRAM."""

    sram: dict[str, np.ndarray]
    sram_reads: dict[str, np.ndarray]  # per buffer: input, weight, output
    sram_writes: dict[str, np.ndarray]
    dram: dict[str, np.ndarray]

    @property
    def dram_total(self) -> np.ndarray:
        """All DRAM bits per sample."""
        return sum(self.dram.values())  # type: ignore[return-value]


def receptive_pixels(shape: LayerShape, run: np.ndarray) -> np.ndarray:
    """Input pixels read by the output pixels in ``run`` (``(..., H_out, W_out)`` bool).

    Uses banded matrices: ``cover = B_y @ run @ B_x^T`` with ``B[i, o] = 1`` when input
    row ``i`` is one of output row ``o``'s taps. Returns the count per leading index.
    """

    def band(axis: int) -> np.ndarray:
        k, s, p, d = (
            shape.kernel[axis],
            shape.stride[axis],
            shape.padding[axis],
            shape.dilation[axis],
        )
        i = np.arange(shape.in_hw[axis])[:, None]
        off = i - (np.arange(shape.out_hw[axis])[None, :] * s - p)
        return ((off >= 0) & (off <= (k - 1) * d) & (off % d == 0)).astype(np.float32)

    by, bx = band(0), band(1)
    cover = by @ run.astype(np.float32) @ bx.T
    return (cover > 0).sum(axis=(-2, -1))


def _low_footprint_bits(
    shape: LayerShape, plan: FoldPlan, lp: LowPass, prec: Precision, fits: bool
) -> np.ndarray:
    """DRAM bits of the low plane a masked layer needs."""
    n = lp.samples
    if lp.lo_input_elems is not None:  # input-directed: the refined regions themselves
        reuse = 1 if fits else plan.flow.input_refetches(plan)
        return lp.lo_input_elems * prec.lo_bits * reuse
    run = lp.run_pixels
    assert run is not None
    if plan.flow.pixel_major_low_plane():
        chans = shape.in_channels
        counts = receptive_pixels(shape, run[:, 0])
        return counts * chans * prec.lo_bits
    cg = shape.in_channels // shape.groups
    run = run.reshape(n, shape.groups, plan.n_col_folds, *shape.out_hw)
    if fits:
        run = run.any(axis=2, keepdims=True)
    counts = receptive_pixels(shape, run).sum(axis=(1, 2))
    return counts * cg * prec.lo_bits


def layer_traffic(
    shape: LayerShape, plan: FoldPlan, hw: HardwareConfig, lp: LowPass, prec: Precision
) -> Traffic:
    """SRAM and DRAM bits of one layer for every sample."""
    n = lp.samples
    flow = plan.flow
    ones = np.ones(n)
    in_hi, in_lo, weight, out_w, out_r = flow.sram_traffic(
        shape, plan, lp, prec, hw.weight_bits, hw.acc_bits
    )
    meta = ones * 2.0 * lp.decisions

    # --- DRAM ----------------------------------------------------------------------------------
    in_elems = shape.in_channels * shape.in_hw[0] * shape.in_hw[1]
    cap_in = hw.buffer_bits("input")
    outer = flow.input_refetches(plan)
    hi_fits = in_elems * prec.hi_bits <= cap_in
    d_in_hi = ones * in_elems * prec.hi_bits * (1 if hi_fits else outer)
    lo_fits = in_elems * prec.lo_bits <= cap_in
    if prec.c_lo == 0:
        d_in_lo = np.zeros(n)
    elif not prec.masked:
        d_in_lo = ones * in_elems * prec.lo_bits * (1 if lo_fits else outer)
    else:
        d_in_lo = _low_footprint_bits(shape, plan, lp, prec, lo_fits).astype(np.float64)

    total_w = float(shape.out_channels * shape.window * hw.weight_bits)
    cap_w = hw.buffer_bits("weight")
    if total_w <= cap_w:
        d_weight = ones * total_w
    else:
        d_weight = flow.weight_dram_bits(shape, plan, lp, total_w, cap_w, hw.cols, hw.weight_bits)

    d_out = ones * float(shape.pixels * shape.out_channels * shape.out_bits)
    if flow.partial_sums_spill():
        working = plan.t * min(hw.cols, plan.sc) * hw.acc_bits
        if working > hw.buffer_bits("output"):
            d_out = d_out + 2.0 * out_r  # partial sums spill: read back and written again
    d_meta = ones * float(lp.decisions) if lp.lo_input_elems is not None else np.zeros(n)

    sram = {"in_hi": in_hi, "in_lo": in_lo, "weight": weight, "out": out_w + out_r, "meta": meta}
    dram = {"in_hi": d_in_hi, "in_lo": d_in_lo, "weight": d_weight, "out": d_out, "meta": d_meta}
    reads = {"input": in_hi + in_lo + meta / 2, "weight": weight, "output": out_r + d_out}
    writes = {"input": d_in_hi + d_in_lo + meta / 2, "weight": d_weight, "output": out_w}
    return Traffic(sram=sram, sram_reads=reads, sram_writes=writes, dram=dram)


def stall_cycles(dram_bits: np.ndarray, compute: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Cycles the array waits for DRAM: transfer time beyond the layer's compute time.

    Transfers overlap compute within a layer (double-buffered operands); what does not fit
    under the compute time is a stall.
    """
    dram_cycles = np.ceil(dram_bits / (hw.dram_words_per_cycle * hw.word_bits))
    return np.maximum(0, dram_cycles - compute).astype(np.int64)
