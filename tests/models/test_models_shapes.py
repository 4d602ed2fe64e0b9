"""Output shapes, the model registry and cost figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynabit.models import MODEL_NAMES, SmallCNN, build_model, resnet18, resnet20


def count_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of all Conv2d and Linear layers for one input of ``shape``."""
    total = 0

    def hook(m: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            total += out.numel() * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize(
    ("name", "channels", "size"),
    [
        ("small_cnn", 1, 8),
        ("small_cnn", 1, 28),
        ("small_cnn", 3, 32),
        ("resnet20", 1, 28),
        ("resnet20", 3, 32),
        ("resnet18", 1, 28),
        ("resnet18", 3, 32),
    ],
)
def test_output_shapes(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, channels, 7, size, width=8)
    out = model(torch.randn(2, channels, size, size))  # train mode: BN needs a batch > 1
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_resnet18_imagenet_shape() -> None:
    model = build_model("resnet18", 3, 1000, 224).eval()
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.conv1.kernel_size == (7, 7)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_resnet18_stem_follows_image_size() -> None:
    small = build_model("resnet18", 3, 10, 32)
    assert small.maxpool is None and small.conv1.kernel_size == (3, 3)
    assert resnet18(stem="small").conv1.stride == (1, 1)
    with pytest.raises(ValueError, match="stem"):
        resnet18(stem="tiny")  # type: ignore[arg-type]


def test_resnet18_parameter_count() -> None:
    assert sum(p.numel() for p in resnet18().parameters()) == 11_689_512


def test_resnet18_uses_torchvision_names() -> None:
    keys = set(resnet18().state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer4.1.bn2.bias",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys
    assert "layer1.0.downsample.0.weight" not in keys  # identity shortcut there


def test_widths() -> None:
    assert build_model("resnet20", 3, 10, 32).fc.in_features == 64
    assert build_model("resnet20", 3, 10, 32, width=4).fc.in_features == 16
    assert build_model("resnet18", 3, 10, 32).fc.in_features == 512
    assert build_model("small_cnn", 1, 10, 28, width=8).fc.in_features == 32 * 2 * 2
    assert SmallCNN(width=8, head_grid=1).fc.in_features == 32  # global average pool


@pytest.mark.parametrize("size", [8, 28, 32])
def test_small_cnn_head_grid(size: int) -> None:
    model = SmallCNN(3, 5, 4, size, head_grid=2)
    assert model.features(torch.zeros(2, 3, size, size)).shape[-1] >= 2  # no empty pool bins
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 5)


def test_unknown_model_lists_allowed() -> None:
    with pytest.raises(ValueError, match="allowed: small_cnn, resnet20, resnet18"):
        build_model("vgg16", 3, 10, 32)
    assert MODEL_NAMES == ("small_cnn", "resnet20", "resnet18", "mobilenet_v2")


def test_small_cnn_is_cheap() -> None:
    macs = count_macs(SmallCNN(1, 10, 16, 28), (1, 28, 28))
    assert 8e6 < macs < 11e6  # 9.14M: the budget the design assumes
    pools = [m for m in SmallCNN(1, 10, 16, 8).modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 1  # 8x8 -> 4x4, then no further pooling


def test_resnet20_macs() -> None:
    # the usual CIFAR ResNet-20 figure is ~41M MACs (plus our 1x1 shortcuts)
    assert 40e6 < count_macs(resnet20(), (3, 32, 32)) < 42.5e6


def test_small_cnn_learns_digits() -> None:
    """A few full-batch steps on 64 digits fit them: the model trains end to end."""
    from dynabit.data import load_dataset

    torch.manual_seed(0)
    ds = load_dataset("digits", "train", subset=64)
    model = build_model("small_cnn", 1, 10, 8, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(ds.images), ds.labels)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(ds.images).argmax(1) == ds.labels).float().mean().item()
    assert acc > 0.9
