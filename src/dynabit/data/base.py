"""The in-memory image dataset every loader returns, and the error they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

Split = Literal["train", "test"]


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message says where we looked and how to get it."""


class DatasetInfo(NamedTuple):
    """What a model needs to know before the data is loaded."""

    in_channels: int
    image_size: int
    num_classes: int


class NormStats(NamedTuple):
    """Fixed per-channel statistics of pixels scaled to [0, 1] (one entry per channel)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def _channel_view(values: tuple[float, ...], like: Tensor) -> Tensor:
    """Shape per-channel constants to broadcast over ``[..., C, H, W]``."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def normalize(pixels: Tensor, stats: NormStats) -> Tensor:
    """Map pixels in [0, 1] (``[..., C, H, W]``) to zero mean / unit std with fixed ``stats``."""
    return (pixels - _channel_view(stats.mean, pixels)) / _channel_view(stats.std, pixels)


def denormalize(images: Tensor, stats: NormStats) -> Tensor:
    """Inverse of :func:`normalize`: back to pixels in [0, 1] (not clamped)."""
    return images * _channel_view(stats.std, images) + _channel_view(stats.mean, images)


@dataclass(eq=False)
class ImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """A whole split held in memory, usable directly as a ``torch.utils.data.Dataset``.

    ``images`` are float32 ``[N, C, H, W]`` normalized with ``stats``; ``raw`` keeps the
    original integer pixels (``[N, C, H, W]``, 0..``raw_max``) so reports can draw the inputs.
    """

    images: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)
    num_classes: int
    name: str
    split: str
    stats: NormStats
    raw: Tensor = field(repr=False)
    raw_max: int = 255

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if (
            self.images.dim() != 4
            or self.labels.shape != (n,)
            or self.raw.shape != self.images.shape
        ):
            raise ValueError(
                f"inconsistent shapes: images {tuple(self.images.shape)}, "
                f"labels {tuple(self.labels.shape)}, raw {tuple(self.raw.shape)}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        """Image height (all our datasets are square)."""
        return self.images.shape[2]

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.in_channels, self.image_size, self.num_classes)

    def pixels(self) -> Tensor:
        """The unnormalized images as float32 in [0, 1]."""
        return self.raw.float() / self.raw_max

    def denormalize(self, images: Tensor) -> Tensor:
        """Undo this dataset's normalization on any ``[..., C, H, W]`` batch (to [0, 1])."""
        return denormalize(images, self.stats)


def build_image_dataset(
    raw: Tensor,
    labels: Tensor,
    *,
    raw_max: int,
    stats: NormStats,
    num_classes: int,
    name: str,
    split: str,
    subset: int | None,
) -> ImageDataset:
    """Take the first ``subset`` samples, then normalize (so a subset never pays for the rest)."""
    if subset is not None:
        if subset < 1:
            raise ValueError(f"subset must be >= 1, got {subset}")
        # A subset larger than the split is the whole split, as with slicing; clone so the
        # rest of the split's memory is released.
        raw, labels = raw[:subset].clone(), labels[:subset].clone()
    raw = raw.contiguous()
    images = normalize(raw.float() / raw_max, stats)
    return ImageDataset(
        images=images,
        labels=labels.to(torch.int64).contiguous(),
        num_classes=num_classes,
        name=name,
        split=split,
        stats=stats,
        raw=raw,
        raw_max=raw_max,
    )
