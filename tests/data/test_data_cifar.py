"""CIFAR-10 python pickles, from tiny synthetic batches."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dynabit.data import NORM_STATS, DatasetError, load_dataset

PER_BATCH = 3


def write_batch(path: Path, seed: int, n: int = PER_BATCH) -> tuple[np.ndarray, list[int]]:
    """A batch as CIFAR stores it: byte-string keys, data [n, 3072] uint8, list labels."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f, protocol=2)
    return data, labels


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for i in range(1, 6):
        write_batch(d / f"data_batch_{i}", seed=i)
    write_batch(d / "test_batch", seed=0)
    return d


def test_cifar_train_and_test(cifar_dir: Path) -> None:
    train = load_dataset("cifar10", "train", data_dir=cifar_dir)
    assert train.images.shape == (5 * PER_BATCH, 3, 32, 32) and train.info == (3, 32, 10)
    test = load_dataset("cifar10", "test", data_dir=cifar_dir.parent)  # parent works too
    data, labels = write_batch(cifar_dir / "again", seed=0)
    assert test.labels.tolist() == labels
    # rows are channel-major: the first 1024 bytes are the red plane, row by row
    assert torch.equal(test.raw[1, 0, 0, :], torch.from_numpy(data[1, :32]))
    assert torch.equal(test.raw[1, 2, 31, 31], torch.tensor(data[1, 3071]))
    stats = NORM_STATS["cifar10"]
    green = (data[:, 1024:2048].reshape(-1, 32, 32) / 255 - stats.mean[1]) / stats.std[1]
    torch.testing.assert_close(test.images[:, 1], torch.from_numpy(green).float())


def test_cifar_subset_reads_only_needed_batches(cifar_dir: Path) -> None:
    (cifar_dir / "data_batch_5").write_bytes(b"garbage")
    assert len(load_dataset("cifar10", "train", data_dir=cifar_dir, subset=PER_BATCH)) == 3
    with pytest.raises(DatasetError, match="data_batch_5"):
        load_dataset("cifar10", "train", data_dir=cifar_dir)


def test_cifar_missing_batch_and_dir(cifar_dir: Path, tmp_path: Path) -> None:
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3") as e:
        load_dataset("cifar10", "train", data_dir=cifar_dir)
    assert str(cifar_dir) in str(e.value) and "test_batch" in str(e.value)
    with pytest.raises(DatasetError, match="data_dir is required"):
        load_dataset("cifar10", "test")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("cifar10", "test", data_dir=tmp_path / "nope")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": _Evil(), "labels": []}, f)
    with pytest.raises(DatasetError, match="not allowed"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_cifar_bad_shape(tmp_path: Path) -> None:
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(DatasetError, match=r"\[N, 3072\]"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
