"""The score registry: one class per score, the same arithmetic in numpy and torch."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch

from dynabit.config.scores import SCORE_NAMES, SCORES, Score, score_for


def test_registry_and_literal_name_the_same_scores() -> None:
    assert set(get_args(Score)) == set(SCORE_NAMES) == set(SCORES)
    assert all(score_for(n).name == n for n in SCORE_NAMES)


def test_unknown_score_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown score 'median'; allowed: max, mean"):
        score_for("median")


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_exact_score_agrees_between_numpy_and_torch(name: str) -> None:
    rng = np.random.default_rng(0)
    cells = rng.integers(-50, 50, size=(3, 2, 7))
    counts = np.array([7, 5])[None, :]
    score = score_for(name)
    a = score.exact(cells, -1, lambda: counts, np)
    b = score.exact(torch.from_numpy(cells), -1, lambda: torch.from_numpy(counts), torch)
    assert np.array_equal(a, b.numpy())
    if name == "max":
        assert np.array_equal(a, cells.max(axis=-1))
    else:  # floor of the mean over the real elements, negative sums included
        assert np.array_equal(a, np.floor(cells.sum(axis=-1) / counts).astype(np.int64))


def test_padding_never_changes_a_score() -> None:
    cells = np.array([[-3, -1, -2]])
    for name in SCORE_NAMES:
        score = score_for(name)
        padded = np.concatenate([cells, [[score.pad_value(np.iinfo(np.int64).min)]]], axis=1)
        assert score.exact(padded, -1, lambda: 3, np) == score.exact(cells, -1, lambda: 3, np)
