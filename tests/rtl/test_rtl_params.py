"""TileParams and the score registry: unknown scores, scores without a datapath, tags."""

from __future__ import annotations

import pytest

from dynabit.config import scores
from dynabit.rtl.params import TILE_SCORES, TileParams


def test_tile_implements_every_registered_score_today() -> None:
    assert set(TILE_SCORES) == set(scores.SCORE_NAMES)


def test_unknown_score_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown score 'median'; allowed: max, mean"):
        TileParams(score="median")  # type: ignore[arg-type]


def test_registered_score_without_a_datapath_is_refused(monkeypatch) -> None:
    class Median(scores.MaxScore):
        name = "median"

    monkeypatch.setitem(scores.SCORES, "median", Median())
    with pytest.raises(ValueError, match="'median' has no datapath in the tile; it implements"):
        TileParams(score="median")  # type: ignore[arg-type]


def test_tags_name_the_score_only_when_it_is_not_the_default() -> None:
    assert TileParams().tag == "dyn4x4_b4+4_w8"
    assert TileParams(score="mean").tag == "dyn4x4_b4+4_w8_mean"
    assert TileParams(score="mean").uniform().tag == "uni4x4_b8_w8"
