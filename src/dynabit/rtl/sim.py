"""Run a :class:`~dynabit.rtl.program.TileProgram` on the tile in Amaranth's simulator.

The testbench plays the buffers (synchronous-read memories answering one cycle after the
request), collects the drained rows and the decisions, and measures cycles two ways: the
tile's own fold counter, and — independently — the cycles between the first MAC of PE
``(0, 0)`` and the last MAC of PE ``(R-1, C-1)``, read off the PEs' control inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from amaranth.sim import Simulator, SimulatorContext

from dynabit.rtl.program import TileProgram, unpack_lanes
from dynabit.rtl.tile import Tile

if TYPE_CHECKING:
    from dynabit.rtl.lane_program import LaneProgram
    from dynabit.rtl.lane_tile import LaneTile


@dataclass
class SimResult:
    """What the tile produced and how long it took."""

    outputs: dict[tuple[int, int, int], list[int]]  # (block, group, row) -> C accumulators
    decisions: dict[tuple[int, int], bool]  # (block, group) -> refined
    compute_cycles: int  # last MAC cycle - first MAC cycle
    fold_cycles: int  # the tile's perf counter (cycles spent in folds)
    latency: int  # cycles from start to done
    reads: dict[str, int] = field(default_factory=dict)  # words read per buffer


class SimulationError(RuntimeError):
    """The simulated tile misbehaved (timeout, read outside a buffer, duplicate output)."""


def simulate(
    prog: TileProgram, vcd: str | Path | None = None, max_cycles: int | None = None
) -> SimResult:
    """Simulate ``prog`` cycle by cycle and return the tile's outputs, decisions and cycles."""
    p = prog.params
    dut = Tile(p)
    limit = max_cycles or 4 * (prog.n_groups * prog.n_blocks * 2 + 2) * (
        p.fold_cycles(prog.k) + p.rows + 4
    )
    mems = {"act": prog.act, "lo": prog.lo, "weights": prog.weights, "params": prog.block_params}
    bench = _Bench(dut, dut.array.pes, mems, p.acc_bits, p.cols, p.dynamic, "tile", p.dynamic)
    return bench.run(prog.k, prog.n_groups, prog.n_blocks, limit, vcd)


def simulate_lanes(prog: LaneProgram, max_cycles: int | None = None) -> SimResult:
    """Simulate a :class:`~dynabit.rtl.lane_program.LaneProgram` on its lane tile.

    The same testbench as :func:`simulate`: buffers answering one cycle late, drained rows,
    decisions, and the cycles between the first MAC of PE ``(0, 0)`` and the last of
    ``(R-1, C-1)``.
    """
    from dynabit.rtl.lane_tile import LaneTile

    p = prog.params
    dut = LaneTile(p)
    limit = max_cycles or 4 * (prog.n_groups * prog.n_blocks * 2 + 2) * (
        p.fold_cycles(prog.k) + p.rows + p.cols + 4
    )
    mems = {"act": prog.act, "weights": prog.weights, "params": prog.block_params}
    bench = _Bench(dut, dut.pes, mems, p.out_bits, p.cols, p.dynamic, "lane tile")
    return bench.run(prog.steps, prog.n_groups, prog.n_blocks, limit)


@dataclass
class _Bench:
    """The testbench of either tile: ``mems`` (``act``, ``weights``, ``params``, and ``lo``
    for a tile with a low-plane buffer) answer the tile's read ports one cycle late (the
    ``lo`` port only with ``lo_port``); drained rows are ``cols`` words of ``out_bits``."""

    dut: Tile | LaneTile
    pes: list[list[object]]
    mems: dict[str, list[int]]
    out_bits: int
    cols: int
    dynamic: bool
    what: str
    lo_port: bool = False

    def run(
        self, k_len: int, n_groups: int, n_blocks: int, limit: int, vcd: str | Path | None = None
    ) -> SimResult:
        """Start the tile on ``k_len`` steps of ``n_groups x n_blocks`` tiles and run it to
        ``done`` (at most ``limit`` cycles)."""
        dut, mems = self.dut, self.mems
        pe_first, pe_last = self.pes[0][0], self.pes[-1][-1]
        res = SimResult(outputs={}, decisions={}, compute_cycles=-1, fold_cycles=-1, latency=-1)
        reads = dict.fromkeys(mems, 0)
        ports = [
            ("act", dut.act_rd_en, dut.act_rd_addr, dut.act_rd_data),
            ("weights", dut.w_rd_en, dut.w_rd_addr, dut.w_rd_data),
            ("params", dut.prm_rd_en, dut.prm_rd_addr, dut.prm_rd_data),
        ]
        if self.lo_port:
            ports.append(("lo", dut.lo_rd_en, dut.lo_rd_addr, dut.lo_rd_data))  # type: ignore[union-attr]

        async def bench(ctx: SimulatorContext) -> None:
            ctx.set(dut.k_len, k_len)
            ctx.set(dut.n_groups, n_groups)
            ctx.set(dut.n_blocks, n_blocks)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            pending: list[tuple[object, int]] = []
            first_mac = last_mac = -1
            for cycle in range(1, limit):
                for sig, word in pending:  # answers to last cycle's reads
                    ctx.set(sig, word)
                pending = []
                for name, en, addr, rdata in ports:
                    if ctx.get(en):
                        a = ctx.get(addr)
                        mem = mems[name]
                        if a >= len(mem):
                            raise SimulationError(f"{name} read at {a} beyond {len(mem)} words")
                        reads[name] += 1
                        pending.append((rdata.as_value(), mem[a]))
                if ctx.get(pe_first.ctl_in.valid) and first_mac < 0:  # type: ignore[attr-defined]
                    first_mac = cycle
                if ctx.get(pe_last.ctl_in.valid):  # type: ignore[attr-defined]
                    last_mac = cycle
                if ctx.get(dut.out_valid):
                    key = (ctx.get(dut.out_block), ctx.get(dut.out_group), ctx.get(dut.out_row))
                    if key in res.outputs:
                        raise SimulationError(f"row {key} drained twice")
                    word = ctx.get(dut.out_data.as_value())
                    res.outputs[key] = unpack_lanes(word, self.out_bits, self.cols)
                if self.dynamic and ctx.get(dut.dec_valid):
                    key = (ctx.get(dut.dec_block), ctx.get(dut.dec_group))
                    if key in res.decisions:
                        raise SimulationError(f"tile {key} decided twice")
                    res.decisions[key] = bool(ctx.get(dut.dec_refine))
                if ctx.get(dut.done):
                    res.latency = cycle
                    res.fold_cycles = ctx.get(dut.perf_cycles)
                    res.compute_cycles = last_mac - first_mac
                    return
                await ctx.tick()
            raise SimulationError(f"{self.what} did not finish within {limit} cycles")

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        if vcd is not None:
            with sim.write_vcd(str(vcd)):
                sim.run()
        else:
            sim.run()
        res.reads = reads
        return res
