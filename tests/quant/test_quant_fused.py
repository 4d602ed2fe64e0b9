"""The fused training path against the plain composition of torch ops it replaced.

The reference below is the layer's float forward written with ordinary autograd ops (codes with
a straight-through estimator, the split, two full convolutions, padded cell reductions, a mask
expanded to full resolution, the sigmoid surrogate). The layer must give the same values and,
up to float rounding, the same gradients for every parameter and the input.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynabit.config import QuantConfig
from dynabit.quant import calibrate, prepare
from dynabit.quant.baselines import method_config
from dynabit.quant.decisions import Grid, surrogate_mask
from dynabit.quant.fused import dual_codes, hard_mask
from dynabit.quant.quantizers import high_pass, quantize_weight


def _reference_reduce(grid: Grid, x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "max":
        return grid._pad(x, float("-inf")).amax(dim=(2, 4, 6))
    total = grid._pad(x, 0.0).sum(dim=(2, 4, 6))
    return total / grid.valid_counts(x.device).to(total.dtype)


def _reference_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The float training forward of a quantized conv, in plain autograd ops."""
    q, s = layer.act_quant.codes(x)
    w_float, b = layer.folded_weight_bias()
    w_int, s_w = quantize_weight(w_float, layer.qcfg.weight_bits)
    w = w_int * s_w.view(-1, 1, 1, 1)
    conv = lambda a, bias: F.conv2d(  # noqa: E731
        a, w, bias, layer.stride, layer.padding, layer.dilation, layer.groups
    )
    if not layer.dynamic:
        return conv(q * s, b)
    cfg = layer.qcfg
    lo = q.detach() - high_pass(q.detach(), cfg.lo_bits, cfg.midpoint)
    hi = q - lo
    y_hi = conv(hi * s, b)
    if cfg.decision == "output":
        _, c, h, wd = y_hi.shape
        grid = Grid(c, h, wd, cfg.block_size, *cfg.group)
        score = _reference_reduce(grid, y_hi, cfg.score) / layer.score_scale
        mask = surrogate_mask(score, layer.threshold, cfg.temperature)
        return y_hi + grid.expand(mask) * conv(lo * s, None)
    _, c, h, wd = x.shape
    grid = Grid(c, h, wd, cfg.block_size, *cfg.group)
    score = _reference_reduce(grid, (q * s).detach(), cfg.score) / layer.score_scale
    mask = surrogate_mask(score, layer.threshold, cfg.temperature)
    return y_hi + conv(grid.expand(mask) * lo * s, None)


