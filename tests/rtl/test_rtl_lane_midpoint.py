"""The mid-point offset on the dual lane tile: PE arithmetic, random layers, a trained model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtl_lane_window import run_window

from dynabit.rtl import TileParams, build_program, engine_jobs, frozen_reference
from dynabit.rtl.lane_params import LaneTileParams
from dynabit.rtl.lane_program import build_lane_program, lane_params_for
from dynabit.rtl.lanes import LaneParams, sum_bits
from dynabit.rtl.params import TILE_SCORES
from dynabit.rtl.program import golden
from dynabit.rtl.testing import random_job, train_small_cnn
from dynabit.rtl.verify import verify_lanes


def _assert_exact(run) -> None:
    assert run.bit_exact and run.decisions_exact, run.tile
    assert run.cycles_model is not None
    assert run.cycles_rtl == run.cycles_formula == run.cycles_model, run


@pytest.mark.parametrize("split", [(4, 4), (3, 5), (7, 1), (1, 3)])
@pytest.mark.parametrize("act_signed", [False, True])
def test_planes_rebuild_the_code_and_fit_the_operand(split, act_signed) -> None:
    """``h' << (B_lo - 1) + r = q`` for every code (``r`` carries ``low_offset``); both fit
    the lane's activation operand."""
    hi_bits, lo_bits = split
    p = LaneParams(
        4, "dual", hi_bits=hi_bits, lo_bits=lo_bits, act_signed=act_signed, midpoint=True
    )
    b = hi_bits + lo_bits
    codes = range(-(1 << (b - 1)), 1 << (b - 1)) if act_signed else range(1 << b)
    shape = p.act_shape
    if act_signed:
        lo_min, hi_max = -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    else:
        lo_min, hi_max = 0, (1 << shape.width) - 1
        assert not shape.signed and p.low_offset == 1 << (lo_bits - 1)
    assert shape.width == max(hi_bits, lo_bits) + 1
    for q in codes:
        h, r = p.plane_chunks(q)
        q_hi = q >> lo_bits
        assert (h << p.shift) == (q_hi << lo_bits) + (int(q_hi != 0) << (lo_bits - 1))
        assert (h << p.shift) + r - p.low_offset == q
        assert lo_min <= h <= hi_max and lo_min <= r <= hi_max
        assert -(1 << (lo_bits - 1)) <= r - p.low_offset < (1 << lo_bits)


@pytest.mark.parametrize("act_signed", [False, True])
def test_pe_high_pass_is_the_midpoint_sum_and_low_pass_finishes_q(act_signed) -> None:
    """Ratio 0: the high sum ``sum w h'`` (aligned by the shift); ratio 1: ``sum w q`` in one
    accumulator."""
    p = LaneParams(4, "dual", k_max=11, act_signed=act_signed, midpoint=True)
    rng = np.random.default_rng(2)
    lo, hi = (-128, 128) if act_signed else (0, 256)
    q, w = rng.integers(lo, hi, 11), rng.integers(-128, 128, 11)
    q[:3] = [0, 5, 16]  # q_hi = 0 (no offset) and the smallest offset code
    h = np.array([p.plane_chunks(int(v))[0] for v in q])
    hi_sum = int(h @ w)
    for thr in (hi_sum - 1, hi_sum):
        only_hi = run_window(p, q, w, thr=thr, refine=False)
        assert only_hi["acc"] == hi_sum << p.shift
        assert only_hi["flag"] == int(hi_sum > thr)
        both = run_window(p, q, w, thr=thr, refine=True)["acc"]
        assert both == int(q @ w) + p.low_offset * int(w.sum())  # the drain removes the offset


