"""Build a model by name, sized for a dataset (see ``dynabit.data.dataset_info``)."""

from __future__ import annotations

from torch import nn

from dynabit.models.mobilenet_v2 import STEM_CHANNELS, MobileNetV2
from dynabit.models.resnet import resnet18, resnet20
from dynabit.models.small_cnn import SmallCNN

MODEL_NAMES: tuple[str, ...] = ("small_cnn", "resnet20", "resnet18", "mobilenet_v2")
DEFAULT_WIDTHS: dict[str, int] = {
    "small_cnn": 16,
    "resnet20": 16,
    "resnet18": 64,
    "mobilenet_v2": STEM_CHANNELS,  # width / 32 is the width multiplier
}
# Below this input size ResNet-18's 7x7/stride-2 stem and max pool throw away too much.
RESNET18_IMAGENET_STEM_MIN_SIZE = 64


def build_model(
    name: str, in_channels: int, num_classes: int, image_size: int, width: int | None = None
) -> nn.Module:
    """A freshly initialised ``small_cnn``, ``resnet20``, ``resnet18`` or ``mobilenet_v2``.

    ``width`` defaults to :data:`DEFAULT_WIDTHS`; ``resnet18`` uses the ImageNet stem for
    ``image_size >= 64`` and the small 3x3 stem otherwise; for ``mobilenet_v2`` it is the
    stem's channels, and ``width / 32`` the width multiplier of every layer.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    w = DEFAULT_WIDTHS[name] if width is None else width
    if name == "small_cnn":
        return SmallCNN(in_channels, num_classes, w, image_size)
    if name == "resnet20":
        return resnet20(in_channels, num_classes, w)
    if name == "mobilenet_v2":
        return MobileNetV2(in_channels, num_classes, width_mult=w / STEM_CHANNELS)
    stem = "imagenet" if image_size >= RESNET18_IMAGENET_STEM_MIN_SIZE else "small"
    return resnet18(in_channels, num_classes, w, stem)
