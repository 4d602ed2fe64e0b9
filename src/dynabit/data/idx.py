"""IDX files (the MNIST family's format), raw or gzipped.

Layout: two zero bytes, a dtype code, the number of dimensions ``d``, then ``d`` big-endian
uint32 sizes, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from dynabit.data.base import DatasetError, Split

# dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# File stems per split; the dotted variant is how some mirrors spell them.
_STEMS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
        "labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    },
    "test": {
        "images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
        "labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
    },
}


def _open(path: Path) -> BinaryIO:
    """Open raw or gzipped (by suffix) for binary reading."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def _parse_header(path: Path, head: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    """Check the magic bytes and return (dtype, dims); ``head`` holds at least the header."""
    if len(head) < 4:
        raise DatasetError(f"{path}: too short for an IDX header ({len(head)} bytes)")
    if head[0] != 0 or head[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (magic starts {head[:2].hex()}, want 0000)")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim < 1:
        raise DatasetError(f"{path}: IDX file declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise DatasetError(f"{path}: truncated IDX header (want {header_len} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], dims


def read_idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Read only the header of an IDX file: its dtype and dimensions (cheap, even gzipped)."""
    p = Path(path)
    try:
        with _open(p) as f:
            head = f.read(4)
            if len(head) == 4:
                head += f.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{p}: cannot read IDX header ({e})") from e
    return _parse_header(p, head)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a whole IDX file into a native-endian numpy array, checking its length.

    Raises :class:`DatasetError` naming the file when it is unreadable, not IDX, truncated or
    has trailing bytes.
    """
    p = Path(path)
    try:
        with _open(p) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        # A truncated .gz ends here (EOFError), a corrupt one as BadGzipFile/zlib.error.
        raise DatasetError(f"{p}: cannot read IDX file ({type(e).__name__}: {e})") from e
    dtype, dims = _parse_header(p, data)
    offset = 4 + 4 * len(dims)
    want = math.prod(dims) * dtype.itemsize
    got = len(data) - offset
    if got < want:
        raise DatasetError(f"{p}: truncated IDX file: header says {want} data bytes, has {got}")
    if got > want:
        raise DatasetError(f"{p}: IDX file has {got - want} bytes after the declared data")
    values = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=offset)
    return values.reshape(dims).astype(dtype.newbyteorder("="))


def find_idx_file(data_dir: Path, split: Split, kind: Literal["images", "labels"]) -> Path | None:
    """The IDX file for ``split``/``kind`` in ``data_dir`` (raw preferred over .gz), or None."""
    for stem in _STEMS[split][kind]:
        for name in (stem, stem + ".gz"):
            if (data_dir / name).is_file():
                return data_dir / name
    return None


def expected_names(split: Split, kind: Literal["images", "labels"]) -> str:
    """The standard file name, as shown in error messages."""
    return f"{_STEMS[split][kind][0]}[.gz]"


def require_dir(data_dir: Path, what: str, how_to_get: str) -> None:
    """Raise :class:`DatasetError` unless ``data_dir`` is an existing directory."""
    if not data_dir.is_dir():
        state = "is not a directory" if data_dir.exists() else "does not exist"
        raise DatasetError(f"{what}: directory '{data_dir}' {state}. {how_to_get}")


def load_idx_split(
    data_dir: str | Path, split: Split, *, what: str, how_to_get: str
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of an MNIST-style directory: uint8 images ``[N, H, W]`` and labels ``[N]``.

    ``what`` names the dataset and ``how_to_get`` says how to obtain it, for error messages.
    """
    d = Path(data_dir)
    require_dir(d, what, how_to_get)
    paths = {}
    for kind in ("images", "labels"):
        path = find_idx_file(d, split, kind)
        if path is None:
            raise DatasetError(
                f"{what}: {split} {kind} not found: looked for '{d / expected_names(split, kind)}'"
                f" (also the dotted '.idx' spelling). {how_to_get}"
            )
        paths[kind] = path
    images = read_idx(paths["images"])
    labels = read_idx(paths["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{paths['images']}: want uint8 images [N, H, W], got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{paths['labels']}: want integer labels [N], got {labels.dtype} {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{what}: {images.shape[0]} images in '{paths['images']}' but "
            f"{labels.shape[0]} labels in '{paths['labels']}'"
        )
    if images.shape[0] == 0:
        raise DatasetError(f"{what}: '{paths['images']}' holds no images; at least 1 is needed")
    if labels.min() < 0:
        raise DatasetError(f"{paths['labels']}: negative label {int(labels.min())}")
    return images, labels.astype(np.int64)
