"""The ``scalesim`` memory model: SCALE-Sim 3.0.0's double-buffered scratchpads, replayed fast.

SCALE-Sim serves the array's demands line by line (one line = one cycle of the array) from
three buffers in front of DRAM:

* **read buffers** (ifmap, filter): the operand's prefetch order is cut into sets of
  ``ceil(size / 100)`` entries; an active window of ``ceil(size / 2)`` elements' worth of sets
  serves the demands. A demand outside the window moves it on by the prefetch half and
  issues one prefetch of half a buffer at the USER bandwidth, ``ceil(half / bw)`` cycles plus
  one of port latency, chained after the previous prefetch (the first window is filled before
  the layer starts). A demand line waits for the prefetches its misses issued; as in SCALE-Sim
  3.0.0, a positive wait is counted twice and a prefetch that finished early shortens the
  line's wait.
* **write buffer** (ofmap): writes fill it; when more than half is full and no drain runs, the
  buffered lines of ``bw`` words drain (half a buffer, one line per cycle); a write that finds
  it full during a drain waits for the drain's end.

A line's stall is the largest of the three waits and delays every later line. Here the demand
and prefetch orders come from closed-form index arithmetic (the same operand layouts, folds,
skews and anti-diagonal prefetch orders as SCALE-Sim's compute modules), the window hits are
tested in vectorised blocks, and only lines with an event run Python code: the result is
SCALE-Sim's stall count at a small fraction of its run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.shapes import LayerShape

FILTER_OFFSET = 10_000_000


@dataclass(frozen=True)
class Demands:
    """One layer's demands on the three buffers, in SCALE-Sim's line order."""

    lines: int  # demand lines (= compute cycles + 1)
    if_line: np.ndarray  # line of each ifmap read, in service order
    if_addr: np.ndarray
    if_prefetch: np.ndarray  # ifmap prefetch order (-1 = empty slot)
    f_line: np.ndarray
    f_addr: np.ndarray
    f_prefetch: np.ndarray
    of_count: np.ndarray  # ofmap writes per line


def _antidiagonal(mat: np.ndarray) -> np.ndarray:
    """Entries of ``mat`` along anti-diagonals, each from its bottom row up (SCALE-Sim's order)."""
    m, n = mat.shape
    r, c = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    key = (r + c) * m + (m - 1 - r)
    return mat.ravel()[np.argsort(key.ravel(), kind="stable")]


def _stack(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks, axis=0)


def layer_demands(shape: LayerShape, rows: int, cols: int, dataflow: str) -> Demands:
    """Demand and prefetch orders of a dense, unpadded, ungrouped conv layer."""
    if shape.groups != 1 or shape.dilation != (1, 1) or shape.padding != (0, 0):
        raise ValueError(
            f"layer {shape.name!r}: the scalesim memory model takes SCALE-Sim layers "
            "(no padding, groups or dilation; fold padding into the ifmap)"
        )
    wo, kw = shape.out_hw[1], shape.kernel[1]
    ci, wi = shape.in_channels, shape.in_hw[1]
    m, k, n = shape.pixels, shape.window, shape.out_channels
    px = np.arange(m)
    orow, ocol = px // wo * shape.stride[0], px % wo * shape.stride[1]
    kk = np.arange(k)
    krow, rem = kk // (kw * ci), kk % (kw * ci)
    kcol, kch = rem // ci, rem % ci
    ifmap = ((orow[:, None] + krow[None, :]) * wi + ocol[:, None] + kcol[None, :]) * ci + kch
    filt = np.arange(n)[None, :] * k + kk[:, None] + FILTER_OFFSET  # (K, N)
    r, c = rows, cols

    def pad(a: np.ndarray, nr: int, nc: int) -> np.ndarray:
        out = np.full((nr, nc), -1, dtype=np.int64)
        out[: a.shape[0], : a.shape[1]] = a
        return out

    sr, sc, t = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[dataflow]
    rf, cf = -(-sr // r), -(-sc // c)
    if dataflow == "os":
        length = t + r + c - 2
        if_pf = _antidiagonal(_stack([pad(ifmap[i * r : (i + 1) * r].T, t, r) for i in range(rf)]))
        f_pf = _antidiagonal(_stack([pad(filt[:, j * c : (j + 1) * c], t, c) for j in range(cf)]))
    elif dataflow == "ws":
        length = 2 * r + c + t - 2
        if_pf = _antidiagonal(_stack([pad(ifmap[:, i * r : (i + 1) * r], t, r) for i in range(rf)]))
        f_pf = _stack([pad(filt[:, j * c : (j + 1) * c], k, c) for j in range(cf)]).ravel()
    else:
        length = 2 * r + c + t - 2
        if_pf = _stack([pad(ifmap[j * c : (j + 1) * c].T, k, c) for j in range(cf)]).ravel()
        f_pf = _antidiagonal(_stack([pad(filt[i * r : (i + 1) * r].T, n, r) for i in range(rf)]))

    l_idx = np.arange(length)[:, None]
    if_lines, if_addrs, f_lines, f_addrs = [], [], [], []
    of_count = np.zeros(cf * rf * length, dtype=np.int64)
    fold = 0
    for j in range(cf):
        for i in range(rf):
            base = fold * length
            if dataflow == "os":
                cc = np.arange(r)[None, :]
                tt = l_idx - cc
                p = i * r + cc
                ok = (tt >= 0) & (tt < k) & (p < m)
                ia = np.where(ok, ifmap[np.minimum(p, m - 1), np.clip(tt, 0, k - 1)], -1)
                cc = np.arange(c)[None, :]
                tt = l_idx - cc
                ch = j * c + cc
                ok = (tt >= 0) & (tt < k) & (ch < n)
                fa = np.where(ok, filt[np.clip(tt, 0, k - 1), np.minimum(ch, n - 1)], -1)
                rr = l_idx - cc - (k - 1)
                ow = (rr >= 0) & (rr < r) & (i * r + r - 1 - rr < m) & (ch < n)
            elif dataflow == "ws":
                cc = np.arange(r)[None, :]
                tt = l_idx - cc - r
                win = i * r + cc
                ok = (tt >= 0) & (tt < m) & (win < k)
                ia = np.where(ok, ifmap[np.clip(tt, 0, m - 1), np.minimum(win, k - 1)], -1)
                cc = np.arange(c)[None, :]
                win = i * r + r - 1 - l_idx
                ch = j * c + cc
                ok = (l_idx < r) & (win >= 0) & (win < k) & (ch < n)
                fa = np.where(ok, filt[np.clip(win, 0, k - 1), np.minimum(ch, n - 1)], -1)
                tt = l_idx - cc - (2 * r - 1)
                ow = (tt >= 0) & (tt < m) & (ch < n)
            else:
                cc = np.arange(c)[None, :]
                win = i * r + r - 1 - l_idx
                p = j * c + cc
                ok = (l_idx < r) & (win >= 0) & (win < k) & (p < m)
                ia = np.where(ok, ifmap[np.minimum(p, m - 1), np.clip(win, 0, k - 1)], -1)
                cr = np.arange(r)[None, :]
                tt = l_idx - cr - r
                win = i * r + cr
                ok = (tt >= 0) & (tt < n) & (win < k)
                fa = np.where(ok, filt[np.minimum(win, k - 1), np.clip(tt, 0, n - 1)], -1)
                tt = l_idx - cc - (2 * r - 1)
                ow = (tt >= 0) & (tt < n) & (p < m)
            for a, lines_out, addrs_out in ((ia, if_lines, if_addrs), (fa, f_lines, f_addrs)):
                li, col = np.nonzero(a >= 0)
                lines_out.append(li + base)
                addrs_out.append(a[li, col])
            of_count[base : base + length] = ow.sum(axis=1)
            fold += 1
    return Demands(
        lines=cf * rf * length,
        if_line=np.concatenate(if_lines),
        if_addr=np.concatenate(if_addrs),
        if_prefetch=if_pf,
        f_line=np.concatenate(f_lines),
        f_addr=np.concatenate(f_addrs),
        f_prefetch=f_pf,
        of_count=of_count,
    )


@dataclass(frozen=True)
class MemoryResult:
    """One layer through the scratchpads."""

    stall_cycles: int
    total_cycles: int  # last ofmap write cycle (SCALE-Sim's "Total Cycles")
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int
    ifmap_misses: int
    filter_misses: int


class ReadBuffer:
    """SCALE-Sim 3.0.0's double-buffered read scratchpad: which demands miss its window."""

    def __init__(self, size_words: int, bandwidth: int) -> None:
        self.size = size_words
        self.bw = bandwidth
        self.active = math.ceil(size_words * 0.5)
        self.half = size_words - self.active
        self.set_size = math.ceil(size_words / 100)
        self.prefetch_cycles = math.ceil(self.half / bandwidth) + 1  # lines + port latency

    def misses(self, prefetch: np.ndarray, addr: np.ndarray, line: np.ndarray) -> np.ndarray:
        """Line of every miss (one entry per prefetch it issues), in order."""
        pf = prefetch[prefetch >= 0]
        e = self.set_size
        n_sets = len(pf) // e + 1
        win = min(math.ceil(self.active / e), n_sets)
        step = min(math.ceil(self.half / e), n_sets - win)
        if win >= n_sets or step == 0 or len(addr) == 0:
            return np.zeros(0, dtype=np.int64)
        uniq, inv = np.unique(pf, return_inverse=True)
        key = np.unique(inv.astype(np.int64) * n_sets + np.arange(len(pf)) // e)
        occ_u, occ_s = key // n_sets, key % n_sets
        indptr = np.searchsorted(occ_u, np.arange(len(uniq) + 1))
        uid = np.searchsorted(uniq, addr)
        if np.any(uid >= len(uniq)) or np.any(uniq[np.minimum(uid, len(uniq) - 1)] != addr):
            raise ValueError("a demanded address is missing from the prefetch order")
        lo_all, cnt_all = indptr[uid], indptr[uid + 1] - indptr[uid]
        start, pos, block, total = 0, 0, 1024, len(addr)
        out: list[int] = []
        stuck = 0
        while pos < total:
            lo, cnt = lo_all[pos : pos + block], cnt_all[pos : pos + block]
            firsts = np.cumsum(cnt) - cnt
            flat = np.arange(int(cnt.sum())) - np.repeat(firsts - lo, cnt)
            hit = np.logical_or.reduceat((occ_s[flat] - start) % n_sets < win, firsts)
            miss = np.flatnonzero(~hit)
            if miss.size == 0:
                pos += len(lo)
                block = min(block * 2, 1 << 17)
                stuck = 0
                continue
            pos += int(miss[0])
            out.append(int(line[pos]))
            start = (start + step) % n_sets
            block = 1024
            stuck += 1
            if stuck > n_sets + 1:
                raise RuntimeError("read buffer window never covers a demanded address")
        return np.asarray(out, dtype=np.int64)

    def dram_reads(self, prefetch_len: int, misses: int) -> int:
        """Words fetched: the first window, then one half-buffer prefetch per miss."""
        rows = math.ceil(prefetch_len / self.bw)
        return (
            min(math.ceil(self.active / self.bw), rows) * self.bw
            + misses * math.ceil(self.half / self.bw) * self.bw
        )


class ScaleSimMemory:
    """SCALE-Sim 3.0.0's three double-buffered scratchpads at USER bandwidth (words = bytes)."""

    def __init__(
        self,
        ifmap_words: int,
        filter_words: int,
        ofmap_words: int,
        ifmap_bw: int,
        filter_bw: int,
        ofmap_bw: int,
    ) -> None:
        self.ifmap = ReadBuffer(ifmap_words, ifmap_bw)
        self.filter = ReadBuffer(filter_words, filter_bw)
        self.of_size = ofmap_words
        self.of_active = math.ceil(ofmap_words * 0.5)
        self.of_drain = ofmap_words - self.of_active
        self.of_bw = ofmap_bw

    @classmethod
    def from_hw(cls, hw: HardwareConfig) -> ScaleSimMemory:
        """Buffers of ``hw`` in bytes, every operand at ``dram_words_per_cycle`` words."""
        bw = max(1, round(hw.dram_words_per_cycle * hw.word_bits / 8))
        size = {b: hw.buffer_bits(b) // 8 for b in ("input", "weight", "output")}
        return cls(size["input"], size["weight"], size["output"], bw, bw, bw)

    def run(self, d: Demands) -> MemoryResult:
        """Serve one layer's demands; stalls as SCALE-Sim 3.0.0 counts them."""
        if_miss = self.ifmap.misses(d.if_prefetch, d.if_addr, d.if_line)
        f_miss = self.filter.misses(d.f_prefetch, d.f_addr, d.f_line)
        lines = np.union1d(np.union1d(if_miss, f_miss), np.flatnonzero(d.of_count))
        if_at: dict[int, list[int]] = {}
        for k, ln in enumerate(if_miss.tolist(), start=1):
            if_at.setdefault(ln, []).append(k)
        f_at: dict[int, list[int]] = {}
        for k, ln in enumerate(f_miss.tolist(), start=1):
            f_at.setdefault(ln, []).append(k)
        p_if, p_f = self.ifmap.prefetch_cycles, self.filter.prefetch_cycles
        bw, active, drain = self.of_bw, self.of_active, self.of_drain
        lines_per_drain = math.ceil(drain / bw)
        free, drain_end = self.of_size, 0
        trace: list[int] = []  # fill of each buffered ofmap line
        drain_pos, fill, written = 0, 0, 0
        stall = 0
        last = -(10**18)
        counts = d.of_count

        def store(nw: int) -> None:
            nonlocal fill
            fill += nw
            if fill >= bw:
                trace.extend([bw] * (fill // bw))
                fill %= bw

        def start_drain(cur: int) -> int:
            nonlocal fill, free, drain_pos, written
            if fill:
                trace.append(fill)
                fill = 0
            num = min(lines_per_drain, len(trace) - drain_pos)
            data = (num - 1) * bw + trace[drain_pos + num - 1]
            written += data
            free += data
            drain_pos += num
            return cur + num

        for ln in lines.tolist():
            cycle = ln + stall
            worst = 0
            for at, period in ((if_at, p_if), (f_at, p_f)):
                ks = at.get(ln)
                if ks:
                    off = 1
                    for k in ks:
                        p = -1 + k * period - (cycle + off)
                        off += p
                        if p > 0:
                            off += p
                    worst = max(worst, off - 1)
            w = int(counts[ln])
            cur = cycle
            while w > 0:
                if cur < drain_end:
                    j = max(free, 1)
                    if j > w:
                        free -= w
                        store(w)
                        break
                    free -= j
                    store(j)
                    w -= j
                    cur = drain_end
                else:
                    j = max(free - active + 1, 1)
                    if j > w:
                        free -= w
                        store(w)
                        break
                    free -= j
                    store(j)
                    w -= j
                    drain_end = start_drain(cur)
            worst = max(worst, cur - cycle)
            last = max(last, cur)
            stall += worst
        if d.lines - 1 not in set(lines[-1:].tolist()):
            last = max(last, d.lines - 1 + stall)
        if fill:
            trace.append(fill)
        while drain_pos < len(trace):
            start_drain(0)
        return MemoryResult(
            stall_cycles=int(stall),
            total_cycles=int(last),
            ifmap_dram_reads=self.ifmap.dram_reads(len(d.if_prefetch), len(if_miss)),
            filter_dram_reads=self.filter.dram_reads(len(d.f_prefetch), len(f_miss)),
            ofmap_dram_writes=int(written),
            ifmap_misses=len(if_miss),
            filter_misses=len(f_miss),
        )

    def layer(self, shape: LayerShape, hw: HardwareConfig) -> MemoryResult:
        """Demands of ``shape`` on ``hw``'s array, served by these buffers."""
        return self.run(layer_demands(shape, hw.rows, hw.cols, hw.dataflow))


def scalesim_stalls(shape: LayerShape, hw: HardwareConfig) -> int:
    """Stall cycles of one dense layer in SCALE-Sim 3.0.0's memory model on ``hw``."""
    return ScaleSimMemory.from_hw(hw).layer(shape, hw).stall_cycles
