"""The real Fashion-MNIST test split (Debian package dataset-fashion-mnist; CI installs it)."""

from __future__ import annotations

import pytest
import torch

from dynabit.data import FASHION_MNIST_DIR, load_dataset

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason=f"{FASHION_MNIST_DIR} absent (dataset-fashion-mnist)"
)


def test_fashion_mnist_test_split() -> None:
    ds = load_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10_000, 1, 28, 28) and ds.raw.dtype == torch.uint8
    assert torch.equal(torch.bincount(ds.labels), torch.full((10,), 1000))
    # fixed constants from the train split still standardize the test split closely
    assert abs(ds.images.mean().item()) < 0.02 and abs(ds.images.std().item() - 1) < 0.02
