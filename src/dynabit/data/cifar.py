"""CIFAR-10 in its "python version" pickle format, from a directory the user gives.

The directory holds ``data_batch_1`` .. ``data_batch_5`` (train) and ``test_batch`` (test), each
a pickled dict with ``data`` (uint8 ``[10000, 3072]``, channel-major 32x32) and ``labels``.
Pickles can run code when loaded, so only the numpy classes an array needs are allowed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dynabit.data.base import DatasetError, Split

CIFAR10_HOW_TO_GET = (
    "How to get it: download and unpack the CIFAR-10 python version (cifar-10-python.tar.gz "
    "from https://www.cs.toronto.edu/~kriz/cifar.html) and pass data_dir=<the directory "
    "holding data_batch_1..data_batch_5 and test_batch> (its parent holding "
    "'cifar-10-batches-py' also works)."
)
CIFAR10_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_SIDE = 32

# (module, name) pairs a pickled numpy array may reference, across numpy 1.x and 2.x.
_ALLOWED_GLOBALS = {
    (mod, name)
    for core in ("numpy.core", "numpy._core")
    for mod, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except the numpy array machinery (and a bytes helper)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            # numpy 2 renamed numpy.core; importing the old name only adds a warning.
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 ``[N, 3, 32, 32]``, int64 ``[N]``)."""
    try:
        with open(path, "rb") as f:
            # latin1: the original batches were written by Python 2 (byte strings and arrays).
            batch = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DatasetError(f"{path}: cannot read CIFAR-10 batch ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: want a pickled dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{path}: missing 'data' or 'labels' (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE * _SIDE:
        raise DatasetError(f"{path}: want uint8 data [N, 3072], got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{path}: want {data.shape[0]} integer labels, got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, _SIDE, _SIDE), labels.astype(np.int64)


def resolve_cifar10_dir(data_dir: str | Path | None) -> Path:
    """The batches directory: ``data_dir`` itself or its ``cifar-10-batches-py`` child."""
    if data_dir is None:
        raise DatasetError(
            f"CIFAR-10 has no default location: data_dir is required. {CIFAR10_HOW_TO_GET}"
        )
    d = Path(data_dir)
    if not d.is_dir():
        state = "is not a directory" if d.exists() else "does not exist"
        raise DatasetError(f"CIFAR-10: directory '{d}' {state}. {CIFAR10_HOW_TO_GET}")
    nested = d / "cifar-10-batches-py"
    if not (d / "test_batch").exists() and nested.is_dir():
        return nested
    return d


def load_cifar10_split(
    data_dir: str | Path | None, split: Split, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, 3, 32, 32]`` and int64 labels ``[N]`` of one split.

    With ``limit``, batches after the first ``limit`` samples are not read.
    """
    d = resolve_cifar10_dir(data_dir)
    paths = [d / name for name in CIFAR10_FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 {split}: missing {', '.join(missing)} in '{d}'. {CIFAR10_HOW_TO_GET}"
        )
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for path in paths:
        if limit is not None and sum(len(labels) for _, labels in parts) >= limit:
            break
        parts.append(_read_batch(path))
    return (
        np.concatenate([images for images, _ in parts]),
        np.concatenate([labels for _, labels in parts]),
    )
