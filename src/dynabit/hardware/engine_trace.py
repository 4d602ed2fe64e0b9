"""Shapes and masks from an integer program and the decisions the engine took on real inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.shapes import LayerShape, shape_of


def program_shapes(program: Any, hw: HardwareConfig) -> list[LayerShape]:
    """One :class:`LayerShape` per conv/linear op of a lowered ``IntegerProgram``.

    Dynamic layers take their group, block and decision source from the program; static ones
    use the array's default decision units (they have none of their own).
    """
    return [shape_of(program.layer_spec(op, hw)) for op in program.layer_ops()]


def trace_masks(trace: Any) -> dict[str, np.ndarray]:
    """The engine trace's group decisions, ``layer -> bool (N, blocks, gh, gw)``."""
    return {
        lt.name: lt.mask.cpu().numpy().astype(bool)
        for lt in trace.layers
        if lt.dynamic and lt.mask is not None
    }
