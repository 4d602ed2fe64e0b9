"""prepare / convert / calibrate on whole models, and the budget under training."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from tiny_models import tiny_cnn
from torch import nn

from dynabit.config import QuantConfig
from dynabit.quant import (
    QuantConv2d,
    QuantLinear,
    budget_penalty,
    calibrate,
    convert,
    dynamic_layers,
    model_stats,
    prepare,
    quant_layers,
    reset_stats,
)


def test_prepare_swaps_and_keeps_edges_static(small_hw_config) -> None:
    model = tiny_cnn()
    pm = prepare(model, small_hw_config)
    assert isinstance(model[0], nn.Conv2d) and not isinstance(model[0], QuantConv2d)  # copy
    kinds = {name: (type(m), m.dynamic) for name, m in quant_layers(pm)}
    assert kinds == {
        "0": (QuantConv2d, False),
        "3": (QuantConv2d, True),
        "6": (QuantConv2d, True),
        "11": (QuantLinear, False),
    }
    assert all(isinstance(pm[i], nn.Identity) for i in (1, 4, 7))  # BN absorbed
    assert pm.dynabit_config == small_hw_config
    with pytest.raises(ValueError, match="already prepared"):
        prepare(pm, small_hw_config)


def test_overrides_by_name_and_regex() -> None:
    cfg = QuantConfig(
        hardware={"rows": 4, "cols": 8},
        overrides=[
            {"pattern": "3", "settings": {"budget": 6.0, "score": "mean"}},
            {"pattern": "[0-9]+", "settings": {"group": (1, 4)}},
            {"pattern": "6", "settings": {"dynamic": False}},
        ],
    )
    pm = prepare(tiny_cnn(), cfg)
    assert pm[3].qcfg.budget == 6.0 and pm[3].qcfg.score == "mean" and pm[3].qcfg.group == (1, 4)
    assert not pm[6].dynamic
    assert [n for n, _ in dynamic_layers(pm)] == ["3"]


def test_bn_folding_preserves_the_float_function(small_hw_config) -> None:
    torch.manual_seed(0)
    model = tiny_cnn()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    pm = prepare(model, small_hw_config)
    x = torch.randn(2, 1, 9, 9)
    w, b = pm[0].folded_weight_bias()
    expect = model[1](model[0](x))
    assert torch.allclose(F.conv2d(x, w, b, padding=1), expect, atol=1e-5)


def test_convert_is_close_and_deterministic(small_hw_config, images) -> None:
    pm = prepare(tiny_cnn(), small_hw_config)
    calibrate(pm, [images[:12], images[12:]])
    pm.eval()
    fm = convert(pm)
    assert all(bool(m.frozen) for _, m in quant_layers(fm))
    assert not any(bool(m.frozen) for _, m in quant_layers(pm))
    with torch.no_grad():
        y_float, y_int, y_int2 = pm(images), fm(images), fm(images)
    assert torch.equal(y_int, y_int2)
    assert (y_float.argmax(1) == y_int.argmax(1)).float().mean() > 0.9
    for _, m in quant_layers(fm):
        assert m.w_int.abs().max() <= 127 and m.w_int.dtype == torch.int32


def test_calibration_meets_the_target_ratio(small_hw_config, images) -> None:
    cfg = small_hw_config.model_copy(update={"budget": 5.0})
    pm = prepare(tiny_cnn(), cfg)
    calibrate(pm, [images])
    pm.eval()
    reset_stats(pm)
    with torch.no_grad():
        pm(images)
    stats = model_stats(pm)
    for layer in stats.layers.values():
        assert layer.blocks_in_bounds == 1.0, layer.block_ratios
    assert abs(stats.b_avg_macs - 5.0) < 0.1
    assert abs(stats.b_avg_elements - 5.0) < 0.1


def _digits():
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return (x - 0.3) / 0.4, torch.tensor(d.target)


def test_training_moves_ratio_toward_bounds(small_hw_config) -> None:
    torch.manual_seed(0)
    x, y = _digits()
    x, y = x[:512], y[:512]
    cfg = small_hw_config.model_copy(update={"budget": 5.0, "penalty_block": 5.0})
    pm = prepare(tiny_cnn(), cfg)
    calibrate(pm, [x[:128]], ratio=0.9)  # start far above the bounds [0.15, 0.35]

    def measured() -> float:
        pm.eval()
        reset_stats(pm)
        with torch.no_grad():
            pm(x)
        return model_stats(pm).refine_ratio

    before = measured()
    opt = torch.optim.SGD(
        [
            {"params": [p for n, p in pm.named_parameters() if "threshold" not in n], "lr": 0.01},
            {"params": [p for n, p in pm.named_parameters() if "threshold" in n], "lr": 0.2},
        ],
        momentum=0.9,
    )
    pm.train()
    for step in range(40):
        idx = torch.arange(step * 64, step * 64 + 64) % len(x)
        loss = F.cross_entropy(pm(x[idx]), y[idx]) + budget_penalty(pm)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = measured()
    assert before > 0.8
    assert after < before - 0.3, (before, after)


def test_budget_penalty_zero_inside_bounds(small_hw_config, images) -> None:
    pm = prepare(tiny_cnn(), small_hw_config)
    calibrate(pm, [images])
    pm.train()
    pm(images)
    assert float(budget_penalty(pm).detach()) < 0.05
    calibrate(pm, [images], ratio=1.0)
    pm.train()
    pm(images)
    assert float(budget_penalty(pm).detach()) > 0.5
