"""Integer arithmetic of the frozen models: fixed point, rounding, pooling, exact tensors."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dynabit.config import QuantConfig
from dynabit.models import build_model
from dynabit.quant import calibrate, convert, prepare
from dynabit.quant.integer_ops import (
    MULT_BITS,
    IntAdd,
    IntAvgPool,
    IntModule,
    fixed_point,
    quantize_float,
    recover,
    requantize,
    rshift_round,
)
from dynabit.quant.layers import QuantLayerMixin


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-12, 2.0**20, allow_nan=False))
def test_fixed_point_multiplier_is_accurate(r: float) -> None:
    m, k = fixed_point(torch.tensor([r], dtype=torch.float64))
    m, k = int(m), int(k)
    assert 1 <= k <= 62
    if k < 62:
        assert (1 << (MULT_BITS - 1)) <= m < (1 << MULT_BITS)
        assert abs(Fraction(m, 1 << k) - Fraction(r)) <= Fraction(r) * Fraction(1, 1 << MULT_BITS)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**40), 2**40), st.integers(1, 40))
def test_rshift_round_is_floor_plus_half(t: int, k: int) -> None:
    got = int(rshift_round(torch.tensor(t), torch.tensor(k)))
    assert got == math.floor(Fraction(t, 1 << k) + Fraction(1, 2))


def test_requantize_matches_exact_rounding_and_clamps() -> None:
    t = torch.arange(-3000, 3000, dtype=torch.int64)
    ratio = 0.0371
    m, k = fixed_point(torch.tensor(ratio, dtype=torch.float64))
    q = requantize(t, m, k, 0, 255)
    mult = Fraction(int(m), 1 << int(k))
    exact = torch.tensor([math.floor(int(v) * mult + Fraction(1, 2)) for v in t])
    assert torch.equal(q, exact.clamp(0, 255))
    # the fixed-point result is round(t * ratio) except within 2**-29 of a half
    assert int((q - torch.round(t * ratio).clamp(0, 255)).abs().max()) <= 1


def test_quantize_float_is_float32_round_half_even() -> None:
    s = torch.tensor(0.1)
    x = torch.tensor([0.05, 0.15, 0.25, -0.05, 100.0, -100.0])
    expect = torch.clamp(torch.round(x / s), -128, 127).to(torch.int64)  # float32 division
    assert torch.equal(quantize_float(x, s, -128, 127), expect)


@pytest.mark.parametrize(
    ("pool", "hw"),
    [
        (nn.AdaptiveAvgPool2d(2), (7, 7)),  # overlapping 4x4 bins
        (nn.AdaptiveAvgPool2d((3, 2)), (5, 9)),
        (nn.AdaptiveAvgPool2d(1), (6, 4)),
        (nn.AvgPool2d(3, stride=2, padding=1), (7, 6)),
    ],
)
def test_int_avgpool_is_rounded_exact_mean(pool: nn.Module, hw: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randint(-500, 500, (2, 3, *hw), generator=g)
    scale = torch.tensor([0.5, 0.25, 2.0], dtype=torch.float64)
    out = recover(IntAvgPool(pool, scale)(t.double() * scale.view(1, -1, 1, 1)), scale)
    # reference: the float pool of the integers (count_include_pad) gives each bin's mean
    mean = pool(t.double())
    assert out.shape == mean.shape
    assert int((out.double() - mean).abs().max() * 2) <= 1  # within half a unit
    assert torch.equal(out, torch.floor(mean + 0.5 + 1e-9).to(torch.int64))


def test_int_add_rounds_once() -> None:
    sa = torch.tensor([0.01, 0.02], dtype=torch.float64)
    sb = torch.tensor([0.005], dtype=torch.float64)
    so = torch.tensor([0.003], dtype=torch.float64)
    add = IntAdd(sa, sb, so)
    a = torch.randint(-1000, 1000, (3, 2, 4, 4))
    b = torch.randint(-1000, 1000, (3, 2, 4, 4))
    z = recover(add(a.double() * sa.view(1, -1, 1, 1), b.double() * sb), so)
    exact = (a.double() * sa.view(1, -1, 1, 1) + b.double() * sb) / so
    assert float((z - exact).abs().max()) <= 0.5 + 1e-6


def test_frozen_resnet_passes_exact_integers_between_layers() -> None:
    """Every tensor a wired module emits is an exact integer times its scale (float64)."""
    torch.manual_seed(0)
    pm = prepare(build_model("resnet20", 1, 10, 8, width=4), QuantConfig(hardware={"rows": 4}))
    x = torch.randn(4, 1, 8, 8)
    calibrate(pm, [x])
    fm = convert(pm, strict=True)
    seen = []

    def check(module: nn.Module, _inp, out: torch.Tensor) -> None:
        if isinstance(module, QuantLayerMixin):
            scale = module.acc_scale
        else:
            scale = module.scale_out if isinstance(module, IntAdd) else module.scale
        if out.dtype == torch.float64:  # internal (the output is the model's float dtype)
            t = recover(out, scale)
            assert torch.equal(
                t.double() * scale.view(1, -1, *([1] * (out.dim() - 2)))
                if scale.numel() > 1
                else t.double() * scale,
                out,
            )
            seen.append(type(module).__name__)

    hooks = [
        m.register_forward_hook(check)
        for m in fm.modules()
        if isinstance(m, QuantLayerMixin | IntModule)
    ]
    with torch.no_grad():
        fm(x)
    for h in hooks:
        h.remove()
    assert {"QuantConv2d", "IntAdd", "IntAvgPool"} <= set(seen)
