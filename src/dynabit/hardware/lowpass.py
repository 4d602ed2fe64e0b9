"""From masks to the array's schedule: which folds stream a low plane, and for how many steps.

Three schedules, one per kind of decision (all vectorised over samples and folds):

* **Fixed precision** (dense, uniform, high pass only, static layers): every fold streams
  ``T`` steps per activation chunk, both planes chained in the same fold.
* **Output-directed** (our masks, and per-element gating): the decision needs the complete
  high-pass sum. In OS the sum is complete in the PE after the fold's high stream, so the
  low stream of a refined fold is issued right after the *next* fold's high stream (two
  accumulator banks per PE, one-fold lookahead) and a refined last fold costs one extra fold.
  In WS and IS the sum is complete only after every row fold (``K`` split over the rows), so
  the low pass is a second set of folds that reloads the stationary operand and streams only
  the waves that need it; a fold with nothing to do is skipped.
* **Input-directed** (DRQ-style regions, decided when the previous layer wrote them): known
  before the layer starts, so each fold chains a compacted low stream of the waves that touch
  a refined input region.

A *wave* is what advances in lock-step: in OS one streamed step of a whole fold (its low pass
runs if any of its ``R x C`` outputs needs it), in WS one pixel over the fold's columns, in IS
one output channel over the fold's pixel columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynabit.hardware.mapping import (
    FoldPlan,
    Units,
    channel_units,
    group_grid,
    group_units,
    pixel_order,
    pixel_units,
)
from dynabit.hardware.shapes import LayerShape


@dataclass
class LowPass:
    """What one layer makes the array do, for ``N`` samples and ``F`` folds."""

    t_main: np.ndarray  # (N, F) steps streamed in the primary folds (high + chained low)
    lo_main: np.ndarray  # (N, F) of which low-plane steps
    t_second: np.ndarray  # (N, F) low steps of second-set folds (0: fold skipped)
    epilogue: np.ndarray  # (N,) extra cycles (OS lookahead: a refined last fold)
    lo_macs: np.ndarray  # (N,) low-plane products (window x output), one per chunk pass
    merged: np.ndarray  # (N,) outputs whose high and low sums are merged (shift-add)
    refined: np.ndarray  # (N,) MAC-weighted refine ratio
    run_pixels: np.ndarray | None  # (N, O, H, W) output pixels whose low pass runs, per outer fold
    lo_input_elems: np.ndarray | None  # (N,) in-map input elements refined (input-directed)
    decisions: int  # threshold decisions per sample
    compares: int  # comparator operations per sample

    @property
    def samples(self) -> int:
        """Number of samples."""
        return self.t_main.shape[0]


def _zeros(n: int, f: int) -> np.ndarray:
    return np.zeros((n, f), dtype=np.int64)


def fixed(shape: LayerShape, plan: FoldPlan, samples: int, c_hi: int, c_lo: int) -> LowPass:
    """Every fold streams ``T`` steps per chunk: ``c_hi`` high, ``c_lo`` low, chained."""
    f = plan.n_folds
    lo = np.full((samples, f), plan.t * c_lo, dtype=np.int64)
    total = shape.macs
    return LowPass(
        t_main=np.full((samples, f), plan.t * c_hi, dtype=np.int64) + lo,
        lo_main=lo,
        t_second=_zeros(samples, f),
        epilogue=np.zeros(samples, dtype=np.int64),
        lo_macs=np.full(samples, float(total * c_lo)),
        merged=np.full(samples, float(shape.pixels * shape.out_channels if c_lo else 0)),
        refined=np.full(samples, 1.0 if c_lo else 0.0),
        run_pixels=None,
        lo_input_elems=None,
        decisions=0,
        compares=0,
    )


# --- output-directed ---------------------------------------------------------------------------


def _to_map(per_pos: np.ndarray, order: np.ndarray, hw_map: tuple[int, int]) -> np.ndarray:
    """Values per mapping position ``(..., M)`` back to a row-major ``(..., H, W)`` map."""
    out = np.empty_like(per_pos)
    out[..., order] = per_pos
    return out.reshape(*per_pos.shape[:-1], *hw_map)


def output_directed(
    shape: LayerShape,
    plan: FoldPlan,
    o: np.ndarray,
    cu: Units,
    pu: Units,
    order: np.ndarray,
    c_hi: int,
    c_lo: int,
) -> LowPass:
    """Schedule for output-side masks ``o`` of shape ``(N, n_channel_units, n_pixel_units)``.

    ``cu`` are the channel units (blocks, or single channels), ``pu`` the pixel units in
    mapping order (groups, or single pixels), ``order`` the mapping order of the pixels.
    """
    n = o.shape[0]
    m_total = shape.pixels
    o = o.astype(bool, copy=False)
    t_main = np.full((n, plan.n_folds), plan.t * c_hi, dtype=np.int64)
    t_main, lo_main, t_second, epilogue, run_pos = plan.flow.output_schedule(
        shape, plan, o, cu, pu, c_lo, t_main
    )
    needed = np.einsum("nbu,b,u->n", o.astype(np.float64), cu.sizes.astype(float), pu.sizes)
    total_out = m_total * shape.out_channels
    return LowPass(
        t_main=t_main,
        lo_main=lo_main,
        t_second=t_second,
        epilogue=epilogue,
        lo_macs=needed * shape.window * c_lo,
        merged=needed,
        refined=needed / total_out,
        run_pixels=_to_map(run_pos, order, shape.out_hw),
        lo_input_elems=None,
        decisions=int(o.shape[1] * o.shape[2]),
        compares=total_out,
    )


def block_masks_output(
    shape: LayerShape, plan: FoldPlan, mask: np.ndarray, c_hi: int, c_lo: int
) -> LowPass:
    """Output-directed group masks ``(N, n_blocks, n_gh, n_gw)``."""
    n = mask.shape[0]
    o = mask.reshape(n, mask.shape[1], -1)
    cu = channel_units(shape.out_channels, shape.block_size)
    pu = group_units(shape.out_hw, shape.group)
    order = pixel_order(shape.out_hw, shape.group)
    return output_directed(shape, plan, o, cu, pu, order, c_hi, c_lo)


def element_masks(
    shape: LayerShape,
    plan: FoldPlan,
    mask: np.ndarray,
    tile: tuple[int, int],
    c_hi: int,
    c_lo: int,
) -> LowPass:
    """Per-element gating masks ``(N, C_out, H_out, W_out)``; pixels ordered by ``tile``."""
    n = mask.shape[0]
    order = pixel_order(shape.out_hw, tile)
    o = mask.reshape(n, shape.out_channels, -1)[:, :, order]
    cu = channel_units(shape.out_channels, 1)
    pu = pixel_units(shape.pixels)
    lp = output_directed(shape, plan, o, cu, pu, order, c_hi, c_lo)
    lp.decisions = shape.pixels * shape.out_channels
    return lp


# --- input-directed ----------------------------------------------------------------------------


def _tap_rows(shape: LayerShape, axis: int, group: int) -> np.ndarray:
    """Region index read by each (tap, output position) along one axis, edge-clamped."""
    k, s, p, d = shape.kernel[axis], shape.stride[axis], shape.padding[axis], shape.dilation[axis]
    size_in, size_out = shape.in_hw[axis], shape.out_hw[axis]
    pos = np.arange(size_out)[None, :] * s - p + np.arange(k)[:, None] * d
    return np.clip(pos, 0, size_in - 1) // group  # (k, size_out)


def region_masks(
    shape: LayerShape,
    plan: FoldPlan,
    mask: np.ndarray,
    tile: tuple[int, int],
    c_hi: int,
    c_lo: int,
) -> LowPass:
    """Input-directed region masks ``(N, n_blocks_in, n_gh_in, n_gw_in)`` (DRQ-style).

    A tap of an output pixel reads the region of the input position it touches; padding taps
    read the nearest in-map region (edge clamp), so padding alone never makes a wave skip and
    ratio 1 reproduces the uniform design exactly.
    """
    n = mask.shape[0]
    mask = mask.astype(bool, copy=False)
    gh, gw = shape.group
    ry, rx = _tap_rows(shape, 0, gh), _tap_rows(shape, 1, gw)
    kh, kw = shape.kernel
    order = pixel_order(shape.out_hw, tile)
    # need[n, tap, block, m]: does the tap of the pixel at mapping position m read a refined region
    iy = ry[:, None, :, None].repeat(kw, 1).reshape(kh * kw, shape.out_hw[0], 1)
    ix = rx[None, :, None, :].repeat(kh, 0).reshape(kh * kw, 1, shape.out_hw[1])
    flat_y = np.broadcast_to(iy, (kh * kw, *shape.out_hw)).reshape(kh * kw, -1)[:, order]
    flat_x = np.broadcast_to(ix, (kh * kw, *shape.out_hw)).reshape(kh * kw, -1)[:, order]
    need = mask[:, :, flat_y, flat_x]  # (N, B, taps, M)
    need = np.moveaxis(need, 1, 2)  # (N, taps, B, M)

    # k-units of each conv group: (tap, block-inside-group), k = tap * Cg + local channel
    cg, ng, groups = shape.in_channels // shape.groups, shape.channels_per_group, shape.groups
    cu = channel_units(shape.in_channels, shape.block_size)
    g_lo = np.arange(groups)[:, None] * cg
    inter = np.clip(
        np.minimum(cu.starts + cu.sizes, g_lo + cg) - np.maximum(cu.starts, g_lo), 0, None
    )
    first = np.clip(np.maximum(cu.starts, g_lo) - g_lo, 0, None)  # (G, B) offset inside group
    taps = kh * kw
    # need restricted per group: blocks with zero intersection are masked out
    has = inter > 0  # (G, B)
    need_g = need[:, None] & has[None, :, None, :, None]  # (N, G, taps, B, M)
    sizes_g = np.broadcast_to(inter[:, None, :], (groups, taps, inter.shape[1]))  # (G, taps, B)
    starts_g = np.arange(taps)[None, :, None] * cg + first[:, None, :]

    f = plan.n_folds
    lo_main = plan.flow.input_lo_main(plan, need_g, sizes_g, starts_g, c_lo)
    lo_main = np.asarray(lo_main, dtype=np.int64).reshape(n, f)
    products = np.einsum("ngtbm,gtb->n", need_g.astype(np.int64), sizes_g).astype(float) * ng
    touched = need_g.any(axis=(2, 3)).sum(axis=-1).sum(axis=-1).astype(float) * ng
    hs, ws = group_grid(shape.in_hw, shape.group)
    region_px = np.outer(hs, ws)
    in_elems = np.einsum("nbij,b,ij->n", mask.astype(np.float64), cu.sizes.astype(float), region_px)
    total = float(shape.macs)
    return LowPass(
        t_main=plan.t * c_hi + lo_main,
        lo_main=lo_main,
        t_second=_zeros(n, f),
        epilogue=np.zeros(n, dtype=np.int64),
        lo_macs=products * c_lo,
        merged=touched,
        refined=products / total,
        run_pixels=None,
        lo_input_elems=in_elems,
        decisions=int(np.prod(mask.shape[1:])),
        compares=shape.in_channels * shape.in_hw[0] * shape.in_hw[1],
    )
