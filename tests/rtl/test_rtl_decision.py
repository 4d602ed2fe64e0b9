"""Decision unit and the host's threshold rewrites, against the model's rule."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from dynabit.rtl import DecisionUnit, TileParams
from dynabit.rtl.params import TILE_SCORES
from dynabit.rtl.program import LayerJob, block_constants


def _job(c_out: int, bias, mult, thr, score: str, cols: int) -> LayerJob:
    return LayerJob(
        w=np.zeros((c_out, 2), dtype=np.int64),
        bias=np.asarray(bias),
        cols=np.zeros((1, 2, 1, 1), dtype=np.int64),
        hi_bits=4,
        lo_bits=4,
        act_signed=False,
        threshold=np.asarray([thr]),
        score_mult=np.asarray(mult),
        score=score,
        group=(1, 2),
        block_size=cols,
    )


def _model_refine(acc, bias, mult, thr, rows_ok, cols_ok, score) -> bool:
    """The model's rule on one tile: scores of (acc + bias) * mult over the valid elements."""
    vals = [
        (acc[r][c] + bias[c]) * mult[c]
        for r in range(len(acc))
        for c in range(len(acc[0]))
        if rows_ok[r] and cols_ok[c]
    ]
    s = max(vals) if score == "max" else sum(vals) // len(vals)
    return s > thr


def _hw_refine(p: TileParams, acc, consts, rows_ok) -> bool:
    """Simulate the decision unit on registered flags / sums, as the tile drives it."""
    dut = DecisionUnit(p)
    out = {}

    async def bench(ctx) -> None:
        ctx.set(dut.row_ok, sum(1 << r for r, ok in enumerate(rows_ok) if ok))
        ctx.set(dut.col_ok, consts["col_ok"])
        if p.score == "max":
            flags = 0
            for r in range(p.rows):
                for c in range(p.cols):
                    if acc[r][c] > consts["thr"][c]:  # what each PE's comparator registers
                        flags |= 1 << (r * p.cols + c)
            ctx.set(dut.flags, flags)
        else:
            ctx.set(dut.accs, [acc[r][c] for r in range(p.rows) for c in range(p.cols)])
            ctx.set(dut.mult, consts["mult"])
            ctx.set(dut.x, consts["x"])
        out["refine"] = bool(ctx.get(dut.refine))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return out["refine"]


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    rows=st.integers(1, 3),
    cols=st.integers(1, 3),
    score=st.sampled_from(TILE_SCORES),
)
def test_decision_unit_matches_model_rule(data, rows, cols, score) -> None:
    if rows + cols < 3:
        rows = 2
    p = TileParams(rows, cols, score=score)
    ints = st.integers(-(10**6), 10**6)
    c_out = data.draw(st.integers(1, cols))  # a partial block when c_out < cols
    acc = [[data.draw(ints) for _ in range(cols)] for _ in range(rows)]
    bias = [data.draw(st.integers(-5000, 5000)) for _ in range(c_out)]
    mult = [data.draw(st.integers(1, 1 << 16)) for _ in range(c_out)]
    rows_ok = [True] + [data.draw(st.booleans()) for _ in range(rows - 1)]
    # thresholds near the actual scores, so both outcomes occur
    vals = [(acc[r][c] + bias[c]) * mult[c] for r in range(rows) for c in range(c_out)]
    thr = data.draw(st.integers(min(vals) - 10, max(vals) + 10))
    job = _job(c_out, bias, mult, thr, score, cols)
    consts = block_constants(p, job, 0)
    cols_ok = [c < c_out for c in range(cols)]
    padded_bias = bias + [0] * (cols - c_out)
    padded_mult = mult + [1] * (cols - c_out)
    expect = _model_refine(acc, padded_bias, padded_mult, thr, rows_ok, cols_ok, score)
    assert _hw_refine(p, acc, consts, rows_ok) == expect


@settings(max_examples=200, deadline=None)
@given(
    acc=st.integers(-(2**31), 2**31 - 1),
    bias=st.integers(-(2**20), 2**20),
    mult=st.integers(1, 1 << 16),
    thr=st.integers(-(2**50), 2**50),
)
def test_max_rewrite_is_exact_including_clamping(acc, bias, mult, thr) -> None:
    """(acc + b) * m > t  <=>  acc > clamp(floor(t / m) - b), for every 32-bit acc."""
    p = TileParams(1, 2)
    job = _job(1, [bias], [mult], thr, "max", 2)
    t_c = block_constants(p, job, 0)["thr"][0]
    assert -(2**31) - 1 <= t_c <= 2**31 - 1  # fits the 33-bit register
    assert (acc > t_c) == ((acc + bias) * mult > thr)
