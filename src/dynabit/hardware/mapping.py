"""Lowering a layer to the GEMM the array sees, and folding it onto an ``R x C`` array.

Per sample and per conv group, a layer is the GEMM ``Y[M, N] = A[M, K] @ W[K, N]`` with
``M`` output pixels, ``K = kh*kw*C_in/groups`` and ``N = C_out/groups``. The dataflows assign
the three dimensions as SCALE-Sim does (spatial rows ``Sr``, spatial columns ``Sc``, temporal
``T``):

====  ==========  ==========  ===========  ================================
 df    Sr (rows)   Sc (cols)   T (time)     fill + drain per fold
====  ==========  ==========  ===========  ================================
 os    M pixels    N channels  K window     ``R + C - 2``
 ws    K window    N channels  M pixels     ``2R + C - 2`` (R to load weights)
 is    K window    M pixels    N channels   ``2R + C - 2`` (R to load inputs)
====  ==========  ==========  ===========  ================================

A fold is one ``ceil(Sr/R) x ceil(Sc/C)`` tile of the operand grid; folds run one after the
other in the order conv group, column fold, row fold (SCALE-Sim's order: column folds outer).
A fold of ``T`` streamed steps takes ``fill + T`` cycles, and a layer takes the sum over its
folds minus one.

With ``lanes = N > 1`` (dot-product PEs, ``HardwareConfig.lanes``) a PE consumes ``N``
consecutive elements of the window ``K`` per cycle, so ``K`` enters every formula as
``ceil(K / N)`` steps (:func:`k_steps`): the streamed ``T`` in OS, the spatial ``Sr`` in WS and
IS. The last step of a window uses ``K mod N`` lanes when ``N`` does not divide ``K`` (the
others are fed zeros); the window is the flattened ``kh * kw * C_in`` im2col row, so a first
layer with 3 input channels and a 3x3 kernel has ``K = 27`` and takes ``ceil(27 / N)`` steps,
lanes spanning channels and kernel positions alike. ``N = 1`` is SCALE-Sim's convention.

Output pixels are put on the array in **group-major order**: groups of the layer's decision
grid in row-major order, the pixels of a group row-major inside it. Any ordering gives the
same fold count; this one makes a row fold of ``R`` pixels coincide with one ``g_h x g_w``
group whenever ``g_h * g_w == R`` and the map divides evenly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dynabit.config.dataflow import Dataflow, dataflow_for
from dynabit.config.hardware import HardwareConfig
from dynabit.config.layer import GridGeometry, ceil_div
from dynabit.hardware.shapes import LayerShape


def k_steps(window: int, lanes: int) -> int:
    """Steps a PE with ``lanes`` lanes takes over a ``window``-element dot product."""
    return ceil_div(window, lanes)


def fill_cycles(dataflow: str, rows: int, cols: int) -> int:
    """Fill and drain cycles a fold pays on top of its streamed steps."""
    return dataflow_for(dataflow).fill(rows, cols)


def segments(total: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of ``ceil(total/size)`` consecutive chunks of ``size``."""
    starts = np.arange(0, total, size, dtype=np.int64)
    return starts, np.minimum(size, total - starts)


