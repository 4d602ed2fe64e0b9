"""Shapes and masks from an integer program and the decisions the engine took on real inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.shapes import LayerShape


def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[1], shape[2]) if len(shape) == 3 else (1, 1)


def program_shapes(program: Any, hw: HardwareConfig) -> list[LayerShape]:
    """One :class:`LayerShape` per conv/linear op of a lowered ``IntegerProgram``.

    Dynamic layers take their group, block and decision source from the program; static ones
    use the array's default decision units (they have none of their own).
    """
    shapes = []
    for op in program.layer_ops():
        a = op.attrs
        in_shape = program.tensors[op.inputs[0]].shape
        out_shape = program.tensors[op.output].shape
        weight = op.params["weight"]
        conv = op.kind == "conv2d"
        dynamic = bool(a["dynamic"])
        bits = int(a["bits"])
        shapes.append(
            LayerShape(
                name=op.name,
                kind="conv" if conv else "linear",
                in_channels=int(in_shape[0]),
                out_channels=int(out_shape[0]),
                in_hw=_hw(in_shape),
                out_hw=_hw(out_shape),
                kernel=(int(weight.shape[2]), int(weight.shape[3])) if conv else (1, 1),
                stride=tuple(a["stride"]) if conv else (1, 1),
                padding=tuple(a["padding"]) if conv else (0, 0),
                dilation=tuple(a["dilation"]) if conv else (1, 1),
                groups=int(a["groups"]) if conv else 1,
                group=tuple(a["group"]) if dynamic else hw.default_group_shape(),
                block_size=int(a["block_size"]) if dynamic else hw.default_block_size(),
                decision=a["decision"] if dynamic else "output",
                dynamic=dynamic,
                bits=bits,
                hi_bits=bits - int(a["lo_bits"]) if dynamic else hw.act_chunk_bits,
            )
        )
    return shapes


def trace_masks(trace: Any) -> dict[str, np.ndarray]:
    """The engine trace's group decisions, ``layer -> bool (N, blocks, gh, gw)``."""
    return {
        lt.name: lt.mask.cpu().numpy().astype(bool)
        for lt in trace.layers
        if lt.dynamic and lt.mask is not None
    }
