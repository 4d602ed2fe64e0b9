"""The whole tile on random layers: bit-exact outputs and decisions, cycle-exact timing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynabit.rtl import TileParams, build_program, golden, predicted_cycles, simulate, verify_job
from dynabit.rtl.params import TILE_SCORES
from dynabit.rtl.program import LayerJob
from dynabit.rtl.testing import random_job


def _assert_ok(check) -> None:
    assert check.ok, check.mismatches
    assert check.dynamic.cycles_rtl == check.dynamic.cycles_model
    assert check.uniform.cycles_rtl == check.uniform.cycles_model


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**31),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    k=st.integers(2, 32),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    blocks=st.integers(1, 3),
    score=st.sampled_from(TILE_SCORES),
    signed=st.booleans(),
    split=st.sampled_from([(4, 4), (3, 5), (5, 3), (2, 6)]),
)
def test_random_layers_bit_and_cycle_exact(
    seed, rows, cols, k, h, w, blocks, score, signed, split
) -> None:
    if rows + cols < 3:
        cols = 2
    p = TileParams(rows, cols, hi_bits=split[0], lo_bits=split[1], act_signed=signed, score=score)
    rng = np.random.default_rng(seed)
    c_out = int(rng.integers((blocks - 1) * cols + 1, blocks * cols + 1))  # partial last block
    job = random_job(rng, p, k=k, out_hw=(h, w), c_out=c_out)
    _assert_ok(verify_job(job, p))


@pytest.mark.parametrize("refine", [0.0, 1.0])
def test_all_or_no_groups_refined(refine) -> None:
    """All refined: every fold chains a low pass and the last tile needs the epilogue fold;
    none: high passes only, and the speculative low-plane read is dropped."""
    p = TileParams(2, 3)
    job = random_job(np.random.default_rng(3), p, k=9, out_hw=(3, 4), c_out=5, refine=refine)
    check = verify_job(job, p)
    _assert_ok(check)
    n_tiles, fill = job.n_tiles, p.rows + p.cols - 2
    expected = n_tiles * (fill + 9) + (n_tiles * 9 + fill if refine else 0) - 1
    assert check.dynamic.cycles_rtl == [expected]
    # the low plane is read only by refined tiles (plus one speculative vector at the end)
    assert check.dynamic.reads["lo"] == (n_tiles * 9 if refine else 1)


@pytest.mark.parametrize("last_refined", [False, True])
def test_epilogue_only_when_the_last_tile_is_refined(last_refined) -> None:
    p = TileParams(2, 2)
    rng = np.random.default_rng(11)
    job = random_job(rng, p, k=5, out_hw=(2, 4), c_out=2, refine=0.5)
    gold = golden(job)
    # force the last tile's decision through its block threshold
    job.threshold[-1] = -(10**12) if last_refined else 10**12
    gold = golden(job)
    assert bool(gold.mask.reshape(-1)[-1]) == last_refined
    res = simulate(build_program(p, job))
    assert res.compute_cycles == predicted_cycles(p, job, gold.mask)


def test_single_tile_and_minimum_stream() -> None:
    p = TileParams(1, 2)
    job = random_job(np.random.default_rng(5), p, k=2, out_hw=(1, 1), c_out=2, refine=1.0)
    _assert_ok(verify_job(job, p))


def test_batch_samples_are_checked_one_by_one() -> None:
    p = TileParams(2, 2, score="mean")
    job = random_job(np.random.default_rng(8), p, k=6, out_hw=(3, 3), c_out=3, samples=2)
    check = verify_job(job, p)
    _assert_ok(check)
    assert len(check.dynamic.cycles_rtl) == 2


def test_tile_rejects_layers_it_cannot_run() -> None:
    p = TileParams(2, 2)
    job = random_job(np.random.default_rng(1), p, k=4)
    with pytest.raises(ValueError, match="K >= 2"):
        bad = LayerJob(**{**job.__dict__, "w": job.w[:, :1], "cols": job.cols[:, :1]})
        build_program(p, bad)
    with pytest.raises(ValueError, match="block_size"):
        build_program(TileParams(2, 3), job)
    with pytest.raises(ValueError, match="rows"):
        build_program(TileParams(4, 2), job)
