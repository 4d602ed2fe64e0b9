"""Tiles of dot-product PEs (N lanes, one accumulator): bit-exact and cycle-exact on layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynabit.rtl import TileParams, engine_jobs, frozen_reference
from dynabit.rtl.lane_params import LaneTileParams
from dynabit.rtl.lane_program import build_lane_program, design_job, lane_params_for
from dynabit.rtl.lanes import LaneParams
from dynabit.rtl.params import TILE_SCORES
from dynabit.rtl.testing import random_job, train_small_cnn
from dynabit.rtl.verify import verify_lanes

DESIGNS = [("dual", 1), ("int8", 1), ("int4", 1), ("bitserial", 1), ("bitserial", 2)]


def _assert_exact(run) -> None:
    assert run.bit_exact and run.decisions_exact, run.tile
    assert run.cycles_model is not None
    assert run.cycles_rtl == run.cycles_formula == run.cycles_model, run


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    design=st.sampled_from(DESIGNS),
    lanes=st.sampled_from([1, 2, 4, 8]),
    rows=st.integers(1, 4),
    cols=st.integers(2, 3),
    k=st.integers(1, 30),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    score=st.sampled_from(TILE_SCORES),
    signed=st.booleans(),
)
def test_random_layers(seed, design, lanes, rows, cols, k, h, w, score, signed) -> None:
    """K any size against N (partial last step, K < N), partial groups and blocks."""
    p = TileParams(rows, cols, act_signed=signed, score=score)
    rng = np.random.default_rng(seed)
    c_out = int(rng.integers(1, 2 * cols + 1))
    job = random_job(rng, p, k=k, out_hw=(h, w), c_out=c_out)
    _assert_exact(verify_lanes(job, design[0], lanes, design[1]))


@pytest.mark.parametrize("design, serial", DESIGNS)
def test_first_layer_with_three_input_channels(design, serial) -> None:
    """A 3x3 conv over 3 channels: K = 27 in 4 steps of 8 lanes, the last one 3 lanes wide."""
    rng = np.random.default_rng(3)
    p = TileParams(2, 2)
    job = random_job(rng, p, k=27, out_hw=(3, 3), c_out=3)
    job.conv = {"in_channels": 3, "kernel": (3, 3), "in_hw": (3, 3), "padding": (1, 1)}
    run = verify_lanes(job, design, 8, serial)
    _assert_exact(run)
    prog = build_lane_program(lane_params_for(job, design, 8, serial), design_job(job, design))
    assert prog.steps == 4


@pytest.mark.parametrize("refine", [0.0, 1.0])
def test_all_or_no_tiles_refined(refine) -> None:
    """Ratio 0: the high pass alone; ratio 1: both planes of every tile in one accumulator."""
    rng = np.random.default_rng(5)
    p = TileParams(2, 2)
    job = random_job(rng, p, k=10, out_hw=(2, 3), c_out=4, refine=refine)
    run = verify_lanes(job, "dual", 4)
    _assert_exact(run)
    assert run.refined_tiles == (run.tiles if refine else 0)
    steps, fill, tiles = 3, 2, run.tiles
    expect = tiles * (fill + steps) + (tiles * steps + fill if refine else 0) - 1
    assert run.cycles_rtl == [expect]


def test_unrefined_dual_costs_the_int4_pass() -> None:
    """Same array and lanes, nothing refined: the dual tile costs what INT4 costs (the high
    plane alone), the bit-serial tile one step per activation bit."""
    rng = np.random.default_rng(7)
    p = TileParams(2, 2)
    job = random_job(rng, p, k=16, out_hw=(2, 4), c_out=4, refine=0.0)
    dual = verify_lanes(job, "dual", 4)
    int4 = verify_lanes(job, "int4", 4)
    serial = verify_lanes(job, "bitserial", 4)
    for run in (dual, int4, serial):
        _assert_exact(run)
    assert dual.cycles_rtl == int4.cycles_rtl  # nothing refined: the high pass alone
    assert serial.cycles_rtl[0] > dual.cycles_rtl[0]


def test_rejects_a_window_longer_than_the_accumulator_was_sized_for() -> None:
    rng = np.random.default_rng(0)
    job = random_job(rng, TileParams(2, 2), k=20, out_hw=(2, 2), c_out=2)
    p = LaneTileParams(2, 2, LaneParams(4, "dual", k_max=10))
    with pytest.raises(ValueError, match="K=20 > the accumulator's k_max=10"):
        build_lane_program(p, job)


@pytest.fixture(scope="module")
def trained() -> tuple:
    model, test, top1 = train_small_cnn(steps=150, rows=2, cols=2)
    assert top1 > 80.0
    return model, test


def test_trained_layers_against_the_engine(trained) -> None:
    """Every dynamic layer of a trained model, on a 2x2 tile of 4-lane dual PEs."""
    model, test = trained
    x = test.images[:1]
    jobs = engine_jobs(model, x)
    assert len(jobs) == 3
    refined = tiles = 0
    for job, engine_ref in jobs:
        torch_ref = frozen_reference(model, job.name, x)
        run = verify_lanes(job, "dual", 4, references=[engine_ref, torch_ref])
        _assert_exact(run)
        refined, tiles = refined + run.refined_tiles, tiles + run.tiles
    assert 0 < refined < tiles
