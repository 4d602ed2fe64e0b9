"""Layer geometry: the named ResNet-18 table, hooks on a real model, fitted groups."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.shapes import (
    LayerShape,
    fitted_group,
    layer_shapes_from_model,
    load_shapes,
    network_shapes,
    save_shapes,
)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class TorchResNet18(nn.Module):
    """torchvision's layer structure and names, written out for the test."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = 64, []
        for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            stages.append(nn.Sequential(Block(cin, width, stride), Block(width, width, 1)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_resnet18_table():
    shapes = network_shapes("resnet18")
    assert len(shapes) == 21
    by = {s.name: s for s in shapes}
    assert by["conv1"].out_hw == (112, 112) and by["conv1"].window == 147
    assert by["layer1.0.conv1"].in_hw == (56, 56)
    assert by["layer2.0.conv1"].out_hw == (28, 28) and by["layer2.0.downsample.0"].window == 64
    assert by["layer3.1.conv2"].out_hw == (14, 14)
    assert by["layer4.1.conv2"].out_hw == (7, 7) and by["layer4.1.conv2"].window == 4608
    assert by["fc"].kind == "linear" and by["fc"].pixels == 1
    # the well-known ResNet-18 count: 1.814 G multiply-accumulates at 224x224
    assert sum(s.macs for s in shapes) == 1_814_073_344
    assert [s.dynamic for s in shapes] == [False] + [True] * 19 + [False]


@pytest.mark.parametrize("size", [64, 96])
def test_hooks_on_a_torch_resnet18_agree_with_the_table(size):
    hw = HardwareConfig(rows=16, cols=16)
    model = TorchResNet18(classes=10)
    got = layer_shapes_from_model(model, torch.zeros(2, 3, size, size), hw)
    want = network_shapes("resnet18", image_size=size, num_classes=10, hw=hw)
    assert [s.name for s in got] == [s.name for s in want]
    for g, w in zip(got, want, strict=True):
        assert g == w, g.name


def test_hooks_read_qcfg_and_treat_linear_as_1x1():
    class QConv(nn.Conv2d):
        pass

    conv = QConv(3, 8, 3, padding=1)
    conv.qcfg = SimpleNamespace(
        group=(2, 2),
        block_size=4,
        decision="input",
        dynamic=True,
        bits=6,
        hi_bits=3,
        static_bits=8,
    )
    model = nn.Sequential(conv, nn.Flatten(1), nn.Linear(8 * 5 * 5, 7))
    a, b = layer_shapes_from_model(model, torch.zeros(1, 3, 5, 5), keep_first_last=False)
    assert (a.group, a.block_size, a.decision, a.bits, a.hi_bits) == ((2, 2), 4, "input", 6, 3)
    assert b.kind == "linear" and b.window == 200 and b.out_hw == (1, 1) and b.dynamic
    seq = nn.Sequential(nn.Linear(6, 4))
    (c,) = layer_shapes_from_model(seq, torch.zeros(2, 5, 6), keep_first_last=False)
    assert c.in_hw == (1, 5) and c.pixels == 5


def test_shapes_round_trip(tmp_path):
    shapes = network_shapes("resnet20", group="fit")
    save_shapes(shapes, tmp_path / "s.json")
    assert load_shapes(tmp_path / "s.json") == shapes


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="groups"):
        LayerShape("x", "conv", 6, 4, (4, 4), (4, 4), groups=4)
    with pytest.raises(ValueError, match="group"):
        LayerShape("x", "conv", 4, 4, (4, 4), (4, 4), group=(0, 2))


def test_fitted_group_examples():
    assert fitted_group((56, 56), 32) == (4, 8)
    assert fitted_group((14, 14), 32) == (2, 14)
    assert fitted_group((7, 7), 32) == (4, 7)
    assert fitted_group((1, 1), 32) == (1, 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 64))
def test_fitted_group_is_optimal(h, w, edge):
    gh, gw = fitted_group((h, w), edge)
    assert gh * gw <= edge
    best = min(-(-h // a) * -(-w // b) for a in range(1, edge + 1) for b in range(1, edge // a + 1))
    assert -(-h // gh) * -(-w // gw) == best
