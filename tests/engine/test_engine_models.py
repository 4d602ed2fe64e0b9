"""Whole models: engine = frozen model on our CNNs and ResNets, a trained digits CNN with
identical accuracy, clear errors for layers without an integer form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from digits_fixtures import fp32_digits_cnn
from torch import nn

from dynabit.config import QuantConfig
from dynabit.engine import (
    Executor,
    UnsupportedLayerError,
    check_parity,
    evaluate_program,
    lower,
)
from dynabit.models import build_model
from dynabit.quant import calibrate, convert, model_stats, prepare, record_decisions, reset_stats
from dynabit.quant.faithful import record_integers

HW = {"rows": 4, "cols": 8}


def _randomize_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
    return model


def _mismatches(fm: nn.Module, x: torch.Tensor) -> tuple[int, int, torch.Tensor, torch.Tensor]:
    """(code/accumulator mismatches, mask mismatches, engine logits, model logits)."""
    program = lower(fm, tuple(x.shape[1:]))
    with torch.no_grad(), record_integers(fm) as ints, record_decisions(fm) as masks:
        y = fm(x)
    res = Executor(program)(x, keep=True)
    bad_codes = bad_masks = 0
    assert {lt.name for lt in res.trace.layers} == set(ints)
    for lt in res.trace.layers:
        codes, acc = torch.cat(ints[lt.name]["codes"]), torch.cat(ints[lt.name]["acc"])
        bad_codes += int((lt.codes.reshape(codes.shape) != codes).sum())
        bad_codes += int((lt.acc.reshape(acc.shape) != acc).sum())
        if lt.dynamic:
            bad_masks += int((lt.mask != torch.cat(masks[lt.name])).sum())
    return bad_codes, bad_masks, res.logits, y


@pytest.mark.parametrize(
    ("name", "size", "decision", "score"),
    [
        ("small_cnn", 28, "output", "max"),
        ("small_cnn", 12, "input", "mean"),
        ("resnet20", 12, "output", "mean"),
        ("resnet20", 12, "input", "max"),
        ("resnet18", 16, "output", "max"),
    ],
)
def test_models_engine_equals_frozen_model(name, size, decision, score) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(name, 1, 10, size, width=4))
    cfg = QuantConfig(hardware=HW, decision=decision, score=score, enforce_bounds=score == "max")
    pm = prepare(model, cfg)
    x = torch.randn(12, 1, size, size)
    calibrate(pm, [x])
    fm = convert(pm, strict=True)
    bad_codes, bad_masks, logits, y = _mismatches(fm, x)
    assert (bad_codes, bad_masks) == (0, 0)
    assert torch.equal(logits.to(y.dtype), y)
    # the integer-faithful model stays near the float (fake-quantized) one; on these untrained
    # nets a decision flipped by the integer threshold's rounding is the largest difference
    with torch.no_grad():
        y_float = pm.eval()(x)
    assert float((y_float - y).abs().max()) <= 0.25 * float(y_float.abs().max()) + 1e-6


@pytest.mark.parametrize(
    "fields",
    [
        {"decision": "output", "score": "max", "enforce_bounds": True},
        {"decision": "input", "score": "mean"},
        {"hi_bits": 3, "budget": 4.5, "midpoint": True},  # B = 8 split 3 + 5
        {"method": "uniform", "budget": 4},
    ],
)
def test_mobilenet_v2_engine_equals_frozen_model(fields) -> None:
    """Depthwise convs, linear bottlenecks (signed codes) and residual adds, bit-exact."""
    torch.manual_seed(0)
    model = _randomize_bn(build_model("mobilenet_v2", 1, 10, 12, width=8))
    pm = prepare(model, QuantConfig(hardware=HW, **fields))
    x = torch.randn(6, 1, 12, 12)
    calibrate(pm, [x])
    fm = convert(pm, strict=True)
    program = lower(fm, (1, 12, 12))
    assert any(op.attrs.get("groups", 1) > 1 for op in program.ops)  # depthwise reached it
    assert any(op.kind == "add" for op in program.ops)
    bad_codes, bad_masks, logits, y = _mismatches(fm, x)
    assert (bad_codes, bad_masks) == (0, 0)
    assert torch.equal(logits.to(y.dtype), y)


def _digits_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN trained on sklearn's digits: FP32, calibration, a little QAT."""
    model, train, test = fp32_digits_cnn()
    pm = prepare(model, QuantConfig(hardware=HW, budget=5.0))
    calibrate(pm, [train.images[:256]])
    opt = torch.optim.SGD(pm.parameters(), lr=0.01, momentum=0.9)
    pm.train()
    for idx in torch.randperm(len(train)).split(64):
        loss = F.cross_entropy(pm(train.images[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return convert(pm, strict=True), test.images, test.labels


def test_trained_digits_cnn_zero_mismatches_same_accuracy() -> None:
    fm, images, labels = _digits_cnn()
    bad_codes, bad_masks, logits, y = _mismatches(fm, images)
    assert (bad_codes, bad_masks) == (0, 0)
    model_correct = int((y.argmax(1) == labels).sum())
    ev = evaluate_program(lower(fm, (1, 8, 8)), images, labels, batch_size=100)
    assert model_correct > 0.8 * len(labels)  # a real, trained model
    assert ev.correct == model_correct
    report = check_parity(fm, images, labels, batch_size=128)
    assert report.ok and report.samples == len(labels)
    assert report.engine_top1 == report.model_top1 == pytest.approx(100 * model_correct / 360)
    assert torch.equal(ev.predictions, y.argmax(1))
    # the engine's B_avg is the model's own statistic
    reset_stats(fm)
    with torch.no_grad():
        fm(images)
    stats = model_stats(fm)
    assert ev.budget["b_avg_macs"] == pytest.approx(stats.b_avg_macs, abs=1e-12)
    assert ev.budget["b_avg_elements"] == pytest.approx(stats.b_avg_elements, abs=1e-12)


class _WithSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.Sigmoid()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


class _FunctionalAdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 25, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return self.fc(torch.flatten(self.b(y) + y, 1))


class _LoneBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 9, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.bn(self.relu(self.conv(x))), 1))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (_WithSigmoid(), r"unsupported layer 'act' \(Sigmoid\)"),
        (_FunctionalAdd(), r"functional add.*dynabit\.models\.layers\.Add"),
        (_LoneBN(), r"unsupported layer 'bn' \(BatchNorm2d\).*registered right after its conv"),
    ],
)
def test_unsupported_layer_is_named(model: nn.Module, match: str) -> None:
    pm = prepare(model, QuantConfig(hardware=HW))
    calibrate(pm, [torch.randn(4, 1, 5, 5)])
    with pytest.raises(UnsupportedLayerError, match=match):
        convert(pm, strict=True)
    with pytest.warns(UserWarning, match="not integer-faithful"):
        fm = convert(pm)  # still usable, layer by layer
    with pytest.raises(UnsupportedLayerError, match="not converted integer-faithfully"):
        lower(fm, (1, 5, 5))


def test_lower_needs_a_converted_model() -> None:
    pm = prepare(build_model("small_cnn", 1, 10, 8, width=4), QuantConfig(hardware=HW))
    calibrate(pm, [torch.randn(4, 1, 8, 8)])
    with pytest.raises(UnsupportedLayerError, match="convert"):
        lower(pm, (1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match="no quantized layers"):
        lower(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 8, 8))