CASES = {
    "dynabit-partial-groups": ({}, (7, 5)),
    "dynabit-whole-groups": ({}, (8, 8)),
    "dynabit-mean": ({"score": "mean"}, (7, 5)),
    "dynabit-midpoint": ({"midpoint": True}, (6, 6)),
    "dynabit-input": ({"decision": "input"}, (7, 6)),
    "partial-block": ({"hardware": {"rows": 4, "cols": 12}}, (6, 6)),
    "pg": ({"method": "pg"}, (6, 5)),
    "drq": ({"method": "drq"}, (7, 7)),
    "uniform": ({"method": "uniform", "uniform_bits": 8}, (6, 6)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_training_forward_and_gradients_match_reference(case: str) -> None:
    fields, (h, w) = CASES[case]
    fields = {"hardware": {"rows": 4, "cols": 8}, "keep_first_last": False, **fields}
    method = fields.pop("method", "dynabit")
    cfg: QuantConfig = method_config(method, 5.0 if method != "uniform" else 8.0, **fields)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(6, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    pm = prepare(model, cfg)
    layer = pm[0]
    x = torch.randn(5, 6, h, w)
    calibrate(pm, [x], ratio=0.4)
    pm.train()
    with torch.no_grad():  # thresholds off their calibrated values, inside the score range
        if layer.dynamic:
            layer.threshold.add_(0.05 * torch.randn_like(layer.threshold))
    params = [p for p in pm.parameters() if p.requires_grad]

    def run(fn):
        xi = x.clone().requires_grad_(True)
        out = fn(xi)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad((out * g).sum(), [xi, *params], allow_unused=True)
        return out.detach(), grads

    y_new, g_new = run(layer)
    y_ref, g_ref = run(lambda t: _reference_forward(layer, t))
    torch.testing.assert_close(y_new, y_ref, rtol=1e-5, atol=1e-5)
    assert len(g_new) == len(g_ref)
    for a, b in zip(g_new, g_ref, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if layer.dynamic and layer.threshold.requires_grad and method != "drq":
        at = next(i for i, p in enumerate(params) if p is layer.threshold)
        assert g_new[at + 1].abs().sum() > 0  # the surrogate reaches the thresholds


@pytest.mark.parametrize("lo_bits", [1, 3, 4, 6])
@pytest.mark.parametrize("qrange", [(-128, 127), (0, 255), (-2048, 2047)])
def test_dual_codes_values_are_the_composed_ones(lo_bits, qrange) -> None:
    x = torch.randn(4, 3, 5, 5) * 3
    s = torch.tensor(qrange[1] / 3000.0)
    for grad in (False, True):
        xi = x.clone().requires_grad_(grad)
        hi_s, lo, q = dual_codes(xi, s, qrange, lo_bits, False)
        ref_q = torch.clamp(torch.round(x / s), *qrange)
        ref_hi = high_pass(ref_q, lo_bits)
        assert torch.equal(q, ref_q)
        assert torch.equal(lo, ref_q - ref_hi)
        assert torch.equal(hi_s.detach(), ref_hi * s)


@pytest.mark.parametrize("midpoint", [False, True])
@pytest.mark.parametrize("qrange", [(0, 255), (-128, 127), (1, 6), (-7, 8)])
def test_dual_codes_gradients_at_the_clamp_edges(qrange, midpoint) -> None:
    # Codes half a step either side of each end (round half to even decides whether the clamp
    # lets the gradient pass), with a power-of-two scale so x / s lands exactly on them.
    qn, qp = qrange
    s0 = 0.25
    ends = torch.tensor([qn - 1.0, qn, qn + 1.0, qp - 1.0, qp, qp + 1.0])
    v = torch.cat([ends - 0.5, ends, ends + 0.5, torch.randn(64) * (qp - qn)])
    x = v * s0
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    xi = x.clone().requires_grad_(True)
    s = torch.tensor(s0, requires_grad=True)
    hi_s, lo, q = dual_codes(xi, s, qrange, 2, midpoint)
    (hi_s * g).sum().backward()

    r = torch.round(v)
    ref_q = r.clamp(qn, qp)
    ref_hi = high_pass(ref_q, 2, midpoint)
    passed = ref_q == r
    assert torch.equal(hi_s.detach(), ref_hi * s0)
    assert torch.equal(lo, ref_q - ref_hi)
    assert torch.equal(xi.grad, torch.where(passed, g, 0.0))
    # LSQ: d(hi * s)/ds = hi, minus v where the codes pass (hi moves with round(x / s)).
    ref_s = (g * ref_hi).sum() - (torch.where(passed, g, 0.0) * v).sum()
    torch.testing.assert_close(s.grad, ref_s, rtol=1e-5, atol=1e-5)


def test_hard_mask_skips_the_surrogate_without_gradients() -> None:
    score = torch.randn(2, 3, 4, 4)
    thr = torch.zeros(3)
    m = hard_mask(score, thr, 0.1)
    assert m.grad_fn is None
    assert torch.equal(m, (score > 0).float())
    thr.requires_grad_(True)
    m = hard_mask(score, thr, 0.1)
    m.sum().backward()
    soft = torch.sigmoid(score / 0.1)
    torch.testing.assert_close(thr.grad, -(soft * (1 - soft) / 0.1).sum(dim=(0, 2, 3)))


@pytest.mark.parametrize(
    "fields, hw",
    [({}, (8, 8)), ({}, (7, 5)), ({"midpoint": True}, (6, 6)), ({"signed": True}, (8, 8))],
)
def test_one_node_dual_conv_is_the_separate_nodes_bit_for_bit(monkeypatch, fields, hw) -> None:
    # Whole samples of zeros make the high pass the bias there: every pixel of a group ties
    # for its max, so the max's shared gradient is exercised too.
    fields = dict(fields)
    signed = fields.pop("signed", False)
    cfg = method_config("dynabit", 5.0, hardware={"rows": 4, "cols": 8}, **fields)
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.ReLU(), nn.Conv2d(6, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten()
    )
    model[1].bias = None if signed else model[1].bias
    if signed:
        model[0] = nn.Identity()
    with torch.no_grad():
        model[2].bias.copy_(torch.randn(16))
    cfg = cfg.model_copy(update={"keep_first_last": False})
    pm = prepare(model, cfg)
    x = torch.randn(6, 6, *hw)
    x[:2] = 0.0
    calibrate(pm, [x], ratio=0.4)
    pm.train()
    layer = next(m for m in pm.modules() if getattr(m, "dynamic", False))
    calls = []
    fused = layer._fused_training

    def run(use_fused: bool):
        monkeypatch.setattr(layer, "_fused_training", fused if use_fused else lambda: False)
        calls.append(use_fused and fused())
        xi = x.clone().requires_grad_(True)
        params = [p for p in pm.parameters() if p.requires_grad]
        out = pm(xi)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
        loss = (out * g).sum() + 3.0 * layer.last_mac_ratio  # the mask's second use
        return out.detach(), torch.autograd.grad(loss, [xi, *params], allow_unused=True)

    y_sep, g_sep = run(False)
    y_one, g_one = run(True)
    assert calls == [False, True]
    assert torch.equal(y_sep, y_one)
    for a, b in zip(g_sep, g_one, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)
    # The case had ties: cells whose max is held by more than one element.
    with torch.no_grad():
        x_in = pm[0](x)
        q, s = layer.act_quant.codes(x_in)
        w_float, b = layer.folded_weight_bias()
        w_int, s_w = quantize_weight(w_float, layer.qcfg.weight_bits)
        hi = high_pass(q, layer.qcfg.lo_bits, layer.qcfg.midpoint)
        y_hi = layer._op(hi * s, w_int * s_w.view(-1, 1, 1, 1), b)
        grid = layer.last_grid
        top = grid.expand(_reference_reduce(grid, y_hi, "max"))
        held = grid.reduce((y_hi == top).float(), "sum")
    assert held.max() > 1
