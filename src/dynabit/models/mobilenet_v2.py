"""A MobileNetV2-style depthwise-separable network sized for small images (28 x 28, 32 x 32).

Inverted residual blocks (1x1 expand with ReLU6, 3x3 depthwise with ReLU6, 1x1 linear
bottleneck projection without activation, identity skip where shape allows), a 3x3 stem at
stride 1 and a 1x1 head, then global average pooling and a linear classifier. The channel plan
is MobileNetV2's, shortened for 28 x 28 inputs (three resolutions: 28, 14, 7); a width
multiplier scales every layer. Built only from modules, BN registered right after its conv, so
``dynabit.quant.prepare`` folds it and the integer engine runs it.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from dynabit.models.layers import Add, global_avg_pool, init_weights

# (expand ratio t, out channels c, repeats n, first stride s) per stage, at width 1.0.
SMALL_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 3, 1),
    (6, 96, 2, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 320
CHANNEL_DIVISOR = 8  # channel counts are rounded to multiples of this, as in MobileNetV2


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, never below 90 % of it."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """``conv -> bn [-> relu6]`` with "same" padding; children named conv, bn, act."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(
            in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
        ),
        bn=nn.BatchNorm2d(out_ch),
    )
    if act:
        layers["act"] = nn.ReLU6()
    return nn.Sequential(layers)


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection, identity skip."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        mid = in_ch * expand
        self.expand = conv_bn_act(in_ch, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn_act(mid, mid, 3, stride, groups=mid)
        self.project = conv_bn_act(mid, out_ch, 1, act=False)  # linear bottleneck
        self.add = Add() if stride == 1 and in_ch == out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return self.add(y, x) if self.add is not None else y


class MobileNetV2(nn.Module):
    """MobileNetV2-style network: stem, inverted residual stages, head, pool, linear."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width_mult: float = 1.0,
        stages: tuple[tuple[int, int, int, int], ...] = SMALL_STAGES,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        self.width_mult = width_mult
        stem = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = conv_bn_act(in_channels, stem, 3)
        blocks: list[nn.Module] = []
        cin = stem
        for t, c, n, s in stages:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        head = make_divisible(HEAD_CHANNELS * max(1.0, width_mult))
        self.head = conv_bn_act(cin, head, 1)
        self.pool, self.flatten = global_avg_pool()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


def mobilenet_v2(
    in_channels: int = 1, num_classes: int = 10, width_mult: float = 1.0
) -> MobileNetV2:
    """A freshly initialised small MobileNetV2 (about 0.3 M parameters at width 1.0)."""
    return MobileNetV2(in_channels, num_classes, width_mult)
