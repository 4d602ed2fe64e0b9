"""Baselines as config switches: presets, a few training steps, the statistics they report."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from dynabit.config import ConfigError, QuantConfig, TrainConfig, load, save, validate
from dynabit.models import build_model
from dynabit.quant import (
    budget_penalty,
    calibrate,
    dynamic_layers,
    model_stats,
    prepare,
    quant_layers,
    record_decisions,
    reset_stats,
)
from dynabit.quant.baselines import (
    METHODS,
    SWITCHES,
    VARIANTS,
    describe,
    method_config,
    quantizes,
    recalibrate_thresholds,
    split_method,
)
from dynabit.quant.budget import budget_layers
from dynabit.train.optim import build_optimizer

EDGES = {"features.block1.conv", "fc"}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return (x - 0.3) / 0.4, torch.tensor(d.target)


def _trained(cfg: QuantConfig, digits, steps: int = 3) -> torch.nn.Module:
    """small_cnn (width 8) on digits: prepare, calibrate, ``steps`` SGD steps, eval mode."""
    torch.manual_seed(0)
    x, y = digits
    model = prepare(build_model("small_cnn", 1, 10, 8, width=8), cfg)
    calibrate(model, [x[:128]])
    opt = build_optimizer(model, TrainConfig(lr=0.01, threshold_lr=0.05))
    model.train()
    for i in range(steps):
        xb, yb = x[i * 64 : (i + 1) * 64], y[i * 64 : (i + 1) * 64]
        loss = F.cross_entropy(model(xb), yb) + budget_penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def _measure(model: torch.nn.Module, x: torch.Tensor):
    reset_stats(model)
    with torch.no_grad():
        model(x)
    return model_stats(model)


def test_presets_fill_unset_fields_and_explicit_values_win() -> None:
    pg = QuantConfig(method="pg").for_layer("conv")
    assert (pg.group, pg.block_size, pg.decision) == ((1, 1), 1, "output")
    assert pg.threshold_penalty > 0 and pg.train_thresholds
    assert QuantConfig(method="pg").penalty_block == 0.0
    mine = QuantConfig(method="pg", group=(2, 2), threshold_penalty=0.1)
    assert mine.for_layer("c").group == (2, 2) and mine.threshold_penalty == 0.1
    ov = QuantConfig(method="pg", overrides=[{"pattern": "a", "settings": {"group": (1, 4)}}])
    assert ov.for_layer("a").group == (1, 4) and ov.for_layer("b").group == (1, 1)
    drq = QuantConfig(method="drq")
    assert (drq.decision, drq.score, drq.block_all_channels, drq.train_thresholds) == (
        "input",
        "mean",
        True,
        False,
    )
    assert QuantConfig(method="uniform", budget=4).uniform_bits == 4
    assert QuantConfig(method="uniform", uniform_bits=3).uniform_bits == 3
    with pytest.raises(ConfigError, match="integer activation width"):
        validate(QuantConfig, {"method": "uniform", "budget": 4.5})
    with pytest.raises(ConfigError, match="method"):
        validate(QuantConfig, {"method": "ternary"})
    assert QuantConfig().method == "dynabit" and QuantConfig().uniform_bits is None


@pytest.mark.parametrize("method", ["uniform", "pg", "drq", "fp32", "dynabit"])
def test_method_configs_round_trip(tmp_path, method) -> None:
    cfg = method_config(method, 4.0 if method == "uniform" else 5.0)
    save(cfg, tmp_path / "q.yaml")
    assert load(QuantConfig, tmp_path / "q.yaml") == cfg
    assert describe(cfg).startswith(method)
    assert quantizes(method) == (method != "fp32")


def test_variants_are_named_switches() -> None:
    assert split_method("dynabit-midpoint-enforce") == (
        "dynabit",
        {"midpoint": True, "enforce_bounds": True},
    )
    assert split_method("pg-midpoint") == ("pg", {"midpoint": True})
    assert split_method("uniform") == ("uniform", {})
    for bad in ("dynabit-sideways", "uniform-midpoint", "nope"):
        with pytest.raises(ValueError, match="unknown method"):
            split_method(bad)
    assert set(METHODS) == {"dynabit", "uniform", "pg", "drq", "fp32"}
    assert len(VARIANTS) == len(SWITCHES)
    hw = method_config("dynabit-hw8x8", 5.0).for_layer("x")
    assert hw.group == (2, 4) and hw.block_size == 8
    assert method_config("dynabit-input", 6.0).for_layer("x").decision == "input"
    assert method_config("pg-midpoint-dual", 5.0).for_layer("x").scale_fit == "dual"
    assert method_config("dynabit", 5.0).for_layer("x").scale_fit == "full"


def test_dual_scale_fit_applies_to_dynamic_layers_only(digits) -> None:
    """Calibrated from the same FP32 weights and batches, ``-dual`` changes the scales of the
    dual-precision layers and leaves the static edge layers alone."""
    scales = {}
    for method in ("dynabit", "dynabit-dual"):
        torch.manual_seed(0)
        model = prepare(build_model("small_cnn", 1, 10, 8, width=8), method_config(method, 5.0))
        calibrate(model, [digits[0][:256]])
        scales[method] = {n: float(m.act_quant.scale().detach()) for n, m in quant_layers(model)}
    dyn = {n for n, _ in dynamic_layers(model)}
    assert dyn and set(scales["dynabit"]) - dyn
    for name, s in scales["dynabit"].items():
        if name in dyn:
            assert scales["dynabit-dual"][name] != s, name
        else:
            assert scales["dynabit-dual"][name] == s, name


@pytest.mark.parametrize("bits", [4, 8])
def test_uniform_reports_its_bits_exactly(digits, bits) -> None:
    model = _trained(method_config("uniform", bits), digits)
    assert not dynamic_layers(model)
    assert budget_penalty(model).item() == 0.0
    stats = _measure(model, digits[0][1400:])
    assert stats.b_avg_macs == bits and stats.b_avg_elements == bits  # exactly
    assert math.isnan(stats.refine_ratio)
    assert set(stats.layers) == {n for n, _ in quant_layers(model)} - EDGES
    assert all(not s.dynamic and s.b_avg == bits for s in stats.layers.values())
    for name, m in quant_layers(model):  # edges stay at static_bits, outside the budget
        assert m.act_quant.bits == (8 if name in EDGES else bits)


def test_pg_gates_per_element_with_per_channel_thresholds(digits) -> None:
    model = _trained(method_config("pg", 5.0), digits)
    x = digits[0][1400:1500]
    with record_decisions(model) as rec:
        stats = _measure(model, x)
    for name, m in dynamic_layers(model):
        assert m.threshold.numel() == m.out_channels  # one threshold per output channel
        mask = torch.cat(rec[name])
        assert mask.shape[1] == m.out_channels and mask.shape[0] == len(x)
        # one decision per output element: the mask has the output map's shape
        assert mask.shape[2:] == (m.last_grid.height, m.last_grid.width)
        s = stats.layers[name]
        assert s.ratio_elements == pytest.approx(mask.float().mean().item())
        assert len(s.block_ratios) == m.out_channels
        assert bool(m.threshold_target_set)
    assert 4.0 < stats.b_avg_macs < 6.0


def test_pg_penalty_pulls_thresholds_toward_their_targets(digits) -> None:
    model = _trained(method_config("pg", 5.0), digits, steps=1)
    model.train()
    model(digits[0][:32])
    base = budget_penalty(model).item()
    layer = dynamic_layers(model)[0][1]
    with torch.no_grad():
        layer.threshold.add_(1.0)  # every threshold 1 away from its target
    model(digits[0][:32])
    pen = budget_penalty(model)
    assert pen.item() > base
    pen.backward()
    assert (layer.threshold.grad > 0).all()  # pulled back down
    fixed = QuantConfig(method="pg", threshold_target=0.5)
    pm = prepare(build_model("small_cnn", 1, 10, 8, width=8), fixed)
    m = dynamic_layers(pm)[0][1]
    assert bool(m.threshold_target_set) and (m.threshold_target == 0.5).all()


def test_drq_regions_use_fixed_calibrated_thresholds(digits) -> None:
    cfg = method_config("drq", 5.0)
    torch.manual_seed(0)
    model = prepare(build_model("small_cnn", 1, 10, 8, width=8), cfg)
    calibrate(model, [digits[0][:128]])
    before = {n: m.threshold.detach().clone() for n, m in dynamic_layers(model)}
    opt = build_optimizer(model, TrainConfig(lr=0.01, threshold_lr=0.05))
    assert all(g["name"] != "threshold" for g in opt.param_groups)
    model.train()
    for i in range(3):
        xb, yb = digits[0][i * 64 : (i + 1) * 64], digits[1][i * 64 : (i + 1) * 64]
        loss = F.cross_entropy(model(xb), yb) + budget_penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for name, m in dynamic_layers(model):
        assert torch.equal(m.threshold.detach(), before[name])
        assert not m.threshold.requires_grad
        assert m.qcfg.decision == "input" and m.qcfg.block_size == m.in_channels
        assert m.threshold.numel() == 1  # one block spans all input channels
    stats = _measure(model, digits[0][:128])
    assert stats.b_avg_macs == pytest.approx(5.0, abs=0.5)
    # DRQ's offline step: thresholds set again on the fine-tuned network, scales untouched.
    scales = {n: m.act_quant.scale().detach().clone() for n, m in quant_layers(model)}
    with torch.no_grad():
        for _, m in dynamic_layers(model):
            m.threshold.fill_(-1e3)  # refine everything
    # (MAC-weighted it is below 8: low-pass MACs on zero padding are never done)
    assert _measure(model, digits[0][:128]).b_avg_elements == 8.0
    recalibrate_thresholds(model, [digits[0][:128]])
    assert not model.training
    again = _measure(model, digits[0][:128])
    assert again.b_avg_elements == pytest.approx(5.0, abs=0.1)
    for n, m in quant_layers(model):
        assert torch.equal(m.act_quant.scale().detach(), scales[n])


def test_static_layers_enter_the_budget_only_as_uniform(digits) -> None:
    # A uniform layer inside a dynabit model counts at its bits; an override to a static layer
    # stays outside the budget, as before.
    cfg = QuantConfig(
        overrides=[
            {"pattern": "features.block2.conv", "settings": {"uniform_bits": 8}},
            {"pattern": "features.block4.conv", "settings": {"dynamic": False}},
        ]
    )
    model = _trained(cfg, digits, steps=2)
    assert [n for n, _ in budget_layers(model)] == ["features.block2.conv", "features.block3.conv"]
    stats = _measure(model, digits[0][1400:])
    s2, s3 = stats.layers["features.block2.conv"], stats.layers["features.block3.conv"]
    assert s2.b_avg == 8 and not s2.dynamic and s3.dynamic
    expect = (s2.macs * 8 + s3.macs * s3.b_avg) / (s2.macs + s3.macs)
    assert stats.b_avg_macs == pytest.approx(expect)
    assert stats.refine_ratio == pytest.approx(s3.ratio_macs)
