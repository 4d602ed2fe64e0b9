"""Stream one window through a lone dot-product PE (shared by the lane PE tests)."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from dynabit.rtl.lanes import LaneParams, LanePE


def run_window(
    p: LaneParams, q: np.ndarray, w: np.ndarray, thr: int = 0, refine: bool = True
) -> dict:
    """Stream one K-window (codes ``q``, weights ``w``) plane by plane through a lone PE.

    The last step's unused lanes get zero codes and zero weights. Returns the accumulator,
    the dual flag and the number of valid cycles.
    """
    dut = LanePE(p)
    n, k = p.lanes, len(q)
    steps = -(-k // n)
    qp = np.zeros(steps * n, dtype=np.int64)
    wp = np.zeros(steps * n, dtype=np.int64)
    qp[:k], wp[:k] = q, w
    planes = len(p.planes) if p.design != "dual" or refine else 1
    chunks = [[p.plane_chunks(int(v))[j] for v in qp] for j in range(planes)]
    out: dict = {"cycles": 0}

    async def bench(ctx) -> None:
        if p.design == "dual":
            ctx.set(dut.thr, thr)
        for j in range(planes):
            for s in range(steps):
                ctx.set(dut.a_in, chunks[j][s * n : (s + 1) * n])
                ctx.set(dut.w_in, [int(x) for x in wp[s * n : (s + 1) * n]])
                ctl = {"valid": 1, "restart": int(j == 0 and s == 0)}
                if p.design == "dual":
                    ctl["low"] = int(j > 0)
                    ctl["cmp"] = int(j == 0 and s == steps - 1)
                elif len(p.planes) > 1:
                    ctl["shift"] = int(j > 0 and s == 0)
                ctx.set(dut.ctl_in, ctl)
                await ctx.tick()
                out["cycles"] += 1
                if p.design == "dual" and j == 0 and s == steps - 1:
                    out["flag"] = ctx.get(dut.flag)
        ctx.set(dut.ctl_in, {"valid": 0, "restart": 0})
        await ctx.tick()
        out["acc"] = ctx.get(dut.acc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out
