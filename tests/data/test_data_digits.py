"""scikit-learn digits: the fixed split, shapes and normalization."""

from __future__ import annotations

import torch

from dynabit.data import load_dataset


def test_digits_split_shapes_and_labels() -> None:
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.info == (1, 8, 10)
    for ds in (train, test):
        assert torch.bincount(ds.labels, minlength=10).min() >= 30  # every class present
        assert ds.raw_max == 16 and int(ds.raw.max()) == 16
    # normalization constants come from the train split
    assert abs(train.images.mean().item()) < 1e-3
    assert abs(train.images.std().item() - 1) < 1e-3
    torch.testing.assert_close(train.denormalize(train.images), train.raw.float() / 16)


def test_digits_deterministic_and_subset() -> None:
    a = load_dataset("digits", "test", subset=20)
    b = load_dataset("digits", "test")
    assert len(a) == 20
    assert torch.equal(a.images, b.images[:20]) and torch.equal(a.labels, b.labels[:20])
