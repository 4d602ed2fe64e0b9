"""MACs from PyTorch's FLOP counter and BOPs from measured activation bits."""

import pytest
import torch
from torch import nn

from dynabit.models import build_model
from dynabit.quant import calibrate, model_stats, prepare, quant_layers, reset_stats
from dynabit.quant.baselines import method_config
from dynabit.quant.bops import count_macs, fp32_bops, layer_bits, model_bops


def _formula(model: nn.Module, size: int) -> dict[str, int]:
    """MACs per sample by hand: conv C_out*H_out*W_out*C_in/g*k*k, linear in*out."""
    out: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):

            def conv_hook(mod, _inp, y, name=name):
                kh, kw = mod.kernel_size
                per = mod.in_channels // mod.groups * kh * kw
                out[name] = y.shape[1] * y.shape[2] * y.shape[3] * per

            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            out[name] = m.in_features * m.out_features
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    for h in hooks:
        h.remove()
    return out


def _calibrated_stats(pm: torch.nn.Module, x: torch.Tensor):
    """Calibrate ``pm`` on ``x``, then the decision statistics of one eval forward over it."""
    calibrate(pm, [x])
    pm.eval()
    reset_stats(pm)
    with torch.no_grad():
        pm(x)
    return model_stats(pm)


@pytest.mark.parametrize(("arch", "size"), [("small_cnn", 28), ("resnet20", 12)])
def test_flop_counter_macs_match_the_formula(arch, size) -> None:
    model = build_model(arch, 1, 10, size, width=8)
    macs = count_macs(model, torch.zeros(3, 1, size, size))
    assert macs == _formula(model, size)
    assert count_macs(model, torch.zeros(1, 1, size, size)) == macs  # per sample
    if arch == "small_cnn":  # the model's documented size at 28x28, width 16
        full = count_macs(build_model(arch, 1, 10, 28), torch.zeros(1, 1, 28, 28))
        assert sum(full.values()) == 9_147_136


@pytest.mark.parametrize("decision", ["output", "input"])
def test_counted_macs_equal_the_budget_statistics(decision) -> None:
    torch.manual_seed(0)
    fp32 = build_model("resnet20", 1, 10, 8, width=8)
    macs = count_macs(fp32, torch.zeros(1, 1, 8, 8))
    pm = prepare(fp32, method_config("dynabit", 5.0, decision=decision))
    x = torch.randn(6, 1, 8, 8)
    stats = _calibrated_stats(pm, x)
    for name, s in stats.layers.items():
        assert s.macs / len(x) == macs[name]
    with pytest.raises(ValueError, match="float model"):
        count_macs(pm, x)


def test_bops_use_weight_bits_and_measured_activation_bits() -> None:
    torch.manual_seed(0)
    fp32 = build_model("small_cnn", 1, 10, 8, width=8)
    macs = count_macs(fp32, torch.zeros(1, 1, 8, 8))
    x = torch.randn(16, 1, 8, 8)
    edges = {"features.block1.conv", "fc"}
    reports = {}
    for method, budget in (("uniform", 4), ("uniform", 8), ("dynabit", 5.0)):
        pm = prepare(fp32, method_config(method, budget))
        stats = _calibrated_stats(pm, x)
        rep = model_bops(macs, pm, stats)
        reports[(method, budget)] = rep
        assert rep.macs == sum(macs.values())
        for name, lb in rep.layers.items():
            assert lb.weight_bits == 8
            if name in edges:
                assert lb.act_bits == 8
            elif method == "uniform":
                assert lb.act_bits == budget
            else:
                assert lb.act_bits == pytest.approx(stats.layers[name].b_avg)
        assert model_bops(macs, pm, stats.to_dict()).bops == pytest.approx(rep.bops)
    w8a4, w8a8 = reports[("uniform", 4)], reports[("uniform", 8)]
    inner = sum(n for k, n in macs.items() if k not in edges)
    outer = sum(n for k, n in macs.items() if k in edges)
    assert w8a4.bops == inner * 8 * 4 + outer * 8 * 8
    assert w8a8.bops == (inner + outer) * 64
    assert w8a4.bops < reports[("dynabit", 5.0)].bops < w8a8.bops
    assert fp32_bops(macs).bops == model_bops(macs).bops == sum(macs.values()) * 32 * 32
    # Without statistics a dynamic layer counts at its full width (the worst case).
    pm = prepare(fp32, method_config("dynabit", 5.0))
    assert {b for n, (_, b, _) in layer_bits(pm).items() if n not in edges} == {8.0}
    assert {n for n, _ in quant_layers(pm)} == set(macs)
