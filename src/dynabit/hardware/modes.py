"""Simulator modes as objects: how a mode streams activations, folds pixels, shapes its masks
and schedules the low pass. :func:`dynabit.hardware.simulate` asks the mode; it never
branches on the mode's name.

To add a mode: write a :class:`SimMode` subclass below, add it to :data:`SIM_MODES` and its
name to :data:`Mode`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.config.layer import ceil_div
from dynabit.hardware.lowpass import (
    LowPass,
    block_masks_output,
    element_masks,
    fixed,
    region_masks,
)
from dynabit.hardware.mapping import FoldPlan
from dynabit.hardware.shapes import LayerShape
from dynabit.hardware.traffic import Precision

Mode = Literal["dense", "uniform", "high", "dynamic", "element", "region", "bitparallel"]


class SimMode:
    """One way of running every layer on the ``R x C`` array of ``act_chunk_bits`` PEs.

    The defaults describe our dual-precision array: a static layer (and every layer of an
    unmasked mode) runs both planes of its activations, chunk by chunk.
    """

    name: ClassVar[str]
    #: Whether the mode follows per-sample masks of the dynamic layers.
    masked: ClassVar[bool] = False

    def precision(self, shape: LayerShape, hw: HardwareConfig) -> Precision:
        """How the layer's activations are streamed."""
        chunk = hw.act_chunk_bits
        c_hi, c_lo = ceil_div(shape.hi_bits, chunk), ceil_div(shape.lo_bits, chunk)
        return Precision(chunk, c_hi, c_lo, shape.hi_bits, shape.lo_bits, False)

    def group_mapping(self, shape: LayerShape) -> bool:
        """Whether the layer's output pixels fold group by group (else SCALE-Sim's even
        split)."""
        return False

    def mask_shape(self, shape: LayerShape, samples: int) -> tuple[int, ...]:
        """Shape a mask for ``shape`` must have."""
        return shape.mask_shape(samples)

    def low_pass(
        self,
        shape: LayerShape,
        plan: FoldPlan,
        hw: HardwareConfig,
        mask: np.ndarray | None,
        samples: int,
        c_hi: int,
        c_lo: int,
    ) -> LowPass:
        """The schedule of the layer's passes: ``fixed`` without a mask, else the mask's."""
        if mask is None:
            return fixed(shape, plan, samples, c_hi, c_lo)
        return self.masked_low_pass(shape, plan, hw, mask, c_hi, c_lo)

    def masked_low_pass(
        self,
        shape: LayerShape,
        plan: FoldPlan,
        hw: HardwareConfig,
        mask: np.ndarray,
        c_hi: int,
        c_lo: int,
    ) -> LowPass:
        """The schedule a mask gives (masked modes): the layer's own group masks, output- or
        input-directed."""
        if shape.decision == "input":
            return region_masks(shape, plan, mask, hw.aligned_units()[0], c_hi, c_lo)
        return block_masks_output(shape, plan, mask, c_hi, c_lo)


class Dense(SimMode):
    """One chunk pass per layer, no masks: the standard systolic formulas."""

    name = "dense"

    def precision(self, shape: LayerShape, hw: HardwareConfig) -> Precision:
        chunk = hw.act_chunk_bits
        return Precision(chunk, 1, 0, chunk, 0, False)


class Uniform(SimMode):
    """Every layer at its full activation width, both planes chained in every fold."""

    name = "uniform"


class High(SimMode):
    """Dynamic layers run the high pass only (the floor); static layers stay full width."""

    name = "high"

    def precision(self, shape: LayerShape, hw: HardwareConfig) -> Precision:
        full = super().precision(shape, hw)
        if not shape.dynamic:
            return full
        return Precision(full.chunk_bits, full.c_hi, 0, full.hi_bits, 0, False)

    def group_mapping(self, shape: LayerShape) -> bool:
        return shape.dynamic and shape.decision == "output"


class Dynamic(SimMode):
    """Dynamic layers follow their group masks (output- or input-directed per layer)."""

    name = "dynamic"
    masked = True

    def precision(self, shape: LayerShape, hw: HardwareConfig) -> Precision:
        full = super().precision(shape, hw)
        if not shape.dynamic:
            return full
        return Precision(
            full.chunk_bits, full.c_hi, full.c_lo, full.hi_bits, full.lo_bits, full.c_lo > 0
        )

    def group_mapping(self, shape: LayerShape) -> bool:
        return shape.dynamic and shape.decision == "output"


class Element(Dynamic):
    """Per-element gating masks ``(N, C_out, H_out, W_out)`` (Precision-Gating style)."""

    name = "element"

    def group_mapping(self, shape: LayerShape) -> bool:
        return False

    def mask_shape(self, shape: LayerShape, samples: int) -> tuple[int, ...]:
        return shape.element_mask_shape(samples)

    def masked_low_pass(
        self,
        shape: LayerShape,
        plan: FoldPlan,
        hw: HardwareConfig,
        mask: np.ndarray,
        c_hi: int,
        c_lo: int,
    ) -> LowPass:
        tile = shape.group if shape.decision == "output" else hw.aligned_units()[0]
        return element_masks(shape, plan, mask, tile, c_hi, c_lo)


class Region(Dynamic):
    """Group masks on the layer's *input* (DRQ-style region gating) for every dynamic layer,
    whatever the layer's own decision source."""

    name = "region"

    def group_mapping(self, shape: LayerShape) -> bool:
        return False

    def mask_shape(self, shape: LayerShape, samples: int) -> tuple[int, ...]:
        return shape.mask_shape(samples, "input")

    def masked_low_pass(
        self,
        shape: LayerShape,
        plan: FoldPlan,
        hw: HardwareConfig,
        mask: np.ndarray,
        c_hi: int,
        c_lo: int,
    ) -> LowPass:
        return region_masks(shape, plan, mask, hw.aligned_units()[0], c_hi, c_lo)


class BitParallel(SimMode):
    """An array of the same PE count with bit-parallel ``8 x weight_bits`` PEs."""

    name = "bitparallel"

    def precision(self, shape: LayerShape, hw: HardwareConfig) -> Precision:
        return Precision(8, ceil_div(shape.bits, 8), 0, shape.bits, 0, False)


SIM_MODES: dict[str, SimMode] = {
    m.name: m() for m in (Dense, Uniform, High, Dynamic, Element, Region, BitParallel)
}
MODES: tuple[str, ...] = tuple(SIM_MODES)
MASKED_MODES: tuple[str, ...] = tuple(n for n, m in SIM_MODES.items() if m.masked)


def mode_for(name: str) -> SimMode:
    """The registered mode called ``name``; a ``ValueError`` naming the allowed ones."""
    try:
        return SIM_MODES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mode {name!r}; allowed: {MODES}") from None