def test_worst_case_windows_fit_the_derived_width() -> None:
    """The largest high values and residuals of either sign, with the extreme weight."""
    k = 29
    p = LaneParams(8, "dual", k_max=k, midpoint=True)
    for q_val, w_val in ((255, -128), (240, 127), (15, -128), (7, -128), (248, -128)):
        q, w = np.full(k, q_val), np.full(k, w_val)
        assert run_window(p, q, w)["acc"] == int(q @ w) + p.low_offset * int(w.sum())
    assert p.width == (k * (255 + 8) * 128).bit_length() + 1
    assert p.cmp_bits == sum_bits(k, 5, 8, False)
    signed_p = LaneParams(8, "dual", k_max=k, midpoint=True, act_signed=True)
    assert signed_p.low_offset == 0 and signed_p.width == sum_bits(k, 8, 8, True)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    lanes=st.sampled_from([1, 2, 4, 8]),
    rows=st.integers(1, 4),
    cols=st.integers(2, 3),
    k=st.integers(1, 30),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    score=st.sampled_from(TILE_SCORES),
    signed=st.booleans(),
    split=st.sampled_from([(4, 4), (3, 5), (7, 1)]),
)
def test_random_layers(seed, lanes, rows, cols, k, h, w, score, signed, split) -> None:
    """K any size against N, partial groups and blocks, both signs, three splits."""
    p = TileParams(rows, cols, hi_bits=split[0], lo_bits=split[1], act_signed=signed, score=score)
    rng = np.random.default_rng(seed)
    c_out = int(rng.integers(1, 2 * cols + 1))
    job = random_job(rng, p, k=k, out_hw=(h, w), c_out=c_out, midpoint=True)
    _assert_exact(verify_lanes(job, "dual", lanes))


@pytest.mark.parametrize("refine", [0.0, 1.0])
def test_all_or_no_tiles_refined_cost_what_the_plain_tile_costs(refine) -> None:
    """The offset changes no cycle: same schedule as the plain dual tile."""

    def make(midpoint: bool):
        rng = np.random.default_rng(11)
        kw = {"k": 10, "out_hw": (2, 3), "c_out": 4, "refine": refine, "midpoint": midpoint}
        return random_job(rng, TileParams(2, 2), **kw)

    job, mid = make(False), make(True)
    run = verify_lanes(mid, "dual", 4)
    _assert_exact(run)
    assert run.refined_tiles == (run.tiles if refine else 0)
    assert run.cycles_rtl == verify_lanes(job, "dual", 4).cycles_rtl


def test_offset_changes_the_unrefined_outputs() -> None:
    """Not vacuous: with nothing refined the tile's outputs are the mid-point high values."""
    rng = np.random.default_rng(4)
    job = random_job(rng, TileParams(2, 2), k=9, out_hw=(2, 2), c_out=2, refine=0.0)
    mid = replace(job, midpoint=True)
    plain_acc, mid_acc = golden(job).acc, golden(mid).acc
    assert not np.array_equal(plain_acc, mid_acc)
    _assert_exact(verify_lanes(mid, "dual", 4))


def test_tiles_refuse_a_job_of_the_other_arithmetic() -> None:
    rng = np.random.default_rng(0)
    job = random_job(rng, TileParams(2, 2), k=8, out_hw=(2, 2), c_out=2, midpoint=True)
    plain = LaneTileParams(2, 2, LaneParams(4, "dual", k_max=8))
    with pytest.raises(ValueError, match="midpoint=True on a tile with midpoint=False"):
        build_lane_program(plain, job)
    with pytest.raises(ValueError, match="the midpoint offset"):
        build_program(TileParams(2, 2), job)  # the two-bank tile
    with pytest.raises(ValueError, match="midpoint is a dual-design option"):
        LaneParams(4, "int8", midpoint=True)
    assert lane_params_for(job, "int8", 4).pe.midpoint is False
    assert lane_params_for(job, "dual", 4).tag == "dual4_b4+4_w8_mid_2x2"


def test_trained_midpoint_layers_against_the_engine() -> None:
    """Every dynamic layer of a model trained with the offset: tile = engine = frozen layer."""
    model, test, top1 = train_small_cnn(steps=150, rows=2, cols=2, midpoint=True)
    assert top1 > 80.0
    x = test.images[:1]
    jobs = engine_jobs(model, x)
    assert len(jobs) == 3 and all(job.midpoint for job, _ in jobs)
    refined = tiles = 0
    for job, engine_ref in jobs:
        torch_ref = frozen_reference(model, job.name, x)
        run = verify_lanes(job, "dual", 4, references=[engine_ref, torch_ref])
        _assert_exact(run)
        refined, tiles = refined + run.refined_tiles, tiles + run.tiles
    assert 0 < refined < tiles
