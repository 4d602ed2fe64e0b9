"""Property tests over configs: any input validates or names the problem; any valid layer
config runs on any map size with its invariants (finite output, bounds honoured when enforced).
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dynabit.config import ConfigError, HardwareConfig, QuantConfig, validate
from dynabit.config.run import validate_run
from dynabit.quant import calibrate, model_stats, prepare

torch.set_num_threads(1)

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-2, 20), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _mapping(fields: list[str]) -> st.SearchStrategy[dict]:
    return st.dictionaries(st.sampled_from([*fields, "no_such_field"]), VALUES, max_size=5)


@settings(max_examples=300, deadline=None)
@given(data=_mapping(list(QuantConfig.model_fields)))
def test_any_quant_config_validates_or_raises_config_error(data: dict) -> None:
    try:
        cfg = validate(QuantConfig, data, "fuzz.yaml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml")
        return
    layer = cfg.for_layer("features.conv")  # a valid config resolves for any layer
    assert 1 <= layer.hi_bits < layer.bits and layer.hi_bits <= layer.budget <= layer.bits


@settings(max_examples=200, deadline=None)
@given(data=_mapping(list(HardwareConfig.model_fields)))
def test_any_hardware_config_validates_or_raises_config_error(data: dict) -> None:
    try:
        hw = validate(HardwareConfig, data, "hw.yaml")
    except ConfigError as e:
        assert str(e).startswith("hw.yaml")
        return
    assert hw.rows >= 1 and hw.cols >= 1


@settings(max_examples=200, deadline=None)
@given(
    section=st.sampled_from(["train", "quant", "pretrain", "bogus"]),
    data=_mapping(["epochs", "batch_size", "lr", "dataset", "model", "budget", "seed"]),
)
def test_any_run_config_validates_or_raises_config_error(section: str, data: dict) -> None:
    try:
        validate_run({section: data}, "run.yaml")
    except ConfigError as e:
        assert "run.yaml" in str(e)


@st.composite
def layer_case(draw: st.DrawFn) -> dict:
    bits = draw(st.integers(3, 8))
    hi = draw(st.integers(1, bits - 1))
    r_lo = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5]))
    r_hi = draw(st.sampled_from([r for r in (0.25, 0.5, 0.75, 1.0) if r >= r_lo]))
    return {
        "cfg": QuantConfig(
            bits=bits,
            hi_bits=hi,
            budget=hi + (bits - hi) * (r_lo + r_hi) / 2,
            group=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
            block_size=draw(st.integers(1, 8)),
            score=draw(st.sampled_from(["max", "mean"])),
            decision=draw(st.sampled_from(["output", "input"])),
            bounds=(r_lo, r_hi),
            enforce_bounds=draw(st.booleans()),
            midpoint=draw(st.booleans()),
            scale_fit=draw(st.sampled_from(["full", "dual"])),
            keep_first_last=False,
        ),
        "cin": draw(st.integers(1, 6)),
        "cout": draw(st.integers(1, 10)),
        "size": draw(st.integers(1, 9)),  # maps smaller than a group included
        "batch": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=40, deadline=None)
@given(case=layer_case())
def test_random_layer_configs_keep_their_invariants(case: dict) -> None:
    torch.manual_seed(case["seed"])
    cfg = case["cfg"]
    conv = nn.Conv2d(case["cin"], case["cout"], 3, padding=1)
    model = prepare(nn.Sequential(nn.ReLU(), conv), cfg)
    x = torch.randn(case["batch"], case["cin"], case["size"], case["size"])
    calibrate(model, [x])
    layer = model[1]
    layer.record_masks(rec := [])
    with torch.no_grad():
        y = model.eval()(x)
    layer.record_masks(None)
    assert y.shape == (case["batch"], case["cout"], case["size"], case["size"])
    assert bool(torch.isfinite(y).all())
    stats = model_stats(model)
    assert cfg.hi_bits <= stats.b_avg_macs <= cfg.bits + 1e-9
    if cfg.enforce_bounds:
        gh, gw = cfg.group
        groups = math.ceil(case["size"] / gh) * math.ceil(case["size"] / gw)
        k_hi = math.floor(cfg.bounds[1] * groups + 1e-9)
        k_lo = min(math.ceil(cfg.bounds[0] * groups - 1e-9), k_hi)
        per_block = rec[0].flatten(2).sum(-1)  # (N, blocks): refined groups of each block
        assert bool((per_block >= k_lo).all()) and bool((per_block <= k_hi).all())
