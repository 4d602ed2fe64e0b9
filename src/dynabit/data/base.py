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


class DatasetMismatchError(DatasetError):
    """A dataset's images or classes do not fit the model (or integer program) fed with it."""


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

    def describe(self) -> str:
        """``'digits' (test, 360 samples)``: for messages."""
        n = len(self)
        return f"{self.name!r} ({self.split}, {n} sample{'' if n == 1 else 's'})"

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
    if raw.shape[0] == 0:
        raise DatasetError(
            f"dataset {name!r}: the {split} split holds no samples; at least 1 is needed"
        )
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


def _shape_text(channels: int, size: int) -> str:
    return f"{channels}x{size}x{size}"


def check_fits(dataset: ImageDataset, expected: DatasetInfo, model: str) -> None:
    """Refuse a dataset whose images or classes do not fit a model.

    ``expected`` is what the model was built for; ``model`` describes it in the message (e.g.
    ``"the model of run 'runs/a' (trained on 'digits')"``). The images must have exactly the
    expected channels and size (a model with adaptive pooling would otherwise run silently on
    the wrong resolution); the dataset may have fewer classes than the model's outputs, not
    more.

    Raises:
        DatasetMismatchError: naming the dataset's image shape and classes and the model's.
    """
    got = dataset.info
    problems = []
    if (got.in_channels, got.image_size) != (expected.in_channels, expected.image_size):
        problems.append("image shape")
    if got.num_classes > expected.num_classes:
        problems.append("classes")
    if not problems:
        return
    raise DatasetMismatchError(
        f"dataset {dataset.describe()} does not fit {model}: the dataset has "
        f"{_shape_text(got.in_channels, got.image_size)} images (CxHxW) and {got.num_classes} "
        f"classes; the model expects {_shape_text(expected.in_channels, expected.image_size)} "
        f"images and at most {expected.num_classes} classes (mismatch: {' and '.join(problems)})"
    )


def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` and the count when ``x`` holds NaN or Inf."""
    if not x.is_floating_point():
        return
    bad = ~torch.isfinite(x)
    n_bad = int(bad.sum())
    if not n_bad:
        return
    where = ""
    if x.dim() > 1:
        samples = bad.reshape(x.shape[0], -1).any(dim=1).nonzero().flatten()
        where = f" in {samples.numel()} sample(s), the first at index {int(samples[0])}"
    raise ValueError(
        f"{what}: the inputs hold {n_bad} non-finite value(s) (NaN/Inf){where}; "
        "only finite inputs can be evaluated"
    )
