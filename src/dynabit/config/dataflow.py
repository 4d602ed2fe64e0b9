"""The array's dataflows as objects: one class per dataflow, the same methods on each.

A dataflow decides which GEMM dimension lies on the array's rows, which on its columns and
which streams in time (SCALE-Sim's ``Sr``, ``Sc``, ``T``), and everything that follows from
that: fill cycles, which edge the output pixels and channels lie on, the smallest buffer
contents, the low-pass schedule of a masked layer and the layer's traffic. The config names a
dataflow by its short name (``os``, ``ws``, ``is``); :func:`dataflow_for` returns its object
and every consumer asks that object instead of branching on the name.

Adding a dataflow: one subclass of :class:`Dataflow` here, registered in ``DATAFLOWS``.

Only ``numpy`` is needed; ``plan``, ``shape``, ``lp`` and ``prec`` arguments are the
simulator's ``FoldPlan``, ``LayerShape``, ``LowPass`` and ``Precision`` (read by attribute).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np


def squarest_factors(n: int) -> tuple[int, int]:
    """Return ``(h, w)`` with ``h * w == n``, ``h <= w`` and ``h`` as large as possible."""
    h = math.isqrt(n)
    while n % h:
        h -= 1
    return h, n // h


def prefix_sums_2d(o: np.ndarray) -> np.ndarray:
    """2-D inclusive prefix sums over the last two axes, zero-padded in front."""
    n, b, u = o.shape
    s = np.zeros((n, b + 1, u + 1), dtype=np.int32)
    np.cumsum(o, axis=1, dtype=np.int32, out=s[:, 1:, 1:])
    np.cumsum(s[:, 1:, 1:], axis=2, out=s[:, 1:, 1:])
    return s


def channel_ranges(
    shape: Any, plan: Any, cu: Any, g: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Block range of each (group, column fold) whose columns are output channels."""
    starts, sizes = plan.col_segments
    lo = g * shape.channels_per_group + starts[c]
    return cu.range_of(lo, lo + sizes[c])


