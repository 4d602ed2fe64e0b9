"""IDX parsing: round trips, header checks and precise errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dynabit.data import DatasetError, read_idx, read_idx_header
from dynabit.data.idx import find_idx_file, load_idx_split


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([0, 9, 3], dtype=np.uint8),
        np.array([[-3, 300], [7, -1]], dtype=np.int16),
        np.array([1.5, -2.25], dtype=np.float32),
        np.array([[1e100]], dtype=np.float64),
    ],
    ids=["u8-3d", "u8-1d", "i16", "f32", "f64"],
)
def test_round_trip(tmp_path: Path, write_idx, array: np.ndarray, gz: bool) -> None:
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array)
    got = read_idx(path)
    assert got.dtype == array.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, array)
    assert read_idx_header(path) == (got.dtype.newbyteorder(">"), array.shape)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_the_file(tmp_path: Path, encode_idx, gz: bool) -> None:
    data = encode_idx(np.zeros((4, 5, 5), dtype=np.uint8))[:-10]
    path = tmp_path / ("cut-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DatasetError, match="truncated") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_truncated_gzip_stream_names_the_file(tmp_path: Path, encode_idx) -> None:
    blob = gzip.compress(encode_idx(np.arange(200, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError) as e:
        read_idx(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "after the declared data"),
    ],
)
def test_malformed_headers(tmp_path: Path, data: bytes, match: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=match) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_not_gzip_despite_suffix(tmp_path: Path, encode_idx) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(encode_idx(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(DatasetError, match=str(path)):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_load_split(make_idx_dir, make_split, gz: bool) -> None:
    d = make_idx_dir(gz=gz, n_train=12, n_test=7)
    images, labels = load_idx_split(d, "test", what="T", how_to_get="")
    want_images, want_labels = make_split(7, seed=2)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    assert labels.dtype == np.int64
    assert load_idx_split(d, "train", what="T", how_to_get="")[0].shape == (12, 5, 5)


def test_raw_preferred_and_dotted_names(tmp_path: Path, write_idx, make_split) -> None:
    images, labels = make_split(3)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", images)
    assert find_idx_file(tmp_path, "test", "images") == tmp_path / "t10k-images.idx3-ubyte"
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    assert find_idx_file(tmp_path, "test", "images") == tmp_path / "t10k-images-idx3-ubyte"
    assert find_idx_file(tmp_path, "test", "labels") is None


def test_count_mismatch(tmp_path: Path, write_idx, make_split) -> None:
    images, labels = make_split(5)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:4])
    with pytest.raises(DatasetError, match="5 images .* but 4 labels"):
        load_idx_split(tmp_path, "test", what="T", how_to_get="")


def test_wrong_rank_or_dtype(tmp_path: Path, write_idx, make_split) -> None:
    images, labels = make_split(5)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images.astype(np.float32))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DatasetError, match=r"want uint8 images \[N, H, W\]"):
        load_idx_split(tmp_path, "test", what="T", how_to_get="")


def test_missing_file_lists_the_path(tmp_path: Path, write_idx, make_split) -> None:
    images, _ = make_split(5)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    with pytest.raises(DatasetError, match="HOW") as e:
        load_idx_split(tmp_path, "test", what="T", how_to_get="HOW")
    assert str(tmp_path / "t10k-labels-idx1-ubyte[.gz]") in str(e.value)
