"""Dataset names, their fixed normalization constants, and the one loading entry point.

Normalization: pixels are scaled to [0, 1] (uint8 / 255; digits / 16), then standardized with
fixed per-dataset constants, the same for train and test:

=============  ==========================  ==========================  ======================
name           mean                        std                         source of the constants
=============  ==========================  ==========================  ======================
fashion-mnist  0.2860                      0.3530                      train split
mnist          0.1307                      0.3081                      train split
idx            0.5                         0.5                         unknown content: [-1, 1]
digits         0.3054                      0.3755                      our train split
cifar10        0.4914, 0.4822, 0.4465      0.2470, 0.2435, 0.2616      train split, per channel
photos         127/255 (each channel)      128/255 (each channel)      EfficientNet-Lite input
=============  ==========================  ==========================  ======================

``photos`` (:mod:`dynabit.data.photos`) has no labels: ``train`` is its calibration split,
``test`` its evaluation split, each image is one 224x224 crop, and ``labels`` hold the index of
the crop's source photo (the reference of that data set is the FP32 model's output, not a
class). ``subset`` keeps the crops of the first ``ceil(subset / 10)`` photos, then the first
``subset`` crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dynabit.data.base import DatasetError, DatasetInfo, ImageDataset, NormStats, Split
from dynabit.data.base import build_image_dataset as _build
from dynabit.data.cifar import load_cifar10_split
from dynabit.data.digits import DIGITS_RAW_MAX, load_digits_split
from dynabit.data.idx import find_idx_file, load_idx_split, read_idx, read_idx_header, require_dir
from dynabit.data.imagenet_crops import CROP_SIZE, TEN_CROP

DATASET_NAMES: tuple[str, ...] = ("fashion-mnist", "mnist", "idx", "digits", "cifar10", "photos")
SPLITS: tuple[Split, ...] = ("train", "test")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DIR = Path("/usr/share/datasets/mnist")

NORM_STATS: dict[str, NormStats] = {
    "fashion-mnist": NormStats((0.2860,), (0.3530,)),
    "mnist": NormStats((0.1307,), (0.3081,)),
    "idx": NormStats((0.5,), (0.5,)),
    "digits": NormStats((0.3054,), (0.3755,)),
    "cifar10": NormStats((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "photos": NormStats((127 / 255,) * 3, (128 / 255,) * 3),
}

# Known shapes; "idx" is read from the files' headers instead.
_KNOWN_INFO: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(1, 28, 10),
    "mnist": DatasetInfo(1, 28, 10),
    "digits": DatasetInfo(1, 8, 10),
    "cifar10": DatasetInfo(3, 32, 10),
    "photos": DatasetInfo(3, CROP_SIZE, 1000),  # ImageNet classes: what the pretrained nets output
}

_IDX_FILES_HELP = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte, each raw or .gz"
)
_HOW_TO_GET: dict[str, str] = {
    "fashion-mnist": (
        "How to get it: `apt-get install dataset-fashion-mnist` installs the IDX files under "
        f"{FASHION_MNIST_DIR}/, or pass data_dir=<a directory holding {_IDX_FILES_HELP}>."
    ),
    "mnist": (
        f"How to get it: put the MNIST IDX files ({_IDX_FILES_HELP}) in {MNIST_DIR}/ "
        "or pass data_dir=<their directory>."
    ),
    "idx": f"How to get it: pass data_dir=<a directory holding {_IDX_FILES_HELP}>.",
}
_DISPLAY = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "idx": "IDX dataset"}
_DEFAULT_DIRS = {"fashion-mnist": FASHION_MNIST_DIR, "mnist": MNIST_DIR}
# MNIST-family IDX datasets have 10 classes; a generic IDX dataset may have more.
_MIN_IDX_CLASSES = 10


def canonical_name(name: str) -> str:
    """Normalize spelling (case, ``_`` for ``-``) and check ``name`` is a known dataset."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASET_NAMES)}")
    return key


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def _idx_dir(name: str, data_dir: str | Path | None) -> Path:
    """Where an IDX-format dataset lives: ``data_dir``, else its default directory."""
    if data_dir is not None:
        return Path(data_dir)
    if name in _DEFAULT_DIRS:
        return _DEFAULT_DIRS[name]
    raise DatasetError(
        f"dataset 'idx' has no default location: data_dir is required. {_HOW_TO_GET['idx']}"
    )