@dataclass(frozen=True)
class FoldPlan:
    """How one layer folds onto the array (per sample).

    ``pixel_segments`` (optional) replaces the even split of the pixel dimension (rows in OS,
    columns in IS) by folds that never cut a decision group (see :func:`aligned_segments`).
    """

    dataflow: str
    rows: int
    cols: int
    conv_groups: int
    sr: int
    sc: int
    t: int
    pixel_segments: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def flow(self) -> Dataflow:
        """The dataflow's object."""
        return dataflow_for(self.dataflow)

    @cached_property
    def fill(self) -> int:
        """Fill + drain cycles per fold."""
        return self.flow.fill(self.rows, self.cols)

    @cached_property
    def row_segments(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, sizes) of the row folds along ``Sr``."""
        if self.pixel_segments is not None and self.flow.pixels_on_rows:
            return self.pixel_segments
        return segments(self.sr, self.rows)

    @cached_property
    def col_segments(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, sizes) of the column folds along ``Sc`` (within one conv group)."""
        if self.pixel_segments is not None and self.flow.pixels_on_cols:
            return self.pixel_segments
        return segments(self.sc, self.cols)

    @property
    def n_row_folds(self) -> int:
        """Folds along the rows."""
        return len(self.row_segments[0])

    @property
    def n_col_folds(self) -> int:
        """Folds along the columns, per conv group."""
        return len(self.col_segments[0])

    @property
    def n_folds(self) -> int:
        """All folds of the layer."""
        return self.conv_groups * self.n_col_folds * self.n_row_folds

    def fold_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(group, col fold, row fold) of every fold, in execution order."""
        g, c, r = np.meshgrid(
            np.arange(self.conv_groups),
            np.arange(self.n_col_folds),
            np.arange(self.n_row_folds),
            indexing="ij",
        )
        return g.ravel(), c.ravel(), r.ravel()

    @cached_property
    def rows_used(self) -> np.ndarray:
        """PE rows each fold uses, shape ``(n_folds,)``."""
        _, _, r = self.fold_index()
        return self.row_segments[1][r]

    @cached_property
    def cols_used(self) -> np.ndarray:
        """PE columns each fold uses, shape ``(n_folds,)``."""
        _, c, _ = self.fold_index()
        return self.col_segments[1][c]

    def dense_cycles(self, steps_per_fold: int | None = None) -> int:
        """Standard systolic cycles: ``n_folds * (fill + T) - 1`` (``T`` may be scaled)."""
        t = self.t if steps_per_fold is None else steps_per_fold
        return self.n_folds * (self.fill + t) - 1


def fold_plan(shape: LayerShape, hw: HardwareConfig, group_aligned: bool = False) -> FoldPlan:
    """Fold ``shape`` onto ``hw``'s array in its dataflow.

    ``group_aligned``: in OS and IS, where output pixels lie along an array edge, fold the
    pixels so that no fold cuts one of the layer's output groups (:func:`aligned_segments`);
    otherwise (and always in WS, where pixels stream in time) the even SCALE-Sim split.
    """
    m, k, n = shape.pixels, k_steps(shape.window, hw.lanes), shape.channels_per_group
    flow = hw.flow
    sr, sc, t = flow.axes(m, k, n)
    edge = flow.pixel_edge(hw.rows, hw.cols)
    segs = None
    if group_aligned and edge is not None:
        segs = aligned_segments(shape.out_hw, shape.group, edge)
    return FoldPlan(hw.dataflow, hw.rows, hw.cols, shape.groups, sr, sc, t, segs)


def dense_formula(shape: LayerShape, hw: HardwareConfig) -> int:
    """The SCALE-Sim closed form, written out independently of :class:`FoldPlan`."""
    folds, per_fold = hw.flow.dense_formula(
        hw.rows, hw.cols, shape.pixels, k_steps(shape.window, hw.lanes), shape.channels_per_group
    )
    return shape.groups * folds * per_fold - 1


# --- pixel order and decision units -----------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """Decision units along one axis of the mapping order: starts and sizes (partial at edges)."""

    starts: np.ndarray
    sizes: np.ndarray

    def range_of(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit index range ``[u0, u1)`` overlapping each element range ``[lo, hi)``."""
        u0 = np.searchsorted(self.starts, lo, side="right") - 1
        u1 = np.searchsorted(self.starts, hi - 1, side="right")
        return u0, u1


def _map_grid(hw_map: tuple[int, int], group: tuple[int, int]) -> GridGeometry:
    """The decision grid of ``group`` over one channel of a map."""
    return GridGeometry(1, hw_map[0], hw_map[1], 1, group[0], group[1])


def group_grid(hw_map: tuple[int, int], group: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row heights and column widths of the ceil-ed group grid over a map (edges partial)."""
    _, hs, ws = _map_grid(hw_map, group).extents()
    return np.array(hs, dtype=np.int64), np.array(ws, dtype=np.int64)


def pixel_order(hw_map: tuple[int, int], group: tuple[int, int]) -> np.ndarray:
    """Group-major order: ``order[q]`` is the row-major index of the pixel at position ``q``."""
    h, w = hw_map
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    gi, gj = ys // group[0], xs // group[1]
    key = (gi * _map_grid(hw_map, group).n_gw + gj) * (h * w) + ys * w + xs
    return np.argsort(key.ravel(), kind="stable")


def group_units(hw_map: tuple[int, int], group: tuple[int, int]) -> Units:
    """The groups of a map as units of the group-major pixel order."""
    hs, ws = group_grid(hw_map, group)
    sizes = np.outer(hs, ws).ravel()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return Units(starts.astype(np.int64), sizes.astype(np.int64))


def pixel_units(pixels: int) -> Units:
    """Every pixel its own unit (per-element masks)."""
    idx = np.arange(pixels, dtype=np.int64)
    return Units(idx, np.ones(pixels, dtype=np.int64))


def channel_units(channels: int, block: int) -> Units:
    """Channel blocks of ``block`` consecutive channels (last one partial)."""
    starts, sizes = segments(channels, block)
    return Units(starts, sizes)


def aligned_segments(
    hw_map: tuple[int, int], group: tuple[int, int], edge: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel folds (starts, sizes in group-major order) that never cut a group.

    Groups of at most ``edge`` pixels are packed ``edge // (g_h * g_w)`` whole groups per
    fold (partial edge groups keep their slot); a larger group is split into its own folds of
    ``edge`` pixels. When the map divides evenly into groups of exactly ``edge`` pixels this
    is the even split.
    """
    units = group_units(hw_map, group)
    nominal = group[0] * group[1]
    if nominal <= edge:
        per = edge // nominal
        idx = np.arange(0, len(units.sizes), per)
        sizes = np.add.reduceat(units.sizes, idx)
        return units.starts[idx], sizes
    starts, sizes = [], []
    for u0, us in zip(units.starts.tolist(), units.sizes.tolist(), strict=True):
        st, sz = segments(us, edge)
        starts.append(st + u0)
        sizes.append(sz)
    return np.concatenate(starts), np.concatenate(sizes)
