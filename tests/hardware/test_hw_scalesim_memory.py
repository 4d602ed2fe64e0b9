"""The ``scalesim`` memory replay: against a line-by-line transcription of SCALE-Sim 3.0.0's
scratchpads, its closed-form cases, and the demand and prefetch orders it is fed."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from dynabit.hardware.mapping import dense_formula
from dynabit.hardware.scalesim import ScaleSimConfig, ScaleSimMemory, TopologyLayer, from_shape
from dynabit.hardware.scalesim.memory import (
    Demands,
    OperandDemands,
    WriteBuffer,
    antidiagonal,
    antidiagonal_order,
    layer_demands,
)
from dynabit.hardware.shapes import network_shapes
from dynabit.hardware.simulator import simulate


def _lines(ops: OperandDemands, lines: int) -> list[list[int]]:
    """Addresses demanded on each line, in lane order (the dense demand matrix's rows)."""
    out: list[list[int]] = [[] for _ in range(lines)]
    addr = ops.addresses(0, ops.slots)
    for q in np.flatnonzero(addr >= 0).tolist():
        out[ops.line_of(q)].append(int(addr[q]))
    return out


class _RefRead:
    """SCALE-Sim 3.0.0's ``read_buffer``: sets of the prefetch order, a sliding window of them."""

    def __init__(self, size: int, bw: int, prefetch: np.ndarray) -> None:
        e = math.ceil(size / 100)
        active = math.ceil(size * 0.5)
        half = size - active
        pf = [int(a) for a in prefetch if a != -1]
        self.sets = [set(pf[i * e : (i + 1) * e]) for i in range(len(pf) // e + 1)]
        n = len(self.sets)
        self.win = min(math.ceil(active / e), n)
        self.step = min(math.ceil(half / e), n - self.win)
        self.start, self.last = 0, -1
        self.lines = math.ceil(half / bw)
        self.misses = 0

    def _hit(self, a: int) -> bool:
        n = len(self.sets)
        return any(a in self.sets[(self.start + i) % n] for i in range(self.win))

    def serve(self, addrs: list[int], cycle: int) -> int:
        offset = 1
        for a in addrs:
            while not self._hit(a):
                self.misses += 1
                self.start = (self.start + self.step) % len(self.sets)
                self.last += self.lines + 1
                p = self.last - (cycle + offset)
                offset += p
                if p > 0:
                    offset += p
        return offset - 1


def _reference(d: Demands, sizes: tuple[int, int, int], bws: tuple[int, int, int]) -> dict:
    """Stall, total cycles, misses and ofmap write-backs, line by line and write by write."""
    rd_if = _RefRead(sizes[0], bws[0], d.ifmap.prefetch)
    rd_f = _RefRead(sizes[1], bws[1], d.filter.prefetch)
    if_lines, f_lines = _lines(d.ifmap, d.lines), _lines(d.filter, d.lines)
    size, bw = sizes[2], bws[2]
    active = math.ceil(size * 0.5)
    per_drain = math.ceil((size - active) / bw)
    free, drain_end, line_fill, trace, drained, written = size, 0, 0, [], 0, 0

    def drain(start: int) -> int:
        nonlocal drained, written, free
        num = min(per_drain, len(trace) - drained)
        data = (num - 1) * bw + trace[drained + num - 1]
        written += data
        free += data
        drained += num
        return start + num - 1

    stall, total = 0, 0
    for i in range(d.lines):
        cycle = i + stall
        w_if = rd_if.serve(if_lines[i], cycle)
        w_f = rd_f.serve(f_lines[i], cycle)
        cur = cycle
        for _ in range(int(d.of_count[i])):
            line_fill += 1
            free -= 1
            if line_fill == bw:
                trace.append(bw)
                line_fill = 0
            if cur < drain_end:
                if free <= 0:
                    cur = drain_end
            elif free < active:
                if line_fill:
                    trace.append(line_fill)
                    line_fill = 0
                drain_end = drain(cur)
        total = max(total, cur)
        stall += max(w_if, w_f, cur - cycle)
    if line_fill:
        trace.append(line_fill)
    while drained < len(trace):
        drain(0)
    return {
        "stall_cycles": stall,
        "total_cycles": total,
        "ofmap_dram_writes": written,
        "ifmap_misses": rd_if.misses,
        "filter_misses": rd_f.misses,
    }


def _random_case(rng: random.Random) -> tuple[TopologyLayer, int, int, str]:
    kh, st = rng.choice([1, 2, 3]), rng.choice([1, 2])
    h = rng.randint(kh, 11)
    layer = TopologyLayer("L", h, h + rng.randint(0, 2), kh, kh, rng.randint(1, 5),
                          rng.randint(1, 20), st, st)  # fmt: skip
    return layer, rng.choice([2, 3, 4, 8]), rng.choice([2, 4, 8]), rng.choice(["os", "ws", "is"])


@pytest.mark.parametrize("seed", range(24))
def test_replay_equals_the_line_by_line_transcription(seed):
    rng = random.Random(seed)
    layer, r, c, df = _random_case(rng)
    sizes = tuple(rng.randint(20, 300) for _ in range(3))
    bws = tuple(rng.randint(1, 6) for _ in range(3))
    d = layer_demands(layer.shape(), r, c, df)
    ours = ScaleSimMemory(*sizes, *bws).run(d)
    ref = _reference(d, sizes, bws)  # type: ignore[arg-type]
    assert {k: getattr(ours, k) for k in ref} == ref


def test_transcription_cases_exercise_misses_and_write_waits():
    # the comparison above is only worth something if the cases stall for all three reasons
    seen = {"ifmap": 0, "filter": 0, "ofmap_wait": 0}
    for seed in range(24):
        rng = random.Random(seed)
        layer, r, c, df = _random_case(rng)
        sizes = tuple(rng.randint(20, 300) for _ in range(3))
        bws = tuple(rng.randint(1, 6) for _ in range(3))
        d = layer_demands(layer.shape(), r, c, df)
        res = ScaleSimMemory(*sizes, *bws).run(d)
        seen["ifmap"] += res.ifmap_misses > 0
        seen["filter"] += res.filter_misses > 0
        no_reads = ScaleSimMemory(10**6, 10**6, sizes[2], 1, 1, bws[2]).run(d)
        seen["ofmap_wait"] += no_reads.stall_cycles > 0
    assert min(seen.values()) >= 2, seen


def _layers(count: int, seed: int) -> list[tuple[TopologyLayer, int, int, str, tuple]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kh, st = rng.choice([1, 2, 3]), rng.choice([1, 2])
        h = rng.randint(kh + 1, 16)
        layer = TopologyLayer("L", h, h, kh, kh, rng.randint(1, 10), rng.randint(1, 24), st, st)
        sizes = tuple(rng.randint(512, 2048) for _ in range(3))
        out.append((layer, rng.choice([2, 4, 8]), rng.choice([2, 4, 8]),
                    rng.choice(["os", "ws", "is"]), sizes))  # fmt: skip
    return out


def test_no_stalls_when_bandwidth_covers_demand():
    stalled_at_low_bw = 0
    for layer, r, c, df, sizes in _layers(30, 1):
        d = layer_demands(layer.shape(), r, c, df)
        # one line per prefetch and per drain: every transfer is ready before it is needed
        wide = ScaleSimMemory(*sizes, *sizes).run(d)
        assert wide.stall_cycles == 0 and wide.total_cycles == d.lines - 1
        stalled_at_low_bw += ScaleSimMemory(*sizes, 1, 1, 1).run(d).stall_cycles > 0
    assert stalled_at_low_bw >= 10  # the same layers do stall when bandwidth is short


def test_nothing_to_fetch_or_drain_means_no_stalls_at_one_word_per_cycle():
    layer = TopologyLayer("L", 9, 9, 3, 3, 4, 8, 1, 1)
    d = layer_demands(layer.shape(), 4, 4, "ws")
    big = 4 * max(d.ifmap_entries, d.filter_entries, int(d.of_count.sum()))
    res = ScaleSimMemory(big, big, big, 1, 1, 1).run(d)
    assert (res.stall_cycles, res.ifmap_misses, res.filter_misses) == (0, 0, 0)
    assert res.total_cycles == d.lines - 1
    assert res.ofmap_dram_writes == int(d.of_count.sum())  # one drain after the last line


@pytest.mark.parametrize("case", range(12))
def test_stalls_never_fall_as_bandwidth_falls(case):
    layer, r, c, df, sizes = _layers(12, 2)[case]
    d = layer_demands(layer.shape(), r, c, df)
    stalls = [
        ScaleSimMemory(*sizes, bw, bw, bw).run(d).stall_cycles for bw in (4096, 64, 16, 4, 2, 1)
    ]
    assert stalls == sorted(stalls)


def test_separate_bandwidths_act_on_their_own_buffer():
    layer = TopologyLayer("L", 14, 14, 3, 3, 8, 16, 1, 1)
    d = layer_demands(layer.shape(), 4, 4, "os")
    base = ScaleSimMemory(600, 600, 600, 8, 8, 8).run(d)
    slow_if = ScaleSimMemory(600, 600, 600, 1, 8, 8).run(d)
    assert base.ifmap_misses == slow_if.ifmap_misses > 0
    assert slow_if.stall_cycles > base.stall_cycles
    assert slow_if.ofmap_dram_writes == base.ofmap_dram_writes


def test_write_backs_count_lines_closed_by_a_drain_as_full():
    # 12-word buffer (6 active), 3-word lines, a drain takes 2 lines. Line 0 writes 7 words:
    # the 7th leaves 5 free (< 6) and starts a drain over [3, 3], closing the partial line [1].
    # Line 1 adds 1 word, line 3 six: its 5th starts a drain over [1, 3], which SCALE-Sim
    # counts as 2 full lines (6 words, 4 of them real); the end drains [3, 1]: 4 words.
    wb = WriteBuffer(12, 3, np.array([7, 1, 0, 6]))
    assert wb.run(4, 0) == 0
    wb.flush_all()
    assert wb.trace == [3, 3, 1, 3, 3, 1]
    assert wb.written == 6 + 6 + 4 == 14 + 2  # two words more than the array wrote


def test_a_full_buffer_during_a_drain_waits_for_its_last_line():
    # 4-word buffer (2 active) of 1-word lines: a drain takes 2 lines. Line 0's 3rd write
    # leaves 1 free and starts a drain (cycles 0..1), which frees its 2 words at once; the 6th
    # write fills the buffer while the drain runs and waits for its last line, cycle 1.
    wb = WriteBuffer(4, 1, np.array([6]))
    stall = wb.run(1, 0, keep_last=True)
    assert (stall, wb.take_wait()) == (0, 1)


def _im2col(layer: TopologyLayer) -> list[int]:
    """Valid ifmap addresses of every (pixel, window tap), by plain loops."""
    (ho, wo), out = layer.ofmap_hw, []
    for oy in range(ho):
        for ox in range(wo):
            for fy in range(layer.filter_h):
                for fx in range(layer.filter_w):
                    y, x = oy * layer.stride_h + fy, ox * layer.stride_w + fx
                    if y < layer.ifmap_h and x < layer.ifmap_w:
                        base = (y * layer.ifmap_w + x) * layer.channels
                        out += range(base, base + layer.channels)
    return out


def test_prefetch_orders_hold_each_operand_entry_once_and_demands_follow_them():
    for layer, r, c, df, _ in _layers(10, 3):
        s = layer.shape()
        d = layer_demands(s, r, c, df)
        hw = ScaleSimConfig("t", r, c, 1, 1, 1, df, 1, True, 1, 1).hardware()
        assert d.lines - 1 == dense_formula(s, hw)
        operands = (
            (d.ifmap, d.ifmap_entries, sorted(_im2col(layer))),
            (d.filter, d.filter_entries, list(range(s.window * s.out_channels))),
        )
        for ops, entries, expected in operands:
            pf = ops.prefetch[ops.prefetch >= 0]
            assert len(pf) == entries and sorted(pf.tolist()) == expected
            demanded = ops.addresses(0, ops.slots)
            # every operand entry is demanded, and nothing else
            assert set(demanded[demanded >= 0].tolist()) == set(expected)


def test_antidiagonal_order_reads_each_diagonal_from_its_bottom_row():
    for rows, cols in ((7, 3), (3, 7), (5, 5), (1, 4), (40, 8)):
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        key = (r + c) * rows + (rows - 1 - r)
        expected = np.argsort(key.ravel(), kind="stable")
        assert np.array_equal(antidiagonal_order(rows, cols), expected)
        mat = np.arange(rows * cols * 2).reshape(rows, 2 * cols)[:, ::2]  # a strided view
        assert np.array_equal(antidiagonal(mat), mat.ravel()[expected])


def test_scalesim_output_size_and_from_shape_keep_pytorch_layers():
    # SCALE-Sim sizes the output ceil((H - R + s) / s): 10 rows, 3-tap filter, stride 2 -> 5
    layer = TopologyLayer("L", 10, 9, 3, 3, 2, 4, 2, 2)
    assert layer.ofmap_hw == (5, 4)
    d = layer_demands(layer.shape(), 4, 4, "os")
    assert d.ifmap_entries < layer.shape().pixels * layer.shape().window  # taps past the map
    # a PyTorch ResNet-18 layer goes out with the rows it reads and keeps its output size
    for s in network_shapes("resnet18"):
        back = from_shape(s)
        assert back.ofmap_hw == s.out_hw
        assert back.ifmap_h <= s.in_hw[0] + 2 * s.padding[0]


def test_simulate_takes_scratchpads_with_their_own_bandwidths():
    layer = TopologyLayer("L", 12, 12, 3, 3, 8, 16, 1, 1)
    conf = ScaleSimConfig("t", 4, 4, 1, 1, 1, "ws", 8, True, 1, 8)
    hw = conf.hardware()
    pads = ScaleSimMemory.from_hw(hw, conf.ifmap_bandwidth, conf.filter_bandwidth)
    res = simulate([layer.shape()], hw=hw, mode="dense", memory=pads)
    same_bw = simulate([layer.shape()], hw=hw, mode="dense", memory="scalesim")
    expected = pads.layer(layer.shape(), hw).stall_cycles
    assert res.stall_cycles[0, 0] == expected > same_bw.stall_cycles[0, 0]
    with pytest.raises(ValueError, match="only with mode 'dense'"):
        simulate([layer.shape()], hw=hw, mode="uniform", memory=pads)


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_filter_relabelled_by_prefetch_position_misses_the_same(df):
    # the fast path addresses filter entries by prefetch position; the hits must not change
    misses = 0
    for seed in range(8):
        rng = random.Random(100 + seed)
        layer, r, c, _ = _random_case(rng)
        sizes = (10**6, rng.randint(20, 200), 10**6)
        pads = ScaleSimMemory(*sizes, 1, rng.randint(1, 4), 1)
        plain = pads.run(layer_demands(layer.shape(), r, c, df, relabel=False))
        fast = pads.run(layer_demands(layer.shape(), r, c, df))
        assert fast == plain
        misses += plain.filter_misses
    assert misses > 0


def test_dot_product_lanes_are_refused():
    hw = ScaleSimConfig("t", 4, 4, 1, 1, 1, "os", 4, True, 4, 4).hardware()
    layer = TopologyLayer("L", 6, 6, 3, 3, 2, 4, 1, 1)
    with pytest.raises(ValueError, match="lanes=4"):
        ScaleSimMemory.from_hw(hw).layer(layer.shape(), hw.model_copy(update={"lanes": 4}))


def test_a_dataflow_scalesim_lacks_is_refused():
    hw = ScaleSimConfig("t", 4, 4, 1, 1, 1, "os", 4, True, 4, 4).hardware()
    layer = TopologyLayer("L", 6, 6, 3, 3, 2, 4, 1, 1)
    other = hw.model_copy(update={"dataflow": "rs"})  # as a registered dataflow not in SCALE-Sim
    with pytest.raises(ValueError, match="dataflows \\('os', 'ws', 'is'\\); got 'rs'"):
        ScaleSimMemory.from_hw(hw).layer(layer.shape(), other)
