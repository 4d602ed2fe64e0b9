"""Building blocks shared by our models.

Everything a forward pass does is a module call (no functional ReLU, add or pooling), so later
stages can find and swap any step by module swapping, without graph tracing.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn


class Add(nn.Module):
    """Elementwise ``a + b`` as a module: the residual join that quantization can replace."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class ConvBNReLU(nn.Sequential):
    """``conv -> bn [-> relu]`` with a bias-free "same" conv; children named conv, bn, relu.

    The BN is registered right after its conv, which is what the quantizer's BN folding expects.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        relu: bool = True,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                bias=False,  # the BN's shift makes a conv bias redundant
            ),
            bn=nn.BatchNorm2d(out_channels),
        )
        if relu:
            layers["relu"] = nn.ReLU()
        super().__init__(layers)


def global_avg_pool() -> tuple[nn.Module, nn.Module]:
    """``(AdaptiveAvgPool2d(1), Flatten(1))``: any spatial size to ``[N, C]``."""
    return nn.AdaptiveAvgPool2d(1), nn.Flatten(1)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan-out, ReLU), BN as identity, small-normal linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            # Small logits at start: a Kaiming-scaled classifier only adds noise to the loss.
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
