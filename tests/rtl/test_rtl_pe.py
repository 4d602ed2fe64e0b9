"""The PE on its own: shift of the high chunk, restart, two banks, comparator, wrap-around."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from dynabit.rtl import PE, TileParams


def wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def run_pe(p: TileParams, tokens: list[dict], thr: int = 0) -> list[dict]:
    """Feed one token per cycle; return the PE's registers after each."""
    dut = PE(p)
    seen: list[dict] = []

    async def bench(ctx) -> None:
        if p.dynamic:
            ctx.set(dut.thr, thr)
        for tok in tokens:
            ctx.set(dut.a_in, tok.get("a", 0))
            ctx.set(dut.w_in, tok.get("w", 0))
            ctl = {"valid": 1, "restart": 0} | {k: v for k, v in tok.items() if k not in "aw"}
            if not p.dynamic:
                ctl = {k: ctl[k] for k in ("valid", "restart")}
            ctx.set(dut.ctl_in, ctl)
            await ctx.tick()
            if p.dynamic:
                seen.append(
                    {
                        "acc0": ctx.get(dut.acc0),
                        "acc1": ctx.get(dut.acc1),
                        "flag": ctx.get(dut.flag),
                        "a_out": ctx.get(dut.a_out),
                        "w_out": ctx.get(dut.w_out),
                    }
                )
            else:
                seen.append({"acc": ctx.get(dut.acc)})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_high_then_low_pass_into_one_bank_equals_full_product() -> None:
    p = TileParams(2, 2)
    # q = 0xB7 = 183 -> hi 11, lo 7; w = -93
    toks = [
        {"a": 11, "w": -93, "hi": 1, "restart": 1, "bank": 0},
        {"a": 7, "w": -93, "hi": 0, "bank": 0},
    ]
    out = run_pe(p, toks)
    assert out[0]["acc0"] == -93 * (11 << 4)
    assert out[1]["acc0"] == -93 * 183
    assert out[1]["a_out"] == 7 and out[1]["w_out"] == -93


def test_banks_are_independent_and_restart_clears_only_its_bank() -> None:
    p = TileParams(2, 2)
    toks = [
        {"a": 3, "w": 5, "hi": 1, "restart": 1, "bank": 0},  # bank0 = 240
        {"a": 2, "w": 7, "hi": 1, "restart": 1, "bank": 1},  # bank1 = 224
        {"a": 9, "w": 5, "hi": 0, "bank": 0},  # bank0 += 45
        {"a": 1, "w": 1, "hi": 1, "restart": 1, "bank": 0},  # bank0 restarts: 16
        {"a": 4, "w": 1, "valid": 0, "bank": 1},  # invalid: nothing changes
    ]
    out = run_pe(p, toks)
    assert [o["acc0"] for o in out] == [240, 240, 285, 16, 16]
    assert [o["acc1"] for o in out] == [0, 224, 224, 224, 224]


@pytest.mark.parametrize("thr, expect", [(319, 1), (320, 0), (-(10**6), 1)])
def test_comparator_registers_sum_above_threshold_on_last_high_element(thr, expect) -> None:
    p = TileParams(2, 2)
    toks = [
        {"a": 1, "w": 10, "hi": 1, "restart": 1, "bank": 1},  # 10 * (1 << 4) = 160
        {"a": 2, "w": 5, "hi": 1, "cmp": 1, "bank": 1},  # + 5 * (2 << 4) = 320
    ]
    out = run_pe(p, toks, thr=thr)
    assert out[1]["acc1"] == 320
    assert out[0]["flag"] == 0  # only the cmp element updates the flag
    assert out[1]["flag"] == expect


def test_signed_high_chunk_and_unsigned_low_chunk() -> None:
    p = TileParams(2, 2, act_signed=True)
    q = -77  # hi = floor(-77 / 16) = -5, lo = 3
    toks = [
        {"a": -5, "w": 101, "hi": 1, "restart": 1},
        {"a": 3, "w": 101, "hi": 0},
    ]
    assert run_pe(p, toks)[1]["acc0"] == 101 * q


def test_accumulator_wraps_like_twos_complement() -> None:
    p = TileParams(2, 2, acc_bits=12)
    toks = [{"a": 15, "w": 127, "hi": 1, "restart": 1}] + [{"a": 15, "w": 127, "hi": 1}] * 3
    out = run_pe(p, toks)
    assert out[-1]["acc0"] == wrap(4 * 127 * 15 * 16, 12)


def test_uniform_pe_multiplies_whole_code_without_shift() -> None:
    p = TileParams(2, 2).uniform()
    toks = [{"a": 200, "w": -7, "restart": 1}, {"a": 255, "w": 127}]
    out = run_pe(p, toks)
    assert [o["acc"] for o in out] == [-1400, -1400 + 255 * 127]
