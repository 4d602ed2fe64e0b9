"""One layer description: the model's hooks, the lowered program and the RTL jobs agree."""

from __future__ import annotations

import torch

from dynabit.config import HardwareConfig, QuantConfig
from dynabit.engine import lower
from dynabit.hardware.engine_trace import program_shapes
from dynabit.hardware.shapes import layer_shapes_from_model
from dynabit.models import build_model
from dynabit.quant import calibrate, convert, prepare

FIELDS = (
    "kind",
    "in_channels",
    "out_channels",
    "in_hw",
    "out_hw",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "group",
    "block_size",
    "decision",
    "dynamic",
    "bits",
    "hi_bits",
    "score",
)


def test_hooks_and_program_describe_dynamic_layers_alike() -> None:
    torch.manual_seed(0)
    hw = HardwareConfig(rows=4, cols=8)
    cfg = QuantConfig(hardware=hw, score="mean")
    pm = prepare(build_model("resnet20", 1, 10, 8, width=4), cfg)
    x = torch.randn(4, 1, 8, 8)
    calibrate(pm, [x])
    frozen = convert(pm, strict=True)
    program = lower(frozen, (1, 8, 8))
    hooks = {s.name: s for s in layer_shapes_from_model(frozen, x[:1], hw)}
    from_program = program_shapes(program, hw)
    dynamic = [s for s in from_program if s.dynamic]
    assert len(dynamic) >= 5
    for s in dynamic:
        h = hooks[s.name]
        assert {f: getattr(h, f) for f in FIELDS} == {f: getattr(s, f) for f in FIELDS}
        assert s.score == "mean" and s.mask_shape(2) == h.mask_shape(2)
