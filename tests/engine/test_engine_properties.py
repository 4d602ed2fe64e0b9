"""Property tests: the engine equals the frozen PyTorch model bit for bit on random layers.

Random single conv/linear layers (shapes, strides, padding, dilation, conv groups, decision
grid, score, decision source, midpoint, bounds, thresholds and inputs), random residual blocks
(requantization, integer add, average pooling, flatten), and two closed-form references: all
groups refined = a uniform 8-bit integer convolution, none refined = the high pass only.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from dynabit.config import QuantConfig
from dynabit.engine import Executor, lower
from dynabit.models.layers import Add
from dynabit.quant import calibrate, convert, prepare, record_decisions
from dynabit.quant.faithful import record_integers

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def layer_case(draw: st.DrawFn) -> dict:
    linear = draw(st.booleans())
    groups = 1 if linear else draw(st.sampled_from([1, 1, 2]))
    cin = groups * draw(st.integers(1, 4))
    cout = groups * draw(st.integers(1, 7))
    k, padding, dilation = draw(st.integers(1, 3)), draw(st.integers(0, 1)), draw(st.integers(1, 2))
    smallest = max(3, dilation * (k - 1) + 1 - 2 * padding)  # the window fits the padded map
    case = {
        "linear": linear,
        "cin": cin,
        "cout": cout,
        "groups": groups,
        "k": k,
        "stride": draw(st.integers(1, 2)),
        "padding": padding,
        "dilation": dilation,
        "h": draw(st.integers(smallest, 9)),
        "w": draw(st.integers(smallest, 9)),
        "relu": draw(st.booleans()),  # False: signed input codes
        "block": draw(st.integers(1, 5)),
        "group": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "score": draw(st.sampled_from(["max", "mean"])),
        "decision": draw(st.sampled_from(["output", "input"])),
        "midpoint": draw(st.booleans()),
        "bounds": draw(st.sampled_from([None, (0.0, 0.5), (0.25, 0.75), (0.5, 1.0)])),
        "hi_bits": draw(st.integers(2, 6)),
        "ratio": draw(st.floats(0.0, 1.0)),
        "nudge": draw(st.integers(-1, 1)),  # moves thresholds onto score values (ties)
        "seed": draw(st.integers(0, 2**16)),
        "n": draw(st.integers(1, 4)),
    }
    return case


def _config(case: dict, **extra) -> QuantConfig:
    fields = {
        "hardware": {"rows": 16, "cols": 16},
        "keep_first_last": False,
        "block_size": case["block"],
        "group": case["group"],
        "score": case["score"],
        "decision": case["decision"],
        "midpoint": case["midpoint"],
        "hi_bits": case["hi_bits"],
        "budget": case["hi_bits"] + 1.0,
    }
    if case["bounds"] is not None:
        fields.update(bounds=case["bounds"], enforce_bounds=True)
    fields.update(extra)
    return QuantConfig(**fields)


def _single_layer(case: dict, **extra) -> tuple[nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(case["seed"])
    if case["linear"]:
        layer: nn.Module = nn.Linear(case["cin"] * case["h"], case["cout"])
        x = torch.randn(8, case["cin"] * case["h"], generator=g)
    else:
        layer = nn.Conv2d(
            case["cin"],
            case["cout"],
            case["k"],
            stride=case["stride"],
            padding=case["padding"],
            dilation=case["dilation"],
            groups=case["groups"],
        )
        x = torch.randn(8, case["cin"], case["h"], case["w"], generator=g)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model = nn.Sequential(nn.ReLU(), layer) if case["relu"] else nn.Sequential(layer)
    pm = prepare(model, _config(case, **extra))
    calibrate(pm, [x], ratio=case["ratio"])
    fm = convert(pm, strict=True)
    target = fm[-1]
    if target.dynamic:
        with torch.no_grad():
            target.threshold_int.add_(case["nudge"])
    return fm, x[: case["n"]]


def _assert_parity(fm: nn.Module, x: torch.Tensor) -> None:
    program = lower(fm, tuple(x.shape[1:]))
    with torch.no_grad(), record_integers(fm) as ints, record_decisions(fm) as masks:
        y = fm(x)
    res = Executor(program)(x, keep=True)
    for lt in res.trace.layers:
        codes = torch.cat(ints[lt.name]["codes"])
        acc = torch.cat(ints[lt.name]["acc"])
        assert torch.equal(lt.codes.reshape(codes.shape), codes), lt.name
        assert torch.equal(lt.acc.reshape(acc.shape), acc), lt.name
        if lt.dynamic:
            assert torch.equal(lt.mask, torch.cat(masks[lt.name])), lt.name
    assert torch.equal(res.logits.to(y.dtype), y)


@SETTINGS
@given(case=layer_case())
def test_random_layer_engine_equals_model(case: dict) -> None:
    fm, x = _single_layer(case)
    _assert_parity(fm, x)


def _passes(fm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input codes, and the uniform-8-bit and high-pass-only accumulators, computed here from
    the layer's integers with float64 convolutions (exact on integers)."""
    layer = fm[-1]
    with torch.no_grad(), record_integers(fm) as ints:
        fm(x)
    q = torch.cat(ints[layer.layer_name]["codes"]).double()
    lo_bits = layer.qcfg.lo_bits
    hi = torch.floor(q / 2**lo_bits) * 2**lo_bits
    w, b = layer.w_int.double(), layer.bias_int.double()
    if isinstance(layer, nn.Linear):
        op = lambda a: F.linear(a, w, b)  # noqa: E731
    else:
        op = lambda a: F.conv2d(  # noqa: E731
            a, w, b, layer.stride, layer.padding, layer.dilation, layer.groups
        )
    return q, op(q).to(torch.int64), op(hi).to(torch.int64)


