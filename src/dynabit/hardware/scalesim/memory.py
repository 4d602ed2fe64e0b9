"""The ``scalesim`` memory model: SCALE-Sim 3.0.0's double-buffered scratchpads, replayed fast.

SCALE-Sim serves the array's demands line by line (one line = one cycle of the array) from
three buffers in front of DRAM:

* **read buffers** (ifmap, filter): the operand's prefetch order is cut into sets of
  ``ceil(size / 100)`` entries; an active window of ``ceil(size / 2)`` elements' worth of sets
  serves the demands. A demand outside the window moves it on by the prefetch half and
  issues one prefetch of half a buffer at the buffer's bandwidth, ``ceil(half / bw)`` cycles
  plus one of port latency, chained after the previous prefetch (the first window is filled
  before the layer starts). A demand line waits for the prefetches its misses issued; as in
  SCALE-Sim 3.0.0, a positive wait is counted twice and a prefetch that finished early
  shortens the line's wait.
* **write buffer** (ofmap): writes fill it; when more than half is full and no drain runs, the
  buffered lines of ``bw`` words drain (half a buffer, one line per cycle from the write that
  started it); a write that finds it full during a drain waits for the drain's last line.

A line's stall is the largest of the three waits and delays every later line.

How it is replayed without SCALE-Sim's per-address loop: the demand and prefetch orders come
from index arithmetic (the same operand layouts, folds, skews and anti-diagonal prefetch orders
as SCALE-Sim's compute modules; one pattern per fold, gathered for all folds at once). A read
buffer keeps, per address, the latest window set holding it, so a demand hits exactly when
that set is not behind the window start: one gather per demand, and a table update of half a
buffer per miss. The write buffer is event-driven: its drains and waits are found by searching
the prefix sums of the writes per line, so only misses, drains and waits run Python code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.shapes import LayerShape

ADDR = np.int32  # addresses and set indices: half the memory traffic of int64


def _diagonals(rows: int, cols: int, d0: int, d1: int) -> np.ndarray:
    """Flat indices of anti-diagonals ``d0 .. d1 - 1`` of a ``rows x cols`` matrix, each from
    its bottom row up (column ascending)."""
    d = np.arange(d0, d1)[:, None]
    c = np.arange(cols)[None, :]
    r = d - c
    return (r * cols + c)[(r >= 0) & (r < rows)]


def antidiagonal_order(rows: int, cols: int) -> np.ndarray:
    """Flat indices of a ``rows x cols`` matrix along anti-diagonals, each from its bottom row up
    (SCALE-Sim's prefetch order for skewed operands), in closed form: no sort."""
    return _diagonals(rows, cols, 0, rows + cols - 1)


def antidiagonal(mat: np.ndarray) -> np.ndarray:
    """``mat``'s entries in :func:`antidiagonal_order`. A tall matrix's full diagonals ``d``
    (``cols - 1 <= d < rows``) sit at ``d * cols - c * (cols - 1)``: a strided view reads them
    without index arrays."""
    rows, cols = mat.shape
    flat = np.ascontiguousarray(mat).ravel()
    if rows < cols or cols < 2:
        return flat[antidiagonal_order(rows, cols)]
    isz = flat.itemsize
    full = np.lib.stride_tricks.as_strided(
        flat[(cols - 1) * cols :],
        shape=(rows - cols + 1, cols),
        strides=(cols * isz, -(cols - 1) * isz),
    )
    head = flat[_diagonals(rows, cols, 0, cols - 1)]
    tail = flat[_diagonals(rows, cols, rows, rows + cols - 1)]
    return np.concatenate([head, full.ravel(), tail])


def antidiagonal_put(rows: int, cols: int, values: np.ndarray) -> np.ndarray:
    """The ``rows x cols`` matrix whose :func:`antidiagonal` is ``values`` (its inverse)."""
    out = np.empty(rows * cols, dtype=values.dtype)
    if rows < cols or cols < 2:
        out[antidiagonal_order(rows, cols)] = values
        return out.reshape(rows, cols)
    head = _diagonals(rows, cols, 0, cols - 1)
    tail = _diagonals(rows, cols, rows, rows + cols - 1)
    isz = out.itemsize
    full = np.lib.stride_tricks.as_strided(
        out[(cols - 1) * cols :],
        shape=(rows - cols + 1, cols),
        strides=(cols * isz, -(cols - 1) * isz),
    )
    out[head] = values[: len(head)]
    full[...] = values[len(head) : len(values) - len(tail)].reshape(full.shape)
    out[tail] = values[len(values) - len(tail) :]
    return out.reshape(rows, cols)


def _take(mat: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """``mat[f].ravel()[slots]`` for every fold ``f`` (axis 0), C-contiguous."""
    return np.take(mat.reshape(mat.shape[0], -1), slots, axis=1)


def _ranks(valid_in_order: np.ndarray) -> np.ndarray:
    """Position of each prefetch slot among the valid ones (-1 for empty slots)."""
    ranks = np.cumsum(valid_in_order, dtype=ADDR) - 1
    ranks[~valid_in_order] = -1
    return ranks


def _ifmap_matrix(shape: LayerShape, pad_rows: int, pad_cols: int = 0) -> np.ndarray:
    """SCALE-Sim's ``M x K`` ifmap operand, -1 where a window reaches past the map, padded with
    -1 to ``pad_rows`` rows and ``pad_cols`` columns."""
    h, w = shape.in_hw
    wo, kw = shape.out_hw[1], shape.kernel[1]
    ci = shape.in_channels
    px = np.arange(shape.pixels)
    orow, ocol = px // wo * shape.stride[0], px % wo * shape.stride[1]
    kk = np.arange(shape.window)
    krow, rem = kk // (kw * ci), kk % (kw * ci)
    kcol, kch = rem // ci, rem % ci
    base = ((orow * w + ocol) * ci).astype(ADDR)
    off = ((krow * w + kcol) * ci + kch).astype(ADDR)
    m, k = shape.pixels, shape.window
    out = np.full((max(pad_rows, m), max(pad_cols, k)), -1, dtype=ADDR)
    np.add(base[:, None], off[None, :], out=out[:m, :k])
    if orow[-1] + krow[-1] >= h or ocol.max() + kcol[-1] >= w:  # SCALE-Sim's ceil output size
        bad = ((orow[:, None] + krow[None, :]) >= h) | ((ocol[:, None] + kcol[None, :]) >= w)
        out[:m, :k][bad] = -1
    return out


def _ifmap_entries(shape: LayerShape) -> int:
    """Valid entries of the ifmap operand (taps inside the map), without building it."""
    cnt = []
    for o, k, s, size in zip(shape.out_hw, shape.kernel, shape.stride, shape.in_hw, strict=True):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :]
        cnt.append(int((pos < size).sum()))
    return cnt[0] * cnt[1] * shape.in_channels


def _filter_matrix(k: int, n: int, pad_rows: int, pad_cols: int) -> np.ndarray:
    """SCALE-Sim's ``K x N`` filter operand (filter-major addresses), padded with -1."""
    out = np.full((max(pad_rows, k), max(pad_cols, n)), -1, dtype=ADDR)
    out[:k, :n] = np.arange(k * n, dtype=ADDR).reshape(n, k).T
    return out


@dataclass(frozen=True)
class OperandDemands:
    """A read operand's prefetch order and demands.

    Every fold repeats one pattern of ``P`` demand slots (line-major, lanes in order);
    ``table[fold_row[f]]`` holds fold ``f``'s address in each slot (-1: none), so the demand at
    flat position ``q`` is slot ``q % P`` of fold ``q // P``. ``ranked``: an operand whose
    prefetch order holds each entry once (the filter) is relabelled by position in that order,
    so an address's set is ``address // set_size`` and the prefetch order is ``0, 1, 2, ...``.
    """

    prefetch: np.ndarray  # prefetch order (-1 = empty slot)
    table: np.ndarray  # (distinct folds, P), C order (a fold's slots contiguous)
    fold_row: np.ndarray  # (folds,) row of ``table`` for each fold
    slot_line: np.ndarray  # (P,) line of each slot within its fold
    length: int  # lines per fold
    ranked: bool = False  # addresses are positions in the prefetch order (each entry once)

    def __post_init__(self) -> None:
        # fancy indexing leaves the fold axis innermost; scans read a fold's slots in a row
        object.__setattr__(self, "table", np.ascontiguousarray(self.table))

    @property
    def slots(self) -> int:
        """Demand slots in the whole layer."""
        return len(self.fold_row) * len(self.slot_line)

    def addresses(self, q0: int, q1: int) -> np.ndarray:
        """Addresses at flat positions ``q0 .. q1 - 1`` (-1 for empty slots)."""
        p = len(self.slot_line)
        f0, f1 = q0 // p, -(-q1 // p)
        rows, t = self.fold_row, self.table
        if f1 - f0 == 1:  # inside one fold: a view, however long the fold's pattern
            return t[rows[f0], q0 - f0 * p : q1 - f0 * p]
        first, last = t[rows[f0], q0 - f0 * p :], t[rows[f1 - 1], : q1 - (f1 - 1) * p]
        return np.concatenate([first, t[rows[f0 + 1 : f1 - 1]].ravel(), last])

    def line_of(self, q: int) -> int:
        """Demand line of flat position ``q``."""
        p = len(self.slot_line)
        return q // p * self.length + int(self.slot_line[q % p])


class Demands:
    """One layer's demands on the three buffers, in SCALE-Sim's line order (built on first use).

    Addresses are operand-relative (the ifmap's ``(row * W + col) * C + ch``; the filter's
    ``filter * K + window``, or with ``relabel`` its position in the prefetch order); SCALE-Sim's
    offsets only keep the operands apart. One subclass per dataflow holds its operand layouts,
    as SCALE-Sim keeps one compute module per dataflow; :func:`layer_demands` picks it.
    """

    dataflow: str

    def __init__(self, shape: LayerShape, rows: int, cols: int, relabel: bool = True) -> None:
        if shape.groups != 1 or shape.dilation != (1, 1) or shape.padding != (0, 0):
            raise ValueError(
                f"layer {shape.name!r}: the scalesim memory model takes SCALE-Sim layers "
                "(no padding, groups or dilation; fold padding into the ifmap)"
            )
        self.shape, self.r, self.c = shape, rows, cols
        self.relabel = relabel  # filter addresses as prefetch positions (same hits, faster)
        self.m, self.k, self.n = shape.pixels, shape.window, shape.out_channels
        self.sr, self.sc, self.t = self._spatial()
        self.rf, self.cf = -(-self.sr // rows), -(-self.sc // cols)
        self.length = self.t + self._fill()
        self.lines = self.rf * self.cf * self.length  # demand lines (= compute cycles + 1)
        self.ifmap_entries = _ifmap_entries(shape)  # addresses in each prefetch order
        self.filter_entries = self.k * self.n
        # slots of each prefetch matrix, empty ones included (SCALE-Sim's DRAM line count)
        self.ifmap_slots, self.filter_slots = self._slots()

    def _spatial(self) -> tuple[int, int, int]:
        """The dimensions on the array's rows and columns, and the one along time."""
        raise NotImplementedError

    def _fill(self) -> int:
        """Lines of a fold besides its time extent (skew in and out)."""
        raise NotImplementedError

    def _slots(self) -> tuple[int, int]:
        """Slots of the ifmap and filter prefetch matrices."""
        raise NotImplementedError

    def _ofmap_key(self, ru: int, cu: int) -> tuple[int, int]:
        """Folds with the same key write the ofmap in the same pattern."""
        raise NotImplementedError

    def _ofmap_written(self, ll: np.ndarray, q: np.ndarray, ru: int, cu: int) -> np.ndarray:
        """Whether column ``q`` writes an ofmap word at line ``ll`` of a fold using ``ru`` rows
        and ``cu`` columns."""
        raise NotImplementedError

    @property
    def ifmap(self) -> OperandDemands:
        """The ifmap operand's prefetch order and demands."""
        raise NotImplementedError

    @property
    def filter(self) -> OperandDemands:
        """The filter operand's prefetch order and demands."""
        raise NotImplementedError

    @cached_property
    def of_count(self) -> np.ndarray:
        """Ofmap writes per line: one table per kind of fold."""
        r, c = self.r, self.c
        ll = np.arange(self.length)[:, None]
        q = np.arange(c)[None, :]
        out = np.empty((self.cf, self.rf, self.length), dtype=np.int64)
        tables: dict[tuple[int, int], np.ndarray] = {}
        for j in range(self.cf):
            for i in range(self.rf):
                ru, cu = min(r, self.sr - i * r), min(c, self.sc - j * c)
                key = self._ofmap_key(ru, cu)
                if key not in tables:
                    tables[key] = self._ofmap_written(ll, q, ru, cu).sum(axis=1)
                out[j, i] = tables[key]
        return out.ravel()

    def _folds(self, by: str) -> np.ndarray:
        """Table row of each fold (column folds outer): by row fold, column fold or both."""
        f = np.arange(self.rf * self.cf)
        return {"i": f % self.rf, "j": f // self.rf, "ij": f}[by]

    def _pattern(self, lanes: int, valid) -> tuple[np.ndarray, np.ndarray]:
        """(line, lane) of every demand slot of one fold, line-major, where ``valid(l, lane)``."""
        return np.nonzero(valid(np.arange(self.length)[:, None], np.arange(lanes)[None, :]))

    def _rank_order(self, ok: np.ndarray, diagonal: bool) -> np.ndarray:
        """Prefetch positions in prefetch order (-1 on empty slots) of a stack whose slots
        ``ok`` hold a filter entry; a stack without empty slots is ``0, 1, 2, ...``."""
        if ok.all():
            return np.arange(ok.size, dtype=ADDR)
        return _ranks(antidiagonal(ok) if diagonal else ok.ravel())

    def _operand(self, st: np.ndarray, diagonal: bool, table: np.ndarray, by: str, ln):
        """The filter's ``OperandDemands``: prefetched from ``st`` by anti-diagonals or rows;
        ranked, its prefetch order is ``0 .. entries - 1``."""
        if self.relabel:
            pf = np.arange(self.filter_entries, dtype=ADDR)
        else:
            pf = antidiagonal(st) if diagonal else st.ravel()
        return OperandDemands(pf, table, self._folds(by), ln, self.length, self.relabel)


class OutputStationaryDemands(Demands):
    """Pixels on rows, filters on columns, the window streamed along time."""

    dataflow = "os"

    def _spatial(self) -> tuple[int, int, int]:
        return self.m, self.n, self.k

    def _fill(self) -> int:
        return self.r + self.c - 2

    def _slots(self) -> tuple[int, int]:
        return self.rf * self.k * self.r, self.cf * self.k * self.c

    def _ofmap_key(self, ru: int, cu: int) -> tuple[int, int]:
        return ru, cu

    def _ofmap_written(self, ll: np.ndarray, q: np.ndarray, ru: int, cu: int) -> np.ndarray:
        rr = ll - q - (self.k - 1)
        return (rr >= 0) & (rr < self.r) & (self.r - 1 - rr < ru) & (q < cu)

    @cached_property
    def ifmap(self) -> OperandDemands:
        r, k, rf = self.r, self.k, self.rf
        # fold i reads pixels i*r.., the window along time
        mat = _ifmap_matrix(self.shape, rf * r).reshape(rf, r, k)  # [i, lane, tap]
        pf = antidiagonal(mat.transpose(0, 2, 1).reshape(rf * k, r))
        ln, q = self._pattern(r, lambda l, q: (l - q >= 0) & (l - q < k))
        return OperandDemands(pf, _take(mat, q * k + ln - q), self._folds("i"), ln, self.length)

    @cached_property
    def filter(self) -> OperandDemands:
        c, n, k, cf = self.c, self.n, self.k, self.cf
        if self.relabel:  # [j, tap, lane] stacked; prefetched by anti-diagonals
            ok = np.arange(cf)[:, None, None] * c + np.arange(c)[None, None, :] < n
            ok = np.broadcast_to(ok, (cf, k, c)).reshape(cf * k, c)
            st = antidiagonal_put(cf * k, c, self._rank_order(ok, True))
        else:
            st = _filter_matrix(k, n, k, cf * c).reshape(k, cf, c).transpose(1, 0, 2)
            st = st.reshape(cf * k, c)
        mat = st.reshape(cf, k, c)
        ln, q = self._pattern(c, lambda l, q: (l - q >= 0) & (l - q < k))
        return self._operand(st, True, _take(mat, (ln - q) * c + q), "j", ln)


class _StationaryDemands(Demands):
    """One operand loaded into the array first (bottom row first), then held while the other
    streams along time; the ofmap leaves after the load and the skew."""

    def _fill(self) -> int:
        return 2 * self.r + self.c - 2

    def _ofmap_key(self, ru: int, cu: int) -> tuple[int, int]:
        return 0, cu

    def _ofmap_written(self, ll: np.ndarray, q: np.ndarray, ru: int, cu: int) -> np.ndarray:
        tt = ll - q - (2 * self.r - 1)
        return (tt >= 0) & (tt < self.t) & (q < cu)


class WeightStationaryDemands(_StationaryDemands):
    """The window on rows, filters on columns, pixels streamed along time."""

    dataflow = "ws"

    def _spatial(self) -> tuple[int, int, int]:
        return self.k, self.n, self.m

    def _slots(self) -> tuple[int, int]:
        return self.rf * self.m * self.r, self.cf * self.k * self.c

    @cached_property
    def ifmap(self) -> OperandDemands:
        r, m, rf = self.r, self.m, self.rf
        mat = _ifmap_matrix(self.shape, m, rf * r).reshape(m, rf, r)  # [pixel, i, lane]
        pf = antidiagonal(mat.transpose(1, 0, 2).reshape(rf * m, r))
        ln, q = self._pattern(r, lambda l, q: (l - q - r >= 0) & (l - q - r < m))
        table = _take(mat.transpose(1, 0, 2), (ln - q - r) * r + q)
        return OperandDemands(pf, table, self._folds("i"), ln, self.length)

    @cached_property
    def filter(self) -> OperandDemands:
        r, c, n, k, rf, cf = self.r, self.c, self.n, self.k, self.rf, self.cf
        if self.relabel:  # [j, tap, lane], prefetched row by row
            ok = np.arange(cf)[:, None, None] * c + np.arange(c)[None, None, :] < n
            ok = np.broadcast_to(ok, (cf, k, c))
            st = self._rank_order(ok.reshape(-1, c), False).reshape(cf, k, c)
            mat = np.full((rf * r, cf * c), -1, dtype=ADDR)
            mat[:k] = st.transpose(1, 0, 2).reshape(k, cf * c)
        else:
            mat = _filter_matrix(k, n, rf * r, cf * c)
            st = mat[:k].reshape(k, cf, c).transpose(1, 0, 2)
        ln, q = self._pattern(c, lambda l, q: (l < r) & (q >= 0))
        folds = mat.reshape(rf, r, cf, c).transpose(2, 0, 1, 3).reshape(cf * rf, r, c)
        return self._operand(st, False, _take(folds, (r - 1 - ln) * c + q), "ij", ln)


class InputStationaryDemands(_StationaryDemands):
    """The window on rows, pixels on columns, filters streamed along time."""

    dataflow = "is"

    def _spatial(self) -> tuple[int, int, int]:
        return self.k, self.m, self.n

    def _slots(self) -> tuple[int, int]:
        return self.cf * self.k * self.c, self.rf * self.n * self.r

    @cached_property
    def ifmap(self) -> OperandDemands:
        r, c, k, rf, cf = self.r, self.c, self.k, self.rf, self.cf
        mat = _ifmap_matrix(self.shape, cf * c, rf * r).reshape(cf, c, rf, r)  # [j, lane, i, row]
        pf = mat.reshape(cf, c, rf * r)[:, :, :k].transpose(0, 2, 1).ravel()
        ln, q = self._pattern(c, lambda l, q: (l < r) & (q >= 0))
        table = _take(mat.transpose(0, 2, 1, 3).reshape(cf * rf, c * r), q * r + r - 1 - ln)
        return OperandDemands(pf, table, self._folds("ij"), ln, self.length)

    @cached_property
    def filter(self) -> OperandDemands:
        r, n, k, rf = self.r, self.n, self.k, self.rf
        if self.relabel:  # [i, filter, lane] stacked; prefetched by anti-diagonals
            ok = np.arange(rf)[:, None, None] * r + np.arange(r)[None, None, :] < k
            ok = np.broadcast_to(ok, (rf, n, r)).reshape(rf * n, r)
            st = antidiagonal_put(rf * n, r, self._rank_order(ok, True))
        else:
            st = _filter_matrix(k, n, rf * r, n).reshape(rf, r, n).transpose(0, 2, 1)
            st = st.reshape(rf * n, r)
        mat = st.reshape(rf, n, r).transpose(0, 2, 1)  # [i, lane, filter]
        ln, q = self._pattern(r, lambda l, q: (l - q - r >= 0) & (l - q - r < n))
        return self._operand(st, True, _take(mat, q * n + ln - q - r), "i", ln)


# The dataflows SCALE-Sim 3.0.0 implements, each replaying its compute module; another dataflow
# is refused.
DEMANDS: dict[str, type[Demands]] = {
    d.dataflow: d
    for d in (OutputStationaryDemands, WeightStationaryDemands, InputStationaryDemands)
}
SCALESIM_DATAFLOWS = tuple(DEMANDS)


def layer_demands(
    shape: LayerShape, rows: int, cols: int, dataflow: str, relabel: bool = True
) -> Demands:
    """Demands and prefetch orders of a dense, unpadded, ungrouped conv layer on ``rows x cols``
    (``relabel``: filter addresses as prefetch positions; the hits are the same either way)."""
    return DEMANDS[dataflow](shape, rows, cols, relabel)


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

    def windows(self, prefetch_len: int) -> tuple[int, int, int]:
        """(sets, window sets, sets the window moves per miss) for a prefetch order."""
        n_sets = prefetch_len // self.set_size + 1
        win = min(math.ceil(self.active / self.set_size), n_sets)
        step = min(math.ceil(self.half / self.set_size), n_sets - win)
        return n_sets, win, step

    def fits(self, entries: int) -> bool:
        """Whether a prefetch order of ``entries`` sits in the first window (no misses)."""
        n_sets, win, step = self.windows(entries)
        return win >= n_sets or step == 0

    def misses(self, ops: OperandDemands) -> np.ndarray:
        """Line of every miss (one entry per prefetch it issues), in order."""
        pf = ops.prefetch[ops.prefetch >= 0]
        e = self.set_size
        n_sets, win, step = self.windows(len(pf))
        if win >= n_sets or step == 0:
            return np.zeros(0, dtype=np.int64)
        if ops.ranked:
            return self._ranked_misses(ops, n_sets, win, step)
        # latest[a]: unwrapped index of the newest set in or before the window that holds a;
        # the window [start, start + win) holds a exactly when latest[a] >= start. The last
        # entry answers empty slots (address -1): always a hit.
        latest = np.full(int(max(pf.max(), ops.table.max())) + 2, -1, dtype=ADDR)
        latest[-1] = np.iinfo(ADDR).max
        offs = (np.arange((win + 1) * e) // e).astype(ADDR)  # set of each entering entry

        def enter(u0: int, u1: int) -> None:
            """Sets with unwrapped indices u0..u1-1 enter the window (set u is u mod n_sets)."""
            u = u0
            while u < u1:  # split where the order wraps around
                hi = min(u1, (u // n_sets + 1) * n_sets)
                p0, p1 = (u % n_sets) * e, min(((hi - 1) % n_sets + 1) * e, len(pf))
                if p1 > p0:
                    np.maximum.at(latest, pf[p0:p1], offs[: p1 - p0] + u)
                u = hi

        enter(0, win)
        start, pos, total = 0, 0, ops.slots
        block, stuck = 1 << 14, 0
        out: list[int] = []
        while pos < total:
            addr = ops.addresses(pos, min(pos + block, total))
            bad = np.flatnonzero(latest[addr] < start)
            if bad.size == 0:
                pos += len(addr)
                block = min(block * 2, 1 << 20)
                continue
            pos += int(bad[0])
            a = int(addr[bad[0]])
            while latest[a] < start:
                out.append(ops.line_of(pos))
                enter(start + win, start + win + step)
                start += step
                stuck += 1
                if stuck > n_sets // step + 2:
                    raise RuntimeError(f"address {a} is demanded but never prefetched")
            stuck = 0
            pos += 1
            block = 1 << 14
        return np.asarray(out, dtype=np.int64)

    def _ranked_misses(self, ops: OperandDemands, n_sets: int, win: int, step: int) -> np.ndarray:
        """Misses of an operand addressed by prefetch position: address a lies in set
        ``a // set_size`` only, so a hit is ``(set - start) mod n_sets < win``: arithmetic on
        the demand table, no lookups."""
        e = self.set_size
        start, pos, total = 0, 0, ops.slots
        block = 1 << 14
        out: list[int] = []
        while pos < total:
            addr = ops.addresses(pos, min(pos + block, total))
            off = (addr // e - start) % n_sets
            bad = np.flatnonzero((off >= win) & (addr >= 0))
            if bad.size == 0:
                pos += len(addr)
                block = min(block * 2, 1 << 20)
                continue
            pos += int(bad[0])
            s_a = int(addr[bad[0]]) // e
            if s_a >= n_sets:
                raise RuntimeError(f"address {int(addr[bad[0]])} is demanded but never prefetched")
            while (s_a - start) % n_sets >= win:
                out.append(ops.line_of(pos))
                start = (start + step) % n_sets
            pos += 1
            block = 1 << 14
        return np.asarray(out, dtype=np.int64)

    def dram_reads(self, slots: int, misses: int) -> int:
        """Words fetched from a prefetch matrix of ``slots`` (empty ones included): the first
        window, then one half-buffer prefetch per miss."""
        rows = math.ceil(slots / self.bw)
        return (
            min(math.ceil(self.active / self.bw), rows) * self.bw
            + misses * math.ceil(self.half / self.bw) * self.bw
        )


class WriteBuffer:
    """SCALE-Sim 3.0.0's ofmap write buffer, run from one event (drain or wait) to the next.

    Writes are numbered in service order; ``cum[L]`` is the number of writes in lines ``<= L``.
    The state is the free space, the end of the running drain and the buffered trace (lines of
    ``bw`` words; a drain start closes the partial line, as SCALE-Sim's forced flush does).
    """

    def __init__(self, size_words: int, bandwidth: int, counts: np.ndarray) -> None:
        self.size = size_words
        self.active = math.ceil(size_words * 0.5)
        self.bw = bandwidth
        self.lines_per_drain = math.ceil((size_words - self.active) / bandwidth)
        self.cum = np.cumsum(counts)
        self.first = self.cum - counts  # first write of each line
        self.free = size_words
        self.drain_end = 0
        self.q = 0  # next write
        self.stored = 0  # writes since the last flush
        self.trace: list[int] = []  # words in each buffered line
        self.drained = 0  # trace lines written back
        self.written = 0  # words written back to DRAM
        self.off = 0  # wait accumulated in the current line
        self.off_line = -1

    def _line_of(self, q: int) -> int:
        return int(np.searchsorted(self.cum, q, side="right"))

    def _drain(self, cycle: int) -> int:
        """Flush the partial line and drain up to half a buffer from ``cycle``; its end."""
        full, part = divmod(self.stored, self.bw)
        self.trace.extend([self.bw] * full)
        if part:
            self.trace.append(part)
        self.stored = 0
        num = min(self.lines_per_drain, len(self.trace) - self.drained)
        data = (num - 1) * self.bw + self.trace[self.drained + num - 1]
        self.written += data
        self.free += data
        self.drained += num
        return cycle + num - 1  # one line per cycle, no write-port latency

    def run(self, stop_line: int, stall: int, keep_last: bool = False) -> int:
        """Serve the writes of lines ``< stop_line``; ``stall``: cycles of stall so far.

        Returns the stall with the waits of the lines served added, except (``keep_last``) the
        wait of line ``stop_line - 1``, which :meth:`take_wait` then hands out.
        """
        end = int(self.first[stop_line]) if stop_line < len(self.first) else int(self.cum[-1])
        while self.q < end:
            ln = self._line_of(self.q)
            if ln != self.off_line:
                stall += self.off
                self.off, self.off_line = 0, ln
            cur = ln + stall + self.off
            if cur < self.drain_end:
                # writes before the drain's end: those of lines with line + stall < drain_end
                lim_line = max(min(self.drain_end - stall - self.off, stop_line), ln + 1)
                lim = int(self.first[lim_line]) if lim_line < len(self.first) else end
                lim = min(lim, end)
                qw = self.q + max(self.free, 1) - 1  # the write that fills the buffer
                if qw < lim:
                    self.free -= qw - self.q + 1
                    self.stored += qw - self.q + 1
                    self.q = qw + 1
                    lw = self._line_of(qw)
                    if lw != self.off_line:
                        stall += self.off
                        self.off, self.off_line = 0, lw
                    self.off += self.drain_end - (lw + stall + self.off)
                else:
                    self.free -= lim - self.q
                    self.stored += lim - self.q
                    self.q = lim
            else:
                qd = self.q + max(self.free - self.active, 0)  # the write that starts a drain
                if qd < end:
                    self.free -= qd - self.q + 1
                    self.stored += qd - self.q + 1
                    self.q = qd + 1
                    lw = self._line_of(qd)
                    if lw != self.off_line:
                        stall += self.off
                        self.off, self.off_line = 0, lw
                    self.drain_end = self._drain(lw + stall + self.off)
                else:
                    self.free -= end - self.q
                    self.stored += end - self.q
                    self.q = end
        if not keep_last or self.off_line != stop_line - 1:
            stall += self.off
            self.off, self.off_line = 0, -1
        return stall

    def take_wait(self) -> int:
        """The wait kept by ``run(..., keep_last=True)``, cleared from the running state."""
        off = self.off
        self.off, self.off_line = 0, -1
        return off

    def flush_all(self) -> None:
        """Drain everything left after the last line (SCALE-Sim's ``empty_all_buffers``)."""
        if self.stored:
            self._drain(0)
        while self.drained < len(self.trace):
            self._drain(0)


class ReadWaits:
    """The waits a read buffer's misses cause, line by line (prefetches chained from cycle -1)."""

    def __init__(self, miss_lines: list[int], period: int) -> None:
        self.lines = miss_lines
        self.period = period
        self.k = 0  # prefetches issued so far

    def wait(self, line: int, cycle: int) -> int:
        """Wait of ``line`` served from ``cycle`` (0 without a miss; may be negative)."""
        off, k0 = 1, self.k
        while self.k < len(self.lines) and self.lines[self.k] == line:
            self.k += 1
            p = self.k * self.period - 1 - (cycle + off)  # prefetch k ends at k * period - 1
            off += p
            if p > 0:  # SCALE-Sim 3.0.0 adds a positive wait twice
                off += p
        return off - 1 if self.k > k0 else 0


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
        self.of_bw = ofmap_bw

    @classmethod
    def from_hw(
        cls,
        hw: HardwareConfig,
        ifmap_bw: int | None = None,
        filter_bw: int | None = None,
    ) -> ScaleSimMemory:
        """Buffers of ``hw`` in bytes; the ofmap (and, unless given, every operand) at
        ``dram_words_per_cycle`` words per cycle."""
        bw = max(1, round(hw.dram_words_per_cycle * hw.word_bits / 8))
        size = {b: hw.buffer_bits(b) // 8 for b in ("input", "weight", "output")}
        return cls(
            size["input"], size["weight"], size["output"], ifmap_bw or bw, filter_bw or bw, bw
        )

    def run(self, d: Demands) -> MemoryResult:
        """Serve one layer's demands; stalls as SCALE-Sim 3.0.0 counts them."""
        none = np.zeros(0, dtype=np.int64)
        if_miss = none if self.ifmap.fits(d.ifmap_entries) else self.ifmap.misses(d.ifmap)
        f_miss = none if self.filter.fits(d.filter_entries) else self.filter.misses(d.filter)
        wb = WriteBuffer(self.of_size, self.of_bw, d.of_count)
        reads = [
            ReadWaits(if_miss.tolist(), self.ifmap.prefetch_cycles),
            ReadWaits(f_miss.tolist(), self.filter.prefetch_cycles),
        ]
        stall, total = 0, None
        for ln in np.union1d(if_miss, f_miss).tolist():
            stall = wb.run(ln, stall)
            cycle = ln + stall
            worst = max(rw.wait(ln, cycle) for rw in reads)
            stall = wb.run(ln + 1, stall, keep_last=True)
            of_wait = wb.take_wait()
            if ln == d.lines - 1:
                total = cycle + of_wait
            stall += max(worst, of_wait)
        if total is None:
            stall = wb.run(d.lines, stall, keep_last=True)
            of_wait = wb.take_wait()
            total = d.lines - 1 + stall + of_wait
            stall += of_wait
        wb.flush_all()
        return MemoryResult(
            stall_cycles=int(stall),
            total_cycles=int(total),
            ifmap_dram_reads=self.ifmap.dram_reads(d.ifmap_slots, len(if_miss)),
            filter_dram_reads=self.filter.dram_reads(d.filter_slots, len(f_miss)),
            ofmap_dram_writes=int(wb.written),
            ifmap_misses=len(if_miss),
            filter_misses=len(f_miss),
        )

    def layer(self, shape: LayerShape, hw: HardwareConfig) -> MemoryResult:
        """Demands of ``shape`` on ``hw``'s array, served by these buffers."""
        if hw.lanes != 1:
            raise ValueError(
                f"the scalesim memory model runs SCALE-Sim's one-lane PEs; got lanes={hw.lanes}"
            )
        if hw.dataflow not in SCALESIM_DATAFLOWS:
            raise ValueError(
                f"the scalesim memory model replays SCALE-Sim's dataflows {SCALESIM_DATAFLOWS}; "
                f"got {hw.dataflow!r}"
            )
        return self.run(layer_demands(shape, hw.rows, hw.cols, hw.dataflow))


def scalesim_stalls(shape: LayerShape, hw: HardwareConfig) -> int:
    """Stall cycles of one dense layer in SCALE-Sim 3.0.0's memory model on ``hw``."""
    return ScaleSimMemory.from_hw(hw).layer(shape, hw).stall_cycles
