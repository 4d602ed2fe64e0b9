"""Full layers of a trained, converted small CNN on the tile, against the integer engine."""

from __future__ import annotations

import pytest

from dynabit.rtl import TileParams, engine_jobs, frozen_reference, verify_job
from dynabit.rtl.testing import train_small_cnn


@pytest.fixture(scope="module")
def trained() -> tuple:
    model, test, top1 = train_small_cnn(steps=150)
    assert top1 > 80.0  # it did learn
    return model, test


def test_every_dynamic_layer_bit_and_cycle_exact(trained) -> None:
    model, test = trained
    x = test.images[:1]
    jobs = engine_jobs(model, x)
    assert [j.name for j, _ in jobs] == [
        "features.block2.conv",
        "features.block3.conv",
        "features.block4.conv",
    ]
    p = TileParams(4, 4)
    for job, engine_ref in jobs:
        torch_ref = frozen_reference(model, job.name, x)
        check = verify_job(job, p, references=[engine_ref, torch_ref])
        assert check.references == ["golden", "engine", "frozen torch"]
        assert check.ok, (job.name, check.mismatches)
        assert check.dynamic.cycles_rtl == check.dynamic.cycles_model
        assert check.uniform.cycles_rtl == check.uniform.cycles_model
        # a real mix of decisions, and the skipped low passes show in the cycles
        assert 0 < check.dynamic.refined_tiles < check.dynamic.tiles


def test_mean_score_layer() -> None:
    model, test, _ = train_small_cnn(steps=60, score="mean", seed=1)
    x = test.images[1:2]
    (job, ref), *_ = engine_jobs(model, x, names=["features.block2.conv"])
    assert job.score == "mean"
    check = verify_job(job, references=[ref])
    assert check.ok, check.mismatches