@SETTINGS
@given(case=layer_case(), refine_all=st.booleans())
def test_all_refined_is_uniform_int8_and_none_is_high_pass(case: dict, refine_all: bool) -> None:
    r = 1.0 if refine_all else 0.0
    fm, x = _single_layer(case, bounds=(r, r), enforce_bounds=True, midpoint=False)
    _, full, high = _passes(fm, x)
    res = Executor(lower(fm, tuple(x.shape[1:])))(x, keep=True)
    (lt,) = res.trace.layers
    assert torch.equal(lt.acc.reshape(full.shape), full if refine_all else high)
    assert bool(lt.mask.all()) if refine_all else not bool(lt.mask.any())
    if case["decision"] == "output":
        expect_lo = lt.macs_dense if refine_all else 0
        assert lt.macs_lo.tolist() == [expect_lo] * x.shape[0]
    elif not refine_all:
        assert int(lt.macs_lo.sum()) == 0


class _Block(nn.Module):
    """conv-BN-ReLU, conv-BN, shortcut (identity or 1x1 conv), Add, ReLU, pool, flatten, fc."""

    def __init__(self, c: int, c2: int, stride: int, pool: nn.Module, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c2, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c2, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.short = (
            nn.Identity() if stride == 1 and c == c2 else nn.Conv2d(c, c2, 1, stride=stride)
        )
        self.add = Add()
        self.relu2 = nn.ReLU6()
        self.pool = pool
        self.flatten = nn.Flatten()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.stem_relu = nn.ReLU()
        self.fc = nn.LazyLinear(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_relu(self.stem(x))
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        y = self.relu2(self.add(y, self.short(x)))
        return self.fc(self.flatten(self.pool(y)))


@SETTINGS
@given(
    c=st.integers(1, 6),
    c2=st.integers(1, 6),
    stride=st.integers(1, 2),
    size=st.integers(4, 9),
    pool=st.sampled_from(["gap", "adaptive2", "adaptive3", "avg2", "avg3pad", "max2"]),
    decision=st.sampled_from(["output", "input"]),
    seed=st.integers(0, 2**16),
)
def test_random_residual_block_engine_equals_model(c, c2, stride, size, pool, decision, seed):
    torch.manual_seed(seed)
    pools = {
        "gap": nn.AdaptiveAvgPool2d(1),
        "adaptive2": nn.AdaptiveAvgPool2d(2),
        "adaptive3": nn.AdaptiveAvgPool2d((3, 2)),
        "avg2": nn.AvgPool2d(2),
        "avg3pad": nn.AvgPool2d(3, stride=2, padding=1),
        "max2": nn.MaxPool2d(2),
    }
    model = _Block(c, c2, stride, pools[pool], 5)
    x = torch.randn(6, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LazyLinear
        model(x)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    cfg = QuantConfig(hardware={"rows": 4, "cols": 4}, decision=decision, keep_first_last=True)
    pm = prepare(model.eval(), cfg)
    calibrate(pm, [x])
    fm = convert(pm, strict=True)
    _assert_parity(fm, x[:3])
