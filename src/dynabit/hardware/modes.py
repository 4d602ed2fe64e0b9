"""Simulator modes as objects: how a mode streams activations, folds pixels, shapes its masks
and schedules the low pass. :func:`dynabit.hardware.simulate` asks the mode; it never
branches on the mode's name.

To add a mode: write a :class:`SimMode` subclass below (its class attributes, and the methods
where it differs from the defaults), add it to :data:`SIM_MODES` and its name to :data:`Mode`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.config.layer import ceil_div, hardware_units
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


def array_tile(hw: HardwareConfig) -> tuple[int, int]:
    """The pixel patch of the array's default decision units
    (:func:`~dynabit.config.layer.hardware_units`): the order output pixels take when the
    layer's output has no groups of its own."""
    return hardware_units(hw)[0]


class SimMode:
    """One way of running every layer on the ``R x C`` array of ``act_chunk_bits`` PEs.

    The defaults describe our dual-precision array: a static layer (and every layer of an
    unmasked mode) runs both planes of its activations, chunk by chunk, and the output pixels
    fold in SCALE-Sim's even split. A mode says what differs through its class attributes
    and, where those do not suffice, by overriding a method.
    """

    name: ClassVar[str]
    #: Whether the mode follows per-sample masks of the dynamic layers.
    masked: ClassVar[bool] = False
    #: Whether an output-directed dynamic layer folds its output pixels group by group.
    folds_by_group: ClassVar[bool] = False

    def precision(self, shape: LayerShape, hw: HardwareConfig) -> Precision:
        """How the layer's activations are streamed: both planes, chunk by chunk; a dynamic
        layer as :meth:`dynamic_precision` says."""
        chunk = hw.act_chunk_bits
        c_hi, c_lo = ceil_div(shape.hi_bits, chunk), ceil_div(shape.lo_bits, chunk)
        full = Precision(chunk, c_hi, c_lo, shape.hi_bits, shape.lo_bits, False)
        return self.dynamic_precision(full) if shape.dynamic else full

    def dynamic_precision(self, full: Precision) -> Precision:
        """How a dynamic layer's planes run, given both planes unmasked (``full``)."""
        return full

    def group_mapping(self, shape: LayerShape) -> bool:
        """Whether the layer's output pixels fold group by group (else SCALE-Sim's even
        split)."""
        return self.folds_by_group and shape.dynamic and shape.decision == "output"

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
            return region_masks(shape, plan, mask, array_tile(hw), c_hi, c_lo)
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
    folds_by_group = True

    def dynamic_precision(self, full: Precision) -> Precision:
        return replace(full, c_lo=0, lo_bits=0)


class Dynamic(SimMode):
    """Dynamic layers follow their group masks (output- or input-directed per layer)."""

    name = "dynamic"
    masked = True
    folds_by_group = True

    def dynamic_precision(self, full: Precision) -> Precision:
        return replace(full, masked=full.c_lo > 0)


class Element(Dynamic):
    """Per-element gating masks ``(N, C_out, H_out, W_out)`` (Precision-Gating style)."""

    name = "element"
    folds_by_group = False

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
        tile = shape.group if shape.decision == "output" else array_tile(hw)
        return element_masks(shape, plan, mask, tile, c_hi, c_lo)


class Region(Dynamic):
    """Group masks on the layer's *input* (DRQ-style region gating) for every dynamic layer,
    whatever the layer's own decision source."""

    name = "region"
    folds_by_group = False

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
        return region_masks(shape, plan, mask, array_tile(hw), c_hi, c_lo)


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
