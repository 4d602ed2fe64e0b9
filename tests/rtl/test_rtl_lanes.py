"""Dot-product PEs (N lanes, one accumulator): exact sums, plane shifts, comparator, widths."""

from __future__ import annotations

import numpy as np
import pytest
from rtl_lane_window import run_window

from dynabit.rtl.lanes import LaneParams, pe_cycles, sum_bits
from dynabit.rtl.synth import verilog_text


def _codes(rng, p: LaneParams, k: int) -> tuple[np.ndarray, np.ndarray]:
    b = p.code_bits
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1))) if p.act_signed else (0, 1 << b)
    half = 1 << (p.weight_bits - 1)
    return rng.integers(lo, hi, k), rng.integers(-half, half, k)


@pytest.mark.parametrize(
    "design, serial", [("dual", 1), ("int8", 1), ("int4", 1), ("bitserial", 1), ("bitserial", 2)]
)
@pytest.mark.parametrize("lanes, k", [(1, 5), (4, 12), (4, 13), (8, 27), (8, 3)])
@pytest.mark.parametrize("act_signed", [False, True])
def test_window_sum_is_exact(design, serial, lanes, k, act_signed) -> None:
    """K not a multiple of N (13, 27: a 3-channel 3x3 first layer) and K < N (3) included."""
    p = LaneParams(lanes, design, k_max=k, act_signed=act_signed, serial_bits=serial)
    rng = np.random.default_rng(lanes * 100 + k)
    q, w = _codes(rng, p, k)
    res = run_window(p, q, w)
    assert res["acc"] == int((q * w).sum())
    assert res["cycles"] == pe_cycles(p, k, refined=True)


def test_bitserial_cost_follows_the_bit_width() -> None:
    """Uniform A5 costs 5/8 of A8 on the bit-serial PE; two bits per step halve it (rounded up)."""
    a8 = LaneParams(8, "bitserial", bits=8)
    a5 = LaneParams(8, "bitserial", bits=5)
    assert pe_cycles(a5, 64) * 8 == pe_cycles(a8, 64) * 5
    assert LaneParams(8, "bitserial", bits=5, serial_bits=2).planes == (1, 2, 2)
    rng = np.random.default_rng(5)
    q, w = _codes(rng, a5, 20)
    assert run_window(LaneParams(8, "bitserial", bits=5, k_max=20), q, w)["acc"] == int(q @ w)


@pytest.mark.parametrize("act_signed", [False, True])
def test_dual_high_pass_decides_and_low_pass_continues_the_same_accumulator(act_signed) -> None:
    p = LaneParams(4, "dual", k_max=10, act_signed=act_signed)
    rng = np.random.default_rng(1)
    q, w = _codes(rng, p, 10)
    q_hi = np.array([p.plane_chunks(int(v))[0] for v in q])
    hi_sum = int((q_hi * w).sum())
    for thr in (hi_sum - 1, hi_sum):
        only_hi = run_window(p, q, w, thr=thr, refine=False)
        assert only_hi["acc"] == hi_sum << p.shift  # ratio 0: the high pass alone, aligned
        assert only_hi["flag"] == int(hi_sum > thr)
        assert only_hi["cycles"] == pe_cycles(p, 10)
        both = run_window(p, q, w, thr=thr, refine=True)
        assert both["acc"] == int((q * w).sum())  # ratio 1: two passes in one accumulator
        assert both["cycles"] == 2 * pe_cycles(p, 10)


def test_worst_case_window_fits_the_derived_width() -> None:
    k = 37
    for design in ("dual", "int8", "int4", "bitserial"):
        p = LaneParams(8, design, k_max=k)
        q = np.full(k, (1 << p.code_bits) - 1)
        w = np.full(k, -(1 << (p.weight_bits - 1)))
        assert run_window(p, q, w)["acc"] == int(q @ w)
    # one bit less would not hold it
    assert sum_bits(k, 8, 8, False) - 1 < (k * 255 * 128).bit_length() + 1


@pytest.mark.parametrize("act_signed", [False, True])
def test_threshold_register_range_covers_the_extreme_high_sums(act_signed) -> None:
    """The threshold is as wide as the compared sum: its most negative value is below every
    high sum and its largest is not exceeded by any (the host clamps into this range)."""
    k = 37
    p = LaneParams(8, "dual", k_max=k, act_signed=act_signed)
    c = p.thr_shape.width
    assert c == p.cmp_bits
    q_top = -128 if act_signed else 255  # the largest high chunk magnitude
    for w_val in (-128, 127):
        q, w = np.full(k, q_top), np.full(k, w_val)
        hi = p.plane_chunks(q_top)[0] * w_val * k
        assert abs(hi) <= k * (8 if act_signed else 15) * 128 < 1 << (c - 1)
        assert run_window(p, q, w, thr=-(1 << (c - 1)), refine=False)["flag"] == 1
        assert run_window(p, q, w, thr=(1 << (c - 1)) - 1, refine=False)["flag"] == 0
        assert run_window(p, q, w, thr=hi, refine=False)["flag"] == 0
        assert run_window(p, q, w, thr=hi - 1, refine=False)["flag"] == 1


@pytest.mark.parametrize("design", ["dual", "int8", "int4", "bitserial"])
def test_every_design_keeps_its_adder_tree_apart_at_the_formula_width(design) -> None:
    """The same tree style in every design: a kept ``tree_bits``-wide sum ahead of the
    accumulator adder (so synthesis does not merge the accumulator into the tree)."""
    p = LaneParams(8, design, k_max=4608)
    lines = verilog_text(p).splitlines()
    at = lines.index(f"  wire [{p.tree_bits - 1}:0] tree;")
    assert lines[at - 1].strip().startswith("(* keep")


def test_widths_follow_the_formula() -> None:
    p = LaneParams(8, "dual", k_max=4608)
    assert p.width == (4608 * 255 * 128).bit_length() + 1 == 29
    assert p.cmp_bits == (4608 * 15 * 128).bit_length() + 1 == 25 == p.thr_shape.width
    assert p.tree_bits == (8 * 15 * 128).bit_length() + 1 == 15
    assert LaneParams(8, "int8", k_max=4608).tree_bits == (8 * 255 * 128).bit_length() + 1
    assert LaneParams(4, "bitserial", k_max=4608).tree_bits == (4 * 1 * 128).bit_length() + 1
    assert LaneParams(8, "int4", k_max=4608).width == 25


def test_too_narrow_accumulator_names_k_and_width() -> None:
    with pytest.raises(ValueError, match=r"acc_bits=20 is too narrow for K=4608.*needs 29"):
        LaneParams(8, "int8", k_max=4608, acc_bits=20)
    assert LaneParams(8, "int8", k_max=4608, acc_bits=29).width == 29


@pytest.mark.parametrize("bad", [{"lanes": 0}, {"design": "fp8"}, {"serial_bits": 3}])
def test_bad_parameters(bad) -> None:
    with pytest.raises(ValueError):
        LaneParams(**bad)
