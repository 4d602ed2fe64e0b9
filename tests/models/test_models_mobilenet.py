"""The MobileNetV2-style network: shapes, size, width multiplier, block structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynabit.models import MODEL_NAMES, Add, InvertedResidual, MobileNetV2, build_model
from dynabit.models.mobilenet_v2 import make_divisible
from dynabit.quant import QuantConv2d, dynamic_layers, prepare


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (1, 8)])
def test_output_shapes(channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", channels, 7, size)
    out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_registered_with_width_as_multiplier() -> None:
    assert "mobilenet_v2" in MODEL_NAMES
    full = build_model("mobilenet_v2", 1, 10, 28)
    half = build_model("mobilenet_v2", 1, 10, 28, width=16)
    assert isinstance(full, MobileNetV2) and full.width_mult == 1.0 and half.width_mult == 0.5
    n_full = sum(p.numel() for p in full.parameters())
    n_half = sum(p.numel() for p in half.parameters())
    assert 200_000 < n_full < 600_000  # a few hundred thousand parameters
    assert n_half < 0.4 * n_full
    assert full.stem.conv.out_channels == 32 and half.stem.conv.out_channels == 16


def test_inverted_residuals_with_linear_bottlenecks() -> None:
    model = build_model("mobilenet_v2", 1, 10, 28)
    blocks = [b for b in model.blocks if isinstance(b, InvertedResidual)]
    assert len(blocks) == len(model.blocks) == 11
    for b in blocks:
        dw = b.depthwise.conv
        assert dw.groups == dw.in_channels == dw.out_channels and dw.kernel_size == (3, 3)
        assert isinstance(b.depthwise.act, nn.ReLU6)
        assert not hasattr(b.project, "act")  # linear bottleneck: no activation
        assert b.project.conv.kernel_size == (1, 1)
        if not isinstance(b.expand, nn.Identity):
            assert b.expand.conv.out_channels == 6 * b.expand.conv.in_channels
        same_shape = dw.stride == (1, 1) and b.project.conv.out_channels == (
            b.expand.conv.in_channels if not isinstance(b.expand, nn.Identity) else dw.in_channels
        )
        assert isinstance(b.add, Add) == same_shape
    assert sum(b.add is not None for b in blocks) == 6
    # three resolutions for 28 x 28 inputs: 28, 14, 7
    x = model.blocks(model.stem(torch.zeros(1, 1, 28, 28)))
    assert x.shape[-2:] == (7, 7)


def test_residual_block_adds_its_input() -> None:
    torch.manual_seed(0)
    b = InvertedResidual(8, 8, 1, 6).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(b(x), b.project(b.depthwise(b.expand(x))) + x)
    assert InvertedResidual(8, 16, 1, 6).add is None and InvertedResidual(8, 8, 2, 6).add is None
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(8, 8, 3, 6)
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0.0)


def test_make_divisible() -> None:
    assert [make_divisible(v) for v in (32, 16, 11.2, 3, 36)] == [32, 16, 16, 8, 40]


def test_prepare_folds_every_bn_and_keeps_depthwise_groups() -> None:
    qmodel = prepare(build_model("mobilenet_v2", 1, 10, 28))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qmodel.modules())
    dw = qmodel.blocks[1].depthwise.conv
    assert isinstance(dw, QuantConv2d) and dw.groups == dw.in_channels == 96
    # every conv but the stem: 11 depthwise, 11 project, 10 expand, the head
    assert len(dynamic_layers(qmodel)) == 33
