"""Semantics of the dual-precision layers: the two passes, the decision, the bounds."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynabit.config import QuantConfig
from dynabit.quant import (
    NotCalibratedError,
    QuantConv2d,
    calibrate,
    convert,
    model_stats,
    prepare,
    reset_stats,
)
from dynabit.quant.quantizers import quantize_weight, split_codes


def _single_conv(cfg: QuantConfig, cin=4, cout=16, k=3) -> tuple[nn.Module, QuantConv2d]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(cin, cout, k, padding=1))
    cfg = cfg.model_copy(update={"keep_first_last": False})
    pm = prepare(model, cfg)
    return pm, pm[1]


def _reference_passes(layer: QuantConv2d, x: torch.Tensor):
    """Integer codes, high/low accumulators computed independently of the layer."""
    s = layer.act_quant.scale().detach()
    qn, qp = layer.act_quant.qrange
    q = torch.clamp(torch.round(torch.relu(x) / s), qn, qp).double()
    w_int, s_w = quantize_weight(layer.weight.detach(), 8)
    q_hi, q_lo = split_codes(q, layer.qcfg.lo_bits)
    conv = lambda a: F.conv2d(a, w_int.double(), None, 1, 1)  # noqa: E731
    return conv(q), conv(q_hi * 16), conv(q_lo), s.double() * s_w.double()


@pytest.mark.parametrize("score", ["max", "mean"])
def test_refined_groups_full_precision_others_high_pass(small_hw_config, score) -> None:
    cfg = small_hw_config.model_copy(update={"score": score})
    pm, layer = _single_conv(cfg)
    x = torch.randn(6, 4, 7, 5)  # 7x5 map with 2x2 groups: partial groups at the edges
    calibrate(pm, [x], ratio=0.5)
    fm = convert(pm)
    fl = fm[1]
    masks = []
    fl.record_masks(masks)
    with torch.no_grad():
        y = fm(x)
    fl.record_masks(None)
    mask = fl.decision_grid(16, 7, 5).expand(masks[0].double())
    full, hi, lo, acc_scale = _reference_passes(layer, x)
    assert 0 < float(mask.mean()) < 1  # both kinds of groups present
    acc = y.double() / acc_scale.view(1, -1, 1, 1) - fl.bias_int.view(1, -1, 1, 1)
    acc = torch.round(acc)
    # Refined groups: exactly the uniform 8-bit result; others: exactly the high pass.
    assert torch.equal(acc[mask.bool()], full[mask.bool()])
    assert torch.equal(acc[~mask.bool()], hi[~mask.bool()])
    assert torch.equal(hi + lo, full)


def test_float_path_matches_passes(small_hw_config) -> None:
    pm, layer = _single_conv(small_hw_config)
    x = torch.randn(4, 4, 6, 6)
    calibrate(pm, [x], ratio=0.4)
    pm.eval()
    masks = []
    layer.record_masks(masks)
    with torch.no_grad():
        y = pm(x)
    layer.record_masks(None)
    mask = layer.decision_grid(*y.shape[1:]).expand(masks[0].float())
    full, hi, _, acc_scale = _reference_passes(layer, x)
    bias = layer.bias.detach().double().view(1, -1, 1, 1)
    expect = torch.where(mask.bool(), full, hi) * acc_scale.view(1, -1, 1, 1) + bias
    assert torch.allclose(y.double(), expect, atol=1e-5, rtol=1e-5)


def test_thresholds_and_weights_receive_gradients(small_hw_config) -> None:
    pm, layer = _single_conv(small_hw_config)
    x = torch.randn(8, 4, 6, 6)
    calibrate(pm, [x])
    pm.train()
    pm(x).pow(2).sum().backward()
    assert layer.threshold.grad is not None and layer.threshold.grad.abs().sum() > 0
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert layer.act_quant.act_scale.grad is not None


@pytest.mark.parametrize("frozen", [False, True])
def test_bounds_one_is_uniform8_and_zero_is_high_pass(small_hw_config, frozen) -> None:
    x = torch.randn(5, 4, 6, 6)
    outs = {}
    for r in (0.0, 1.0):
        cfg = small_hw_config.model_copy(update={"bounds": (r, r), "enforce_bounds": True})
        pm, layer = _single_conv(cfg)
        calibrate(pm, [x], ratio=0.5)  # the threshold alone would refine half
        m = convert(pm) if frozen else pm.eval()
        with torch.no_grad():
            outs[r] = m(x).double()
        full, hi, _, acc_scale = _reference_passes(layer, x)
        bias = m[1].bias.detach().double().view(1, -1, 1, 1)
        ref = (full if r == 1.0 else hi) * acc_scale.view(1, -1, 1, 1) + bias
        assert torch.allclose(outs[r], ref, atol=1e-5, rtol=1e-5)
        assert model_stats(m).refine_ratio == r
    assert not torch.allclose(outs[0.0], outs[1.0])


def test_bounds_enforced_exactly_per_block_and_sample(small_hw_config) -> None:
    cfg = small_hw_config.model_copy(update={"bounds": (0.25, 0.5), "enforce_bounds": True})
    pm, layer = _single_conv(cfg)
    x = torch.randn(7, 4, 8, 8)  # 4x4 = 16 groups per block: 4..8 refined
    calibrate(pm, [x], ratio=0.9)  # thresholds far outside the bounds
    for model in (pm.eval(), convert(pm)):
        target = model[1]
        target.record_masks(rec := [])
        with torch.no_grad():
            model(x)
        target.record_masks(None)
        per_block = rec[0].sum(dim=(2, 3))
        assert bool((per_block >= 4).all()) and bool((per_block <= 8).all())
        assert bool((per_block == 8).any())


def test_input_directed_decisions(small_hw_config) -> None:
    cfg = small_hw_config.model_copy(update={"decision": "input"})
    pm, layer = _single_conv(cfg, cin=12)
    assert layer.threshold.numel() == 2  # blocks over the 12 input channels, 8 per block
    x = torch.randn(4, 12, 6, 6)
    calibrate(pm, [x], ratio=0.3)
    pm.eval()
    reset_stats(pm)
    with torch.no_grad():
        y = pm(x)
    st = model_stats(pm).layers["1"]
    assert 0.1 < st.ratio_elements < 0.5
    assert 0 < st.ratio_macs < 1
    fm = convert(pm)
    with torch.no_grad():
        assert torch.allclose(fm(x), y, atol=0.05 * float(y.abs().max()))


def test_midpoint_changes_only_the_split(small_hw_config) -> None:
    x = torch.randn(4, 4, 6, 6)
    outs = []
    for midpoint in (False, True):
        cfg = small_hw_config.model_copy(
            update={"midpoint": midpoint, "bounds": (1.0, 1.0), "enforce_bounds": True}
        )
        pm, _ = _single_conv(cfg)
        calibrate(pm, [x])
        with torch.no_grad():
            outs.append(convert(pm)(x))
    assert torch.equal(outs[0], outs[1])  # fully refined: the offset cancels exactly


def test_uncalibrated_layer_raises(small_hw_config) -> None:
    pm, _ = _single_conv(small_hw_config)
    with pytest.raises(NotCalibratedError, match="calibrate"):
        pm(torch.randn(1, 4, 4, 4))


def test_feature_map_smaller_than_group() -> None:
    pm, layer = _single_conv(QuantConfig(hardware={"rows": 16, "cols": 8}))
    assert layer.qcfg.group == (4, 4)
    x = torch.randn(3, 4, 2, 3)
    calibrate(pm, [x])
    pm.eval()
    with torch.no_grad():
        assert pm(x).shape == (3, 16, 2, 3)
    assert model_stats(pm).layers["1"].elements == 3 * 16 * 2 * 3


@pytest.mark.parametrize("shape", [(2, 3, 6, 6), (2, 4, 6), (4, 6, 6)])
def test_wrong_input_shape_names_the_layer(small_hw_config, shape) -> None:
    pm, _ = _single_conv(small_hw_config)
    calibrate(pm, [torch.randn(2, 4, 6, 6)])
    with pytest.raises(ValueError, match=r"layer '1' expects \(N, C, H, W\) with C=4"):
        pm(torch.randn(*shape))


def test_nan_in_calibration_data_is_refused(small_hw_config) -> None:
    pm, _ = _single_conv(small_hw_config)
    x = torch.randn(2, 4, 6, 6)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        calibrate(pm, [x])


def test_batch_of_one_and_linear_with_extra_dims(small_hw_config) -> None:
    pm, _ = _single_conv(small_hw_config)
    calibrate(pm, [torch.randn(3, 4, 6, 6)])
    pm.eval()
    with torch.no_grad():
        assert pm(torch.randn(1, 4, 6, 6)).shape == (1, 16, 6, 6)
    lin = prepare(
        nn.Sequential(nn.ReLU(), nn.Linear(8, 16)),
        small_hw_config.model_copy(update={"keep_first_last": False}),
    )
    calibrate(lin, [torch.randn(5, 8)])
    lin.eval()
    with torch.no_grad():
        assert lin(torch.randn(2, 3, 8)).shape == (2, 3, 16)
