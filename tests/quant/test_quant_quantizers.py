import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dynabit.quant.quantizers import (
    ActQuantizer,
    DualSplit,
    code_range,
    high_pass,
    quantize_weight,
    split_codes,
)


@given(bits=st.integers(2, 12), data=st.data())
def test_split_round_trips_exactly(bits: int, data) -> None:
    lo_bits = data.draw(st.integers(1, bits - 1))
    signed = data.draw(st.booleans())
    qn, qp = code_range(bits, signed)
    codes = data.draw(st.lists(st.integers(qn, qp), min_size=1, max_size=64))
    q = torch.tensor(codes, dtype=torch.float32)
    q_hi, q_lo = split_codes(q, lo_bits)
    assert torch.equal(q_hi * 2**lo_bits + q_lo, q)
    assert bool(((q_lo >= 0) & (q_lo < 2**lo_bits)).all())
    assert torch.equal(q_hi, torch.floor(q_hi))


def test_weight_quant_per_channel_range() -> None:
    w = torch.randn(6, 3, 3, 3) * torch.arange(1, 7).view(-1, 1, 1, 1)
    w_int, scale = quantize_weight(w, 8)
    assert scale.shape == (6,)
    assert w_int.abs().amax(dim=(1, 2, 3)).eq(127).all()
    assert torch.allclose(w_int * scale.view(-1, 1, 1, 1), w, atol=float(scale.max()) / 2 + 1e-6)


def test_act_quantizer_calibration_sets_sign_and_scale() -> None:
    aq = ActQuantizer(8)
    aq.start_observation()
    aq.observe(torch.rand(1000) * 3.0)
    aq.finish_observation()
    assert not bool(aq.signed) and bool(aq.calibrated)
    assert 0.2 * 3 / 255 < float(aq.scale().detach()) <= 3.0 / 255 + 1e-6
    aq2 = ActQuantizer(8)
    aq2.start_observation()
    aq2.observe(torch.randn(1000))
    aq2.finish_observation()
    assert bool(aq2.signed) and aq2.qrange == (-128, 127)


def test_act_quantizer_scale_gets_gradient() -> None:
    aq = ActQuantizer(4)
    aq.start_observation()
    aq.observe(torch.rand(100))
    aq.finish_observation()
    x = torch.rand(4, 10) * 2
    q, s = aq.codes(x)
    (q * s).sum().backward()
    assert aq.act_scale.grad is not None and aq.act_scale.grad.abs() > 0


def test_high_pass_truncates_or_adds_half_a_low_step_keeping_zeros() -> None:
    q = torch.tensor([0.0, 5.0, 15.0, 16.0, 31.0, 255.0, -1.0, -16.0, -17.0])
    assert high_pass(q, 4).tolist() == [0, 0, 0, 16, 16, 240, -16, -16, -32]
    mid = high_pass(q, 4, midpoint=True).tolist()
    assert mid == [0, 0, 0, 24, 24, 248, -8, -8, -24]  # +8 wherever q_hi != 0
    assert high_pass(q, 0).tolist() == q.tolist()


def _dual_error(x: torch.Tensor, scale: float, split: DualSplit) -> float:
    q = torch.clamp(torch.round(x / scale), 0, 255)
    full = ((q * scale - x) ** 2).mean()
    hi = ((high_pass(q, split.lo_bits, split.midpoint) * scale - x) ** 2).mean()
    return float(split.refine_ratio * full + (1 - split.refine_ratio) * hi)


@pytest.mark.parametrize("midpoint", [False, True])
def test_dual_scale_fit_minimises_the_expected_dual_precision_error(midpoint) -> None:
    """A scale fitted for the 8-bit codes wastes the high pass on the rare large values; the
    dual fit trades some clipping for finer high-pass steps, and its expected error is lower."""
    x = torch.randn(20_000, generator=torch.Generator().manual_seed(0)).abs() ** 2  # heavy tail
    split = DualSplit(lo_bits=4, refine_ratio=0.25, midpoint=midpoint)
    full, dual = ActQuantizer(8), ActQuantizer(8)
    for aq, arg in ((full, None), (dual, split)):
        aq.start_observation()
        aq.observe(x)
        aq.finish_observation(arg)
    s_full, s_dual = float(full.scale().detach()), float(dual.scale().detach())
    assert s_dual < s_full
    assert _dual_error(x, s_dual, split) < 0.9 * _dual_error(x, s_full, split)
    everything = DualSplit(lo_bits=4, refine_ratio=1.0, midpoint=midpoint)  # all refined
    aq = ActQuantizer(8)
    aq.start_observation()
    aq.observe(x)
    aq.finish_observation(everything)
    assert float(aq.scale().detach()) == s_full