# The most classes an ``idx`` dataset may have (labels 0 .. this - 1): a classifier over more
# is no image data set, and a corrupt label (2e9) would otherwise size a 2 TB weight matrix.
MAX_IDX_CLASSES = 100_000


def _idx_num_classes(name: str, d: Path) -> int:
    """10 for the MNIST family; for ``idx``, enough for every label in the label files found."""
    if name != "idx":
        return _MIN_IDX_CLASSES
    top = -1
    for split in SPLITS:
        path = find_idx_file(d, split, "labels")
        if path is not None:
            labels = read_idx(path)
            high = int(labels.max()) if labels.size else -1
            if high >= MAX_IDX_CLASSES:
                raise DatasetError(
                    f"'{path}': label {high} is out of range; labels must lie in "
                    f"[0, {MAX_IDX_CLASSES - 1}] (a corrupt label file?)"
                )
            top = max(top, high)
    return max(_MIN_IDX_CLASSES, top + 1)


def dataset_info(name: str, data_dir: str | Path | None = None) -> DatasetInfo:
    """``(in_channels, image_size, num_classes)`` without loading the images.

    ``data_dir`` is only read for ``idx`` (its image header and label files).
    """
    key = canonical_name(name)
    if key in _KNOWN_INFO:
        return _KNOWN_INFO[key]
    d = _idx_dir(key, data_dir)
    require_dir(d, _DISPLAY[key], _HOW_TO_GET[key])
    images = find_idx_file(d, "test", "images") or find_idx_file(d, "train", "images")
    if images is None:
        raise DatasetError(f"IDX dataset: no image files in '{d}'. {_HOW_TO_GET[key]}")
    _, dims = read_idx_header(images)
    if len(dims) != 3:
        raise DatasetError(f"{images}: want images [N, H, W], header says {dims}")
    return DatasetInfo(1, dims[1], _idx_num_classes(key, d))


def load_dataset(
    name: str,
    split: Split,
    data_dir: str | Path | None = None,
    subset: int | None = None,
) -> ImageDataset:
    """Load one split of a dataset into memory, normalized (see the module docstring).

    Args:
        name: one of :data:`DATASET_NAMES`.
        split: ``"train"`` or ``"test"``.
        data_dir: where the files are; default ``/usr/share/datasets/<name>/`` for
            ``fashion-mnist``/``mnist``; required for ``idx`` and ``cifar10``; unused for
            ``digits`` (bundled with scikit-learn) and ``photos`` (installed packages).
        subset: keep only the first ``subset`` samples (>= 1; larger means all).

    Raises:
        ValueError: unknown name or split, or ``subset < 1``.
        DatasetError: missing or malformed files (the message says where and how to get them),
            or a split with no samples.
    """
    key = canonical_name(name)
    _check_split(split)
    if subset is not None and subset < 1:
        raise ValueError(f"subset must be >= 1, got {subset}")
    raw_max = 255
    if key == "digits":
        images, labels = load_digits_split(split)
        images, raw_max, num_classes = images[:, None], DIGITS_RAW_MAX, 10
    elif key == "cifar10":
        images, labels = load_cifar10_split(data_dir, split, limit=subset)
        num_classes = 10
    elif key == "photos":
        from dynabit.data.photos import load_photos

        photos = None if subset is None else -(-subset // len(TEN_CROP))
        crops = load_photos(split, max_photos=photos)
        images, labels = crops.raw.numpy(), crops.photo.numpy()
        num_classes = _KNOWN_INFO[key].num_classes
    else:
        d = _idx_dir(key, data_dir)
        images, labels = load_idx_split(d, split, what=_DISPLAY[key], how_to_get=_HOW_TO_GET[key])
        images = images[:, None]
        num_classes = _idx_num_classes(key, d)
        if labels.max() >= num_classes:
            raise DatasetError(
                f"{_DISPLAY[key]} in '{d}': label {int(labels.max())} >= {num_classes} classes"
            )
    return _build(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels),
        raw_max=raw_max,
        stats=NORM_STATS[key],
        num_classes=num_classes,
        name=key,
        split=split,
        subset=subset,
    )
