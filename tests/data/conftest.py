"""Fixtures that write tiny IDX datasets (tests import nothing from here: use the fixtures)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` in IDX format (big-endian)."""
    code = _CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_file(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX to ``path``, gzipped when the name ends in ``.gz``."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def tiny_split(n: int, side: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images ``[n, side, side]`` and labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


@pytest.fixture
def write_idx() -> Callable[[Path, np.ndarray], Path]:
    """``write_idx(path, array)``: see :func:`write_idx_file`."""
    return write_idx_file


@pytest.fixture
def encode_idx() -> Callable[[np.ndarray], bytes]:
    """``encode_idx(array)``: see :func:`idx_bytes`."""
    return idx_bytes


@pytest.fixture
def make_split() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``make_split(n, side=5, seed=0)``: see :func:`tiny_split`."""
    return tiny_split


@pytest.fixture
def make_idx_dir(tmp_path: Path) -> Callable[..., Path]:
    """``make_idx_dir(gz=True, n_train=12, n_test=7)``: a directory with the four standard files."""

    def make(gz: bool = True, n_train: int = 12, n_test: int = 7) -> Path:
        d = tmp_path / ("idx_gz" if gz else "idx_raw")
        d.mkdir()
        ext = ".gz" if gz else ""
        for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
            images, labels = tiny_split(n, seed=seed)
            write_idx_file(d / f"{prefix}-images-idx3-ubyte{ext}", images)
            write_idx_file(d / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        return d

    return make