class Dataflow:
    """What one dataflow puts where on an ``R x C`` array, and what that costs."""

    name: ClassVar[str]
    title: ClassVar[str]
    pixels_on_rows: ClassVar[bool] = False  # output pixels along the rows (OS)
    pixels_on_cols: ClassVar[bool] = False  # output pixels along the columns (IS)

    # --- mapping -------------------------------------------------------------------------------

    def axes(self, m: int, k: int, n: int) -> tuple[int, int, int]:
        """``(Sr, Sc, T)`` of the GEMM ``[M, K] @ [K, N]``."""
        raise NotImplementedError

    def fill(self, rows: int, cols: int) -> int:
        """Fill and drain cycles a fold pays on top of its streamed steps."""
        raise NotImplementedError

    def pixel_edge(self, rows: int, cols: int) -> int | None:
        """Array edge the output pixels lie along (``None``: pixels stream in time)."""
        if self.pixels_on_rows:
            return rows
        return cols if self.pixels_on_cols else None

    def group_edge(self, rows: int, cols: int) -> int:
        """Pixels a decision group should fill: the pixel edge, else the rows."""
        edge = self.pixel_edge(rows, cols)
        return rows if edge is None else edge

    def aligned_units(self, rows: int, cols: int) -> tuple[tuple[int, int], int]:
        """``(group, block_size)`` the dataflow advances in lock-step."""
        raise NotImplementedError

    def min_tile_bits(self, rows: int, cols: int, a: int, w: int, acc: int) -> dict[str, int]:
        """Smallest buffer contents for one fold (activation/weight/accumulator bits)."""
        raise NotImplementedError

    def dense_formula(self, rows: int, cols: int, m: int, k: int, n: int) -> tuple[int, int]:
        """SCALE-Sim closed form per conv group: ``(folds, cycles per fold)``."""
        sr, sc, t = self.axes(m, k, n)
        return -(-sr // rows) * -(-sc // cols), self.fill(rows, cols) + t

    # --- low-pass schedule ---------------------------------------------------------------------

    def output_schedule(
        self, shape: Any, plan: Any, o: np.ndarray, cu: Any, pu: Any, c_lo: int, t_main: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Output-directed masks ``o`` ``(N, channel units, pixel units)`` -> schedule.

        Returns ``(t_main, lo_main, t_second, epilogue, run_pos)``; ``run_pos`` is per mapping
        position of the pixels, ``(N, outer folds, M)``.
        """
        raise NotImplementedError

    def input_lo_main(
        self,
        plan: Any,
        need_g: np.ndarray,
        sizes_g: np.ndarray,
        starts_g: np.ndarray,
        c_lo: int,
    ) -> np.ndarray:
        """Input-directed: low steps chained in each fold, ``(N, F)`` (see ``region_masks``)."""
        raise NotImplementedError

    @staticmethod
    def _pixel_fold_hits(plan: Any, need_g: np.ndarray, pixel_segments: Any) -> np.ndarray:
        return np.logical_or.reduceat(need_g, pixel_segments[0], axis=-1)

    @staticmethod
    def _k_fold_inclusion(plan: Any, sizes_g: np.ndarray, starts_g: np.ndarray) -> np.ndarray:
        groups = sizes_g.shape[0]
        k0, ksz = plan.row_segments  # k folds (rows) in WS and IS
        kf_lo, kf_hi = k0[:, None, None, None], (k0 + ksz)[:, None, None, None]
        inc = (
            (starts_g[None] < kf_hi)
            & (starts_g[None] + sizes_g[None] > kf_lo)
            & (sizes_g[None] > 0)
        )
        return inc.reshape(len(k0), groups, -1).transpose(1, 0, 2).astype(np.float32)  # (G,KF,U)

    # --- traffic -------------------------------------------------------------------------------

    def sram_traffic(
        self, shape: Any, plan: Any, lp: Any, prec: Any, w: int, acc: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Array-edge bits per sample: ``(in_hi, in_lo, weight, out_written, out_read)``."""
        raise NotImplementedError

    def input_refetches(self, plan: Any) -> int:
        """Times the input map is fetched from DRAM when its buffer cannot hold it."""
        return plan.n_col_folds

    def pixel_major_low_plane(self) -> bool:
        """The low plane of a whole input map is read for every refined pixel column (IS)."""
        return False

    def weight_dram_bits(
        self, shape: Any, plan: Any, lp: Any, total_w: float, cap_w: int, cols: int, w: int
    ) -> np.ndarray:
        """DRAM weight bits per sample when the weights do not fit their buffer."""
        raise NotImplementedError

    def partial_sums_spill(self) -> bool:
        """Partial sums leave the array (and may spill to DRAM when the buffer is short)."""
        return True

    # --- SCALE-Sim's reports -------------------------------------------------------------------

    def report_span(self, plan: Any, cols: int) -> int:
        """Cycles SCALE-Sim's compute report gives one fold: its lines, plus ``C - 1`` where
        it spans the skewed output block (WS, IS)."""
        return plan.fill + plan.t + cols - 1

    def sram_reads(self, plan: Any) -> tuple[float, float]:
        """``(ifmap, filter)`` SRAM reads of SCALE-Sim's access report over the folds."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _streamed_sram(
    shape: Any, plan: Any, lp: Any, prec: Any, acc: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shared part of WS and IS: steps per fold and the partial-sum traffic."""
    n = lp.samples
    cols = plan.cols_used.astype(np.float64)
    hi_steps = float(plan.t * prec.c_hi)
    lo_main = lp.lo_main.astype(np.float64)
    t2 = lp.t_second.astype(np.float64)
    steps = hi_steps + lo_main + t2  # per fold
    first = (np.arange(plan.n_folds) % plan.n_row_folds) == 0
    out_w = (steps @ cols) * acc
    out_r = out_w - np.ones(n) * (cols[first].sum() * plan.t * acc)
    return hi_steps, lo_main, t2, (t2 > 0).astype(np.float64), out_w, out_r


class OutputStationary(Dataflow):
    """Output pixels on the rows, output channels on the columns, the window in time."""

    name = "os"
    title = "output stationary"
    pixels_on_rows = True

    def axes(self, m: int, k: int, n: int) -> tuple[int, int, int]:
        return m, n, k

    def fill(self, rows: int, cols: int) -> int:
        return rows + cols - 2

    def aligned_units(self, rows: int, cols: int) -> tuple[tuple[int, int], int]:
        return squarest_factors(rows), cols

    def min_tile_bits(self, rows: int, cols: int, a: int, w: int, acc: int) -> dict[str, int]:
        return {"input": 2 * rows * a, "weight": 2 * cols * w, "output": rows * cols * acc}

    def output_schedule(self, shape, plan, o, cu, pu, c_lo, t_main):  # noqa: D102
        n = o.shape[0]
        g, c, r = plan.fold_index()
        p0, psz = plan.row_segments
        u0, u1 = pu.range_of(p0[r], p0[r] + psz[r])
        b0, b1 = channel_ranges(shape, plan, cu, g, c)
        s = prefix_sums_2d(o)
        hits = s[:, b1, u1] - s[:, b0, u1] - s[:, b1, u0] + s[:, b0, u0]
        run = hits > 0  # (N, F)
        lo_main = run * (plan.t * c_lo)
        t_main = t_main + lo_main
        epilogue = run[:, -1] * plan.fill  # the refined last fold needs a fold of its own
        outer = run.reshape(n, plan.conv_groups * plan.n_col_folds, plan.n_row_folds)
        run_pos = np.repeat(outer, psz, axis=2)  # (N, O, M) mapping order
        t_second = np.zeros_like(t_main)
        return t_main, lo_main, t_second, epilogue, run_pos

    def input_lo_main(self, plan, need_g, sizes_g, starts_g, c_lo):  # noqa: D102
        g_idx, _, r_idx = plan.fold_index()
        any_m = self._pixel_fold_hits(plan, need_g, plan.row_segments)  # (N, G, taps, B, n_pf)
        lo = np.einsum("ngtbr,gtb->ngr", any_m.astype(np.int64), sizes_g) * c_lo  # (N, G, n_rf)
        return lo[:, g_idx, r_idx]

    def sram_traffic(self, shape, plan, lp, prec, w, acc):  # noqa: D102
        n = lp.samples
        rows = plan.rows_used.astype(np.float64)
        cols = plan.cols_used.astype(np.float64)
        a = prec.chunk_bits
        hi_steps = float(plan.t * prec.c_hi)
        lo_main = lp.lo_main.astype(np.float64)
        ones = np.ones(n)
        in_hi = ones * rows.sum() * hi_steps * a
        in_lo = (lo_main @ rows) * a
        weight = (ones * cols.sum() * hi_steps + lo_main @ cols) * w
        out_w = ones * (rows * cols).sum() * shape.out_bits
        return in_hi, in_lo, weight, out_w, np.zeros(n)

    def weight_dram_bits(self, shape, plan, lp, total_w, cap_w, cols, w):  # noqa: D102
        slice_bits = shape.window * min(cols, shape.channels_per_group) * w
        return np.ones(lp.samples) * total_w * (1 if slice_bits <= cap_w else plan.n_row_folds)

    def partial_sums_spill(self) -> bool:
        return False

    def report_span(self, plan: Any, cols: int) -> int:  # noqa: D102
        return plan.fill + plan.t

    def sram_reads(self, plan: Any) -> tuple[float, float]:  # noqa: D102
        return float((plan.rows_used * plan.t).sum()), float((plan.cols_used * plan.t).sum())


class WeightStationary(Dataflow):
    """The window on the rows, output channels on the columns, output pixels in time."""

    name = "ws"
    title = "weight stationary"

    def axes(self, m: int, k: int, n: int) -> tuple[int, int, int]:
        return k, n, m

    def fill(self, rows: int, cols: int) -> int:
        return 2 * rows + cols - 2

    def aligned_units(self, rows: int, cols: int) -> tuple[tuple[int, int], int]:
        return squarest_factors(rows), cols

    def min_tile_bits(self, rows: int, cols: int, a: int, w: int, acc: int) -> dict[str, int]:
        return {"input": 2 * rows * a, "weight": rows * cols * w, "output": 2 * cols * acc}

    def output_schedule(self, shape, plan, o, cu, pu, c_lo, t_main):  # noqa: D102
        n = o.shape[0]
        cg = np.arange(plan.conv_groups).repeat(plan.n_col_folds)
        cc = np.tile(np.arange(plan.n_col_folds), plan.conv_groups)
        b0, b1 = channel_ranges(shape, plan, cu, cg, cc)
        sb = np.zeros((n, o.shape[1] + 1, o.shape[2]), dtype=np.int32)
        np.cumsum(o, axis=1, dtype=np.int32, out=sb[:, 1:])
        any_u = (sb[:, b1] - sb[:, b0]) > 0  # (N, G*CF, U)
        waves = any_u.astype(np.int64) @ pu.sizes  # pixels streamed per column fold
        t_second = np.repeat(waves, plan.n_row_folds, axis=1) * c_lo
        run_pos = np.repeat(any_u, pu.sizes, axis=2)
        zeros = np.zeros_like(t_main)
        return t_main, zeros, t_second, np.zeros(n, dtype=np.int64), run_pos

    def input_lo_main(self, plan, need_g, sizes_g, starts_g, c_lo):  # noqa: D102
        n, groups, taps = need_g.shape[:3]
        g_idx, _, r_idx = plan.fold_index()
        inc = self._k_fold_inclusion(plan, sizes_g, starts_g)
        nu = need_g.reshape(n, groups, taps * need_g.shape[3], -1).astype(np.float32)
        hit = np.einsum("gku,ngum->ngkm", inc, nu) > 0  # (N, G, KF, M)
        lo = hit.sum(axis=-1) * c_lo  # (N, G, KF)
        return lo[:, g_idx, r_idx]

    def sram_traffic(self, shape, plan, lp, prec, w, acc):  # noqa: D102
        rows = plan.rows_used.astype(np.float64)
        area = rows * plan.cols_used.astype(np.float64)
        a = prec.chunk_bits
        hi_steps, lo_main, t2, ran2, out_w, out_r = _streamed_sram(shape, plan, lp, prec, acc)
        ones = np.ones(lp.samples)
        weight = ones * area.sum() * w + (ran2 @ area) * w
        in_hi = ones * rows.sum() * hi_steps * a
        in_lo = (lo_main @ rows + t2 @ rows) * a
        return in_hi, in_lo, weight, out_w, out_r

    def weight_dram_bits(self, shape, plan, lp, total_w, cap_w, cols, w):  # noqa: D102
        area = plan.rows_used.astype(np.float64) * plan.cols_used.astype(np.float64)
        ran2 = (lp.t_second > 0).astype(np.float64)
        return np.ones(lp.samples) * total_w + (ran2 @ area) * w

    def sram_reads(self, plan: Any) -> tuple[float, float]:  # noqa: D102
        used = plan.rows_used * plan.cols_used
        return float((plan.rows_used * plan.t).sum()), float(used.sum())


class InputStationary(Dataflow):
    """The window on the rows, output pixels on the columns, output channels in time."""

    name = "is"
    title = "input stationary"
    pixels_on_cols = True

    def axes(self, m: int, k: int, n: int) -> tuple[int, int, int]:
        return k, m, n

    def fill(self, rows: int, cols: int) -> int:
        return 2 * rows + cols - 2

    def aligned_units(self, rows: int, cols: int) -> tuple[tuple[int, int], int]:
        return squarest_factors(cols), rows

    def min_tile_bits(self, rows: int, cols: int, a: int, w: int, acc: int) -> dict[str, int]:
        return {"input": rows * cols * a, "weight": 2 * rows * w, "output": 2 * cols * acc}

    def output_schedule(self, shape, plan, o, cu, pu, c_lo, t_main):  # noqa: D102
        n = o.shape[0]
        p0, psz = plan.col_segments
        u0, u1 = pu.range_of(p0, p0 + psz)
        su = np.zeros((n, o.shape[1], o.shape[2] + 1), dtype=np.int32)
        np.cumsum(o, axis=2, dtype=np.int32, out=su[:, :, 1:])
        any_b = (su[:, :, u1] - su[:, :, u0]) > 0  # (N, B, n_mf)
        ng = shape.channels_per_group
        lo_ch = np.arange(plan.conv_groups)[:, None] * ng
        inter = np.clip(
            np.minimum(cu.starts + cu.sizes, lo_ch + ng) - np.maximum(cu.starts, lo_ch), 0, None
        )  # (G, B) channels of each block inside each conv group
        chans = np.einsum("nbm,gb->ngm", any_b.astype(np.int64), inter)  # (N, G, n_mf)
        t_second = np.repeat(chans.reshape(n, -1), plan.n_row_folds, axis=1) * c_lo
        any_m = any_b.any(axis=1)  # (N, n_mf)
        run_pos = np.repeat(any_m, psz, axis=1)[:, None, :]
        zeros = np.zeros_like(t_main)
        return t_main, zeros, t_second, np.zeros(n, dtype=np.int64), run_pos

    def input_lo_main(self, plan, need_g, sizes_g, starts_g, c_lo):  # noqa: D102
        n, groups, taps = need_g.shape[:3]
        g_idx, c_idx, r_idx = plan.fold_index()
        any_m = self._pixel_fold_hits(plan, need_g, plan.col_segments)  # (N, G, taps, B, n_pf)
        inc = self._k_fold_inclusion(plan, sizes_g, starts_g)
        am = any_m.reshape(n, groups, taps * need_g.shape[3], -1).astype(np.float32)
        hit = np.einsum("gku,ngup->ngkp", inc, am) > 0  # (N, G, KF, n_mf)
        return hit[:, g_idx, r_idx, c_idx] * (plan.t * c_lo)

    def sram_traffic(self, shape, plan, lp, prec, w, acc):  # noqa: D102
        rows = plan.rows_used.astype(np.float64)
        area = rows * plan.cols_used.astype(np.float64)
        a = prec.chunk_bits
        hi_steps, lo_main, t2, ran2, out_w, out_r = _streamed_sram(shape, plan, lp, prec, acc)
        ones = np.ones(lp.samples)
        lo_plane = prec.c_lo * a
        in_hi = ones * area.sum() * prec.c_hi * a
        in_lo = ((lo_main > 0).astype(np.float64) @ area + ran2 @ area) * lo_plane
        weight = ((hi_steps + lo_main + t2) @ rows) * w
        return in_hi, in_lo, weight, out_w, out_r

    def input_refetches(self, plan: Any) -> int:
        return 1

    def pixel_major_low_plane(self) -> bool:
        return True

    def weight_dram_bits(self, shape, plan, lp, total_w, cap_w, cols, w):  # noqa: D102
        return np.ones(lp.samples) * total_w * plan.n_col_folds

    def sram_reads(self, plan: Any) -> tuple[float, float]:  # noqa: D102
        used = plan.rows_used * plan.cols_used
        return float(used.sum()), float((plan.rows_used * plan.t).sum())


DATAFLOWS: dict[str, Dataflow] = {
    d.name: d for d in (OutputStationary(), WeightStationary(), InputStationary())
}


def dataflow_for(name: str) -> Dataflow:
    """The dataflow object a config names; a clear error for an unknown name."""
    try:
        return DATAFLOWS[name]
    except KeyError:
        raise ValueError(f"unknown dataflow {name!r}; allowed: {', '.join(DATAFLOWS)}") from None
