"""Shapes and the masks a prepared model's dynamic layers actually decide on real inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.shapes import LayerShape, layer_shapes_from_model


def trace_model(
    model: Any, inputs: Any, hw: HardwareConfig | None = None, batch_size: int = 256
) -> tuple[list[LayerShape], dict[str, np.ndarray]]:
    """Run ``inputs`` (a ``(N, ...)`` tensor) through a ``dynabit.quant.prepare``-d model.

    Returns the layer shapes (forward hooks; group, block and decision from each layer's
    ``qcfg``) and the hard masks ``(N, n_blocks, n_gh, n_gw)`` of every dynamic layer, in the
    format ``simulate`` takes. The model runs in eval mode, in batches of ``batch_size``.
    """
    import torch

    from dynabit.quant import record_decisions

    was_training = model.training
    model.eval()
    try:
        shapes = layer_shapes_from_model(model, inputs[:1], hw)
        with record_decisions(model) as rec, torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                model(inputs[start : start + batch_size])
    finally:
        model.train(was_training)
    masks = {
        name: (torch.cat(parts).detach().cpu().numpy() > 0.5)
        for name, parts in rec.items()
        if parts
    }
    return shapes, masks
