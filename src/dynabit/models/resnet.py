"""ResNets without torchvision: CIFAR-style ResNet-20 and ImageNet-style ResNet-18.

Parameter names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``, ...), so its state dicts load into ``resnet18``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from dynabit.models.layers import Add, global_avg_pool, init_weights

Stem = Literal["imagenet", "small"]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free 3x3 "same" convolution (BN follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs plus a shortcut, joined by :class:`Add`, then ReLU.

    The shortcut is the identity, or a 1x1 conv + BN ("option B") when the stride or the
    channel count changes. Each ReLU is its own module so each can get its own quantizer.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(self.add(y, shortcut))


class ResNet(nn.Module):
    """Stem, stages of :class:`BasicBlock` (stride 2 entering each stage after the first),
    global average pool and a linear classifier.

    ``stem="imagenet"``: 7x7 stride-2 conv + BN + ReLU + 3x3 stride-2 max pool (224x224 inputs).
    ``stem="small"``: 3x3 stride-1 conv + BN + ReLU, no pool (8..64 pixel inputs).
    """

    def __init__(
        self,
        stage_widths: Sequence[int],
        blocks_per_stage: Sequence[int],
        in_channels: int = 3,
        num_classes: int = 10,
        stem: Stem = "small",
    ) -> None:
        super().__init__()
        if len(stage_widths) != len(blocks_per_stage) or not stage_widths:
            raise ValueError("stage_widths and blocks_per_stage must be non-empty, same length")
        if min(*stage_widths, *blocks_per_stage, in_channels, num_classes) < 1:
            raise ValueError("widths, block counts, in_channels and num_classes must be >= 1")
        if stem not in ("imagenet", "small"):
            raise ValueError(f"unknown stem {stem!r}; allowed: imagenet, small")
        first = stage_widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, first, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_channels, first)
        self.bn1 = nn.BatchNorm2d(first)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else None
        channels = first
        # Attributes layer1, layer2, ... as in torchvision.
        self.stage_names: list[str] = []
        for i, (width, blocks) in enumerate(zip(stage_widths, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            stage = nn.Sequential(
                *(
                    BasicBlock(channels if b == 0 else width, width, stride if b == 0 else 1)
                    for b in range(blocks)
                )
            )
            channels = width
            name = f"layer{i + 1}"
            self.add_module(name, stage)
            self.stage_names.append(name)
        self.avgpool, self.flatten = global_avg_pool()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(self.flatten(self.avgpool(x)))


def resnet20(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> ResNet:
    """CIFAR ResNet-20: 3x3 stem, 3 stages of 3 blocks (w, 2w, 4w channels); any input >= 8 px.

    Uses 1x1 conv shortcuts (option B) where the original paper's CIFAR net pads with zeros.
    """
    return ResNet((width, 2 * width, 4 * width), (3, 3, 3), in_channels, num_classes, "small")


def resnet18(
    in_channels: int = 3, num_classes: int = 1000, width: int = 64, stem: Stem = "imagenet"
) -> ResNet:
    """ResNet-18: blocks [2, 2, 2, 2] with w, 2w, 4w, 8w channels (11.69M params at defaults)."""
    widths = (width, 2 * width, 4 * width, 8 * width)
    return ResNet(widths, (2, 2, 2, 2), in_channels, num_classes, stem)
