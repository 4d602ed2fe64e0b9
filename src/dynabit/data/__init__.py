"""Datasets, loaded whole into memory as normalized ``[N, C, H, W]`` tensors.

``load_dataset(name, split, data_dir=None, subset=None)`` is the entry point; names:
``fashion-mnist``, ``mnist``, ``idx`` (any MNIST-style IDX directory), ``digits`` (scikit-learn,
bundled), ``cifar10`` (python pickle version) and ``photos`` (real photographs that installed
packages ship, as ImageNet crops: :mod:`dynabit.data.photos`). Nothing is downloaded.
"""

from dynabit.data.base import (
    DatasetError,
    DatasetInfo,
    DatasetMismatchError,
    ImageDataset,
    NormStats,
    Split,
    check_finite,
    check_fits,
    denormalize,
    normalize,
)
from dynabit.data.idx import read_idx, read_idx_header
from dynabit.data.photos import PhotoCrops, load_photos
from dynabit.data.registry import (
    DATASET_NAMES,
    FASHION_MNIST_DIR,
    MNIST_DIR,
    NORM_STATS,
    dataset_info,
    load_dataset,
)

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_DIR",
    "MNIST_DIR",
    "NORM_STATS",
    "DatasetError",
    "DatasetInfo",
    "DatasetMismatchError",
    "ImageDataset",
    "NormStats",
    "PhotoCrops",
    "Split",
    "check_finite",
    "check_fits",
    "dataset_info",
    "denormalize",
    "load_dataset",
    "load_photos",
    "normalize",
    "read_idx",
    "read_idx_header",
]
