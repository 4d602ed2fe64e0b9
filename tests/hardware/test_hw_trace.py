"""Masks from the quantization layers feed the simulator (needs dynabit.quant)."""

from __future__ import annotations

import torch
from torch import nn

import dynabit.config.quant as config
import dynabit.quant as quant
from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.simulator import simulate


def test_trace_a_prepared_model():
    from dynabit.hardware.trace import trace_model

    torch.manual_seed(0)
    hw = HardwareConfig(rows=16, cols=16)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(1),
        nn.Linear(32 * 8 * 8, 10),
    )
    model = quant.prepare(model, config.QuantConfig(hardware=hw))
    x = torch.rand(12, 1, 8, 8)
    quant.calibrate(model, [x[:6]])
    shapes, masks = trace_model(model, x, hw, batch_size=5)
    dyn = [s for s in shapes if s.dynamic]
    assert dyn and set(masks) == {s.name for s in dyn}
    for s in dyn:
        assert masks[s.name].shape == s.mask_shape(12) and masks[s.name].dtype == bool
    res = simulate(shapes, masks, hw, "dynamic")
    assert res.samples == 12 and (res.cycles > 0).all()
