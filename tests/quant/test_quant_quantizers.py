import torch
from hypothesis import given
from hypothesis import strategies as st

from dynabit.quant.quantizers import ActQuantizer, code_range, quantize_weight, split_codes


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
