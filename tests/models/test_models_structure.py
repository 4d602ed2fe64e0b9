"""Structure the quantizer relies on: BN right after its conv, module-only forward passes."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from dynabit.models import Add, build_model, resnet18, resnet20

MODELS = {
    "small_cnn": lambda: build_model("small_cnn", 1, 10, 28),
    "small_cnn_8px": lambda: build_model("small_cnn", 1, 10, 8),
    "resnet20": lambda: resnet20(3, 10),
    "resnet18": lambda: resnet18(3, 10, width=8, stem="small"),
    "resnet18_imagenet": lambda: resnet18(3, 10, width=8),
}


@pytest.mark.parametrize("name", MODELS)
def test_every_bn_directly_follows_its_conv(name: str) -> None:
    model = MODELS[name]()
    n_bn = 0
    for parent in model.modules():
        children = list(parent.children())
        for prev, child in zip([None, *children], children, strict=False):
            if isinstance(child, nn.BatchNorm2d):
                n_bn += 1
                assert isinstance(prev, nn.Conv2d), f"{type(parent).__name__}: BN after {prev}"
                assert prev.out_channels == child.num_features
                assert prev.bias is None
    n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert n_bn == n_conv > 0  # and every conv has its BN


@pytest.mark.parametrize(("name", "adds"), [("resnet20", 9), ("resnet18", 8), ("small_cnn", 0)])
def test_add_modules(name: str, adds: int) -> None:
    model = MODELS[name]()
    assert sum(isinstance(m, Add) for m in model.modules()) == adds


@pytest.mark.parametrize("name", MODELS)
def test_each_stateless_module_runs_once_per_forward(name: str) -> None:
    """ReLU/Add/pool instances are not shared, so each can carry its own quantizer."""
    model = MODELS[name]()
    calls: Counter[str] = Counter()
    kinds = (nn.ReLU, Add, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)
    for mod_name, m in model.named_modules():
        if isinstance(m, kinds):
            m.register_forward_hook(lambda *_a, n=mod_name: calls.update([n]))
    size = 8 if name == "small_cnn_8px" else 32
    channels = 1 if name.startswith("small_cnn") else 3
    with torch.no_grad():
        model.eval()(torch.zeros(1, channels, size, size))
    expected = {n for n, m in model.named_modules() if isinstance(m, kinds)}
    assert set(calls) == expected and set(calls.values()) == {1}


def test_add_is_plain_sum() -> None:
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(Add()(a, b), a + b)


def test_kaiming_init() -> None:
    torch.manual_seed(0)
    conv = resnet18().layer3[0].conv1  # 128 -> 256, 3x3
    want = (2 / (conv.out_channels * 9)) ** 0.5  # fan-out mode
    assert abs(conv.weight.std().item() - want) / want < 0.05
