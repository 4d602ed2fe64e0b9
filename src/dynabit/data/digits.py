"""scikit-learn's bundled 8x8 digits: 1,797 images with values 0..16, no download needed.

Split (fixed, no shuffling): the first 1,437 samples are ``train``, the last 360 ``test``. The
bundled order cycles through the classes, so both parts are near-balanced (141..146 and 33..37
per class).
"""

from __future__ import annotations

import numpy as np

from dynabit.data.base import Split

DIGITS_TRAIN_SIZE = 1437
DIGITS_RAW_MAX = 16


def load_digits_split(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, 8, 8]`` with values 0..16, and int64 labels ``[N]``."""
    # Imported here: scikit-learn is slow to import and only this dataset needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # the values are whole numbers 0..16
    labels = bunch.target.astype(np.int64)
    part = slice(None, DIGITS_TRAIN_SIZE) if split == "train" else slice(DIGITS_TRAIN_SIZE, None)
    return images[part], labels[part]
