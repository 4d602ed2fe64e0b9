"""load_dataset / dataset_info: names, normalization, subsets and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dynabit.data import (
    DATASET_NAMES,
    MNIST_DIR,
    NORM_STATS,
    DatasetError,
    DatasetInfo,
    ImageDataset,
    dataset_info,
    load_dataset,
)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(make_idx_dir, make_split, gz: bool) -> None:
    d = make_idx_dir(gz=gz, n_train=12, n_test=7)
    ds = load_dataset("idx", "test", data_dir=str(d))
    images, labels = make_split(7, seed=2)
    assert isinstance(ds, ImageDataset) and len(ds) == 7
    assert ds.images.shape == (7, 1, 5, 5) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64
    np.testing.assert_array_equal(ds.labels.numpy(), labels)
    np.testing.assert_array_equal(ds.raw[:, 0].numpy(), images)
    # normalized with the fixed constants, and back
    mean, std = NORM_STATS["idx"].mean[0], NORM_STATS["idx"].std[0]
    torch.testing.assert_close(ds.images, (torch.from_numpy(images)[:, None] / 255 - mean) / std)
    torch.testing.assert_close(ds.denormalize(ds.images), ds.pixels())
    assert (ds.num_classes, ds.name, ds.split, ds.info) == (10, "idx", "test", (1, 5, 10))
    image, label = ds[3]
    assert image.shape == (1, 5, 5) and int(label) == labels[3]


def test_subset_and_dataloader(make_idx_dir) -> None:
    d = make_idx_dir()
    ds = load_dataset("idx", "train", data_dir=d, subset=5)
    assert len(ds) == 5 and ds.raw.shape[0] == 5
    assert len(load_dataset("idx", "train", data_dir=d, subset=10_000)) == 12
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 1, 5, 5) and y.shape == (4,)
    with pytest.raises(ValueError, match="subset"):
        load_dataset("idx", "train", data_dir=d, subset=0)


def test_unknown_name_lists_allowed() -> None:
    with pytest.raises(
        ValueError, match="allowed: fashion-mnist, mnist, idx, digits, cifar10, photos"
    ):
        load_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="allowed"):
        dataset_info("svhn")
    assert not issubclass(ValueError, DatasetError)  # a bad name is not a data problem


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "val")  # type: ignore[arg-type]


def test_name_spelling_is_forgiving() -> None:
    assert dataset_info("Fashion_MNIST") == dataset_info("fashion-mnist")


def test_missing_fashion_dir_says_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", "train", data_dir=missing)
    msg = str(e.value)
    assert str(missing) in msg and "dataset-fashion-mnist" in msg
    assert "/usr/share/datasets/fashion-mnist" in msg


def test_empty_dir_names_expected_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert str(tmp_path / "t10k-images-idx3-ubyte[.gz]") in str(e.value)


def test_idx_needs_data_dir() -> None:
    with pytest.raises(DatasetError, match="data_dir is required"):
        load_dataset("idx", "train")


@pytest.mark.skipif(MNIST_DIR.is_dir(), reason="MNIST is installed here")
def test_mnist_default_dir_missing() -> None:
    with pytest.raises(DatasetError, match=str(MNIST_DIR)):
        load_dataset("mnist", "test")


def test_label_out_of_range(make_idx_dir, write_idx, make_split) -> None:
    d = make_idx_dir(gz=False)
    _, labels = make_split(7)
    labels[0] = 12
    write_idx(d / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DatasetError, match="label 12 >= 10"):
        load_dataset("fashion-mnist", "test", data_dir=d)
    # a generic IDX dataset grows its class count instead, the same for both splits
    assert load_dataset("idx", "train", data_dir=d).num_classes == 13
    assert dataset_info("idx", d) == DatasetInfo(1, 5, 13)


def test_dataset_info_known() -> None:
    assert dataset_info("fashion-mnist") == (1, 28, 10)
    assert dataset_info("mnist") == (1, 28, 10)
    assert dataset_info("digits") == (1, 8, 10)
    assert dataset_info("cifar10") == (3, 32, 10)
    with pytest.raises(DatasetError, match="data_dir"):
        dataset_info("idx")
    assert dataset_info("photos") == (3, 224, 1000)
    assert set(DATASET_NAMES) == {"fashion-mnist", "mnist", "idx", "digits", "cifar10", "photos"}
