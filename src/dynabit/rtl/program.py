"""Host side: a layer in integer form, its golden result, and the buffer images for a tile.

:class:`LayerJob` holds what a converted dynabit layer computes with (integer weights, bias,
activation codes as im2col windows, block thresholds, score multipliers); :func:`golden` runs
the model's arithmetic on it in numpy (the rule of ``QuantLayerMixin._forward_frozen``);
:func:`build_program` lays it out for :class:`dynabit.rtl.tile.Tile`'s buffers, including the
per-block constants the decision unit compares against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from dynabit.config.layer import GridGeometry, LayerSpec, Score, ceil_div
from dynabit.config.scores import score_for
from dynabit.rtl.params import TileParams
from dynabit.rtl.tile import act_layout, lo_layout, param_layout, weight_layout


@dataclass
class LayerJob:
    """One output-directed dynamic layer in integers, ready for the tile.

    ``cols[n, k, y, x]`` is the activation code that meets weight ``w[:, k]`` for output pixel
    ``(y, x)`` of sample ``n`` (im2col order ``k = (c_in, k_h, k_w)``; a linear layer is a
    ``1 x 1`` map). ``threshold`` has one entry per block of ``block_size`` output channels;
    groups are ``group = (g_h, g_w)`` output pixels.
    """

    w: np.ndarray  # (C_out, K) int
    bias: np.ndarray  # (C_out,) int
    cols: np.ndarray  # (N, K, H, W) int codes
    hi_bits: int
    lo_bits: int
    act_signed: bool
    threshold: np.ndarray  # (n_blocks,) int
    score_mult: np.ndarray  # (C_out,) int >= 1
    score: Score
    group: tuple[int, int]
    block_size: int
    weight_bits: int = 8
    name: str = "layer"
    #: The layer's geometry for the cycle model (``None``: a 1x1 conv with ``K`` input
    #: channels); its decision units and precision are the job's own fields.
    spec: LayerSpec | None = None
    #: The mid-point offset: the high value adds ``2**(B_lo-1)`` where ``q_hi != 0``.
    midpoint: bool = False

    def __post_init__(self) -> None:
        self.w = np.asarray(self.w, dtype=np.int64)
        self.bias = np.asarray(self.bias, dtype=np.int64)
        self.cols = np.asarray(self.cols, dtype=np.int64)
        self.threshold = np.asarray(self.threshold, dtype=np.int64).reshape(-1)
        self.score_mult = np.asarray(self.score_mult, dtype=np.int64).reshape(-1)
        c_out, k = self.w.shape
        if self.cols.ndim != 4 or self.cols.shape[1] != k:
            raise ValueError(f"cols must be (N, K={k}, H, W), got {self.cols.shape}")
        if self.bias.shape != (c_out,) or self.score_mult.shape != (c_out,):
            raise ValueError("bias and score_mult need one entry per output channel")
        if self.threshold.shape != (self.n_blocks,):
            raise ValueError(f"threshold needs {self.n_blocks} entries, got {self.threshold.shape}")
        if (self.score_mult < 1).any():
            raise ValueError("score multipliers must be >= 1")
        lo, hi = self.code_range
        if self.cols.min(initial=lo) < lo or self.cols.max(initial=hi) > hi:
            raise ValueError(f"activation codes outside [{lo}, {hi}]")
        qmax = (1 << (self.weight_bits - 1)) - 1
        if np.abs(self.w).max(initial=0) > qmax:
            raise ValueError(f"weights outside [-{qmax}, {qmax}]")

    # ------------------------------------------------------------------ geometry
    @property
    def bits(self) -> int:
        return self.hi_bits + self.lo_bits

    @property
    def code_range(self) -> tuple[int, int]:
        if self.act_signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    @property
    def k(self) -> int:
        return int(self.w.shape[1])

    @property
    def c_out(self) -> int:
        return int(self.w.shape[0])

    @property
    def out_hw(self) -> tuple[int, int]:
        return int(self.cols.shape[2]), int(self.cols.shape[3])

    @property
    def layer_spec(self) -> LayerSpec:
        """The :class:`~dynabit.config.layer.LayerSpec` of this output-directed dynamic layer."""
        base = self.spec or LayerSpec(
            name=self.name,
            kind="conv",
            in_channels=self.k,
            out_channels=self.c_out,
            in_hw=self.out_hw,
            out_hw=self.out_hw,
        )
        return replace(
            base,
            name=self.name,
            out_channels=self.c_out,
            out_hw=self.out_hw,
            group=tuple(self.group),
            block_size=self.block_size,
            decision="output",
            dynamic=True,
            bits=self.bits,
            hi_bits=self.hi_bits,
            score=self.score,
        )

    @property
    def decision_grid(self) -> GridGeometry:
        """The decision grid over one sample's output map."""
        return self.layer_spec.grid()

    @property
    def n_blocks(self) -> int:
        return self.decision_grid.n_blocks

    @property
    def grid(self) -> tuple[int, int]:
        """Groups per sample along height and width."""
        g = self.decision_grid
        return g.n_gh, g.n_gw

    @property
    def n_groups(self) -> int:
        """Groups over the whole batch (the tile's group index runs over samples too)."""
        gh, gw = self.grid
        return int(self.cols.shape[0]) * gh * gw

    @property
    def n_tiles(self) -> int:
        return self.n_groups * self.n_blocks

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """``(q_hi, q_lo)`` with ``q = q_hi * 2**B_lo + q_lo`` and ``0 <= q_lo < 2**B_lo``."""
        q_hi = self.cols >> self.lo_bits  # arithmetic shift = floor division
        return q_hi, self.cols - (q_hi << self.lo_bits)

    def high_low(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hi, lo)`` values with ``q = hi + lo``: ``hi = q_hi * 2**B_lo`` plus, with
        ``midpoint``, ``2**(B_lo-1)`` where ``q_hi != 0`` (the engine's split)."""
        q_hi, _ = self.split()
        hi = q_hi << self.lo_bits
        if self.midpoint:
            hi = hi + (q_hi != 0) * (1 << (self.lo_bits - 1))
        return hi, self.cols - hi

    def sample(self, n: int) -> LayerJob:
        """The same layer on sample ``n`` alone."""
        return replace(self, cols=self.cols[n : n + 1])

    def even_pixels(self, rows: int) -> np.ndarray:
        """``(n_tiles, rows, 3)``: each sample's pixels in row-major order, ``rows`` at a time.

        The even split of SCALE-Sim (``ceil(H*W / R)`` row folds per sample), used by the
        uniform tile, which has no decision grid to follow.
        """
        n_s = int(self.cols.shape[0])
        h, w = self.out_hw
        per = ceil_div(h * w, rows)
        idx = np.arange(per * rows)
        ok = idx < h * w
        out = np.full((n_s, per * rows, 3), -1, dtype=np.int64)
        for n in range(n_s):
            out[n, ok, 0] = n
            out[n, ok, 1] = idx[ok] // w
            out[n, ok, 2] = idx[ok] % w
        return out.reshape(n_s * per, rows, 3)

    def group_pixels(self) -> np.ndarray:
        """``(n_groups, R, 3)``: ``(n, y, x)`` of each row of each group, ``-1`` when outside.

        Rows of a group are its pixels in row-major order; groups run sample by sample, each
        sample's groups row-major (the order of the cycle model's group-major mapping).
        """
        n_s = int(self.cols.shape[0])
        gh_n, gw_n = self.grid
        g_h, g_w = self.group
        h, w = self.out_hw
        out = np.full((n_s, gh_n, gw_n, g_h * g_w, 3), -1, dtype=np.int64)
        for dy in range(g_h):
            for dx in range(g_w):
                r = dy * g_w + dx
                ys = np.arange(gh_n)[:, None] * g_h + dy
                xs = np.arange(gw_n)[None, :] * g_w + dx
                ok = (ys < h) & (xs < w)
                for n in range(n_s):
                    out[n, :, :, r, 0] = np.where(ok, n, -1)
                    out[n, :, :, r, 1] = np.where(ok, ys, -1)
                    out[n, :, :, r, 2] = np.where(ok, xs, -1)
        return out.reshape(self.n_groups, g_h * g_w, 3)


# ---------------------------------------------------------------------- golden model
@dataclass
class GoldenResult:
    """The model's result: ``acc`` ``(N, C_out, H, W)`` and ``mask`` ``(N, blocks, gh, gw)``."""

    acc: np.ndarray
    mask: np.ndarray
    acc_hi: np.ndarray


def _conv(job: LayerJob, codes: np.ndarray) -> np.ndarray:
    return np.einsum("ok,nkyx->noyx", job.w, codes, optimize=True)


def golden(job: LayerJob) -> GoldenResult:
    """The dual-precision layer in numpy int64: high pass, group scores, refined low pass."""
    hi, lo = job.high_low()
    acc_hi = job.bias[None, :, None, None] + _conv(job, hi)
    acc_lo = _conv(job, lo)
    n, c_out = acc_hi.shape[:2]
    h, w = job.out_hw
    grid = job.decision_grid
    g_h, g_w = grid.group
    bs = grid.block_size
    pc, ph, pw = grid.padding
    vals = acc_hi * job.score_mult[None, :, None, None]
    valid = np.pad(np.ones_like(vals, dtype=bool), ((0, 0), (0, pc), (0, ph), (0, pw)))
    vals = np.pad(vals, ((0, 0), (0, pc), (0, ph), (0, pw)))
    shape = (n, *grid.cell_shape)
    vals, valid = vals.reshape(shape), valid.reshape(shape)
    axes = (2, 4, 6)
    how = score_for(job.score)
    cells = np.where(valid, vals, how.pad_value(np.iinfo(np.int64).min))
    score = how.exact(cells, axes, lambda: valid.sum(axis=axes), np)
    mask = score > job.threshold[None, :, None, None]
    full = mask.repeat(bs, 1).repeat(g_h, 2).repeat(g_w, 3)[:, :c_out, :h, :w]
    return GoldenResult(acc=acc_hi + full * acc_lo, mask=mask, acc_hi=acc_hi)


def golden_uniform(job: LayerJob) -> np.ndarray:
    """The uniform ``B``-bit layer: ``bias + W q``."""
    return job.bias[None, :, None, None] + _conv(job, job.cols)


def tile_order_mask(job: LayerJob, mask: np.ndarray) -> np.ndarray:
    """Group masks ``(N, blocks, gh, gw)`` as refine bits in the tile's execution order.

    Tiles run block-major; a block's groups run sample by sample, row-major.
    """
    return np.transpose(np.asarray(mask, dtype=bool), (1, 0, 2, 3)).reshape(-1)


def predicted_cycles(p: TileParams, job: LayerJob, mask: np.ndarray | None = None) -> int:
    """Cycles the tile takes, from the first MAC of PE ``(0, 0)`` to the last of ``(R-1, C-1)``.

    Uniform tile: ``folds * (fill + K) - 1`` with ``fill = R + C - 2`` (SCALE-Sim's OS
    formula), ``folds = ceil(H*W / R) * ceil(C_out / C)`` per sample. Dynamic tile: every tile
    costs ``fill + K``, every refined tile ``K`` more (its low stream follows the next tile's
    high stream in the same fold), and a refined last tile ``fill`` more (the epilogue fold);
    minus one. This is the output-stationary rule of :mod:`dynabit.hardware`.
    """
    fill = p.rows + p.cols - 2
    t = job.k
    if not p.dynamic:
        folds = job.cols.shape[0] * ceil_div(job.out_hw[0] * job.out_hw[1], p.rows) * job.n_blocks
        return folds * (fill + t) - 1
    if mask is None:
        raise ValueError("the dynamic tile's cycles depend on the group masks")
    run = tile_order_mask(job, mask)
    return len(run) * (fill + t) + t * int(run.sum()) + fill * int(run[-1]) - 1


# ---------------------------------------------------------------------- buffer images
def pack(layout: data.Layout | Shape, value: Any) -> int:
    """Pack a nested dict/list of ints into the integer image of ``layout`` (two's complement)."""
    if isinstance(layout, data.StructLayout):
        return sum(pack(f.shape, value[name]) << f.offset for name, f in layout)
    if isinstance(layout, data.ArrayLayout):
        width = Shape.cast(layout.elem_shape).width
        return sum(pack(layout.elem_shape, v) << (i * width) for i, v in enumerate(value))
    shape = Shape.cast(layout)
    v = int(value)
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    if not lo <= v <= hi:
        raise ValueError(f"{v} does not fit {shape}")
    return v & ((1 << shape.width) - 1)


def unpack_lanes(word: int, width: int, n: int, signed: bool = True) -> list[int]:
    """Split an integer into ``n`` lanes of ``width`` bits."""
    mask = (1 << width) - 1
    out = []
    for i in range(n):
        v = (word >> (i * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


@dataclass
class TileProgram:
    """Buffer images and descriptor of one layer for one tile configuration."""

    params: TileParams
    k: int
    n_groups: int
    n_blocks: int
    act: list[int]  # address group*K + k
    lo: list[int]  # same addressing (dynamic)
    weights: list[int]  # address block*K + k
    block_params: list[int]  # address block
    pixels: np.ndarray  # (n_groups, R, 3)
    meta: dict[str, Any] = field(default_factory=dict)


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def block_constants(p: TileParams, job: LayerJob, b: int) -> dict[str, Any]:
    """Per-column bias/valid bit and the decision constants of block ``b`` (exact rewrites)."""
    c0 = b * p.cols
    chans = [c0 + c for c in range(p.cols)]
    ok = [ch < job.c_out for ch in chans]
    bias = [int(job.bias[ch]) if o else 0 for ch, o in zip(chans, ok, strict=True)]
    mult = [int(job.score_mult[ch]) if o else 0 for ch, o in zip(chans, ok, strict=True)]
    t = int(job.threshold[b])
    out: dict[str, Any] = {"bias": bias, "col_ok": sum(1 << c for c in range(p.cols) if ok[c])}
    if not p.dynamic:
        return {"bias": bias}
    amax = (1 << (p.acc_bits - 1)) - 1
    if p.score == "max":
        # (acc + b) * m > t  <=>  acc > floor(t / m) - b   (m >= 1, acc an integer)
        thr = [
            _clamp(t // mult[c] - bias[c], -amax - 2, amax) if ok[c] else amax
            for c in range(p.cols)
        ]
        out["thr"] = thr
    else:
        # floor(sum (acc + b) m / n) > t  <=>  sum m * acc >= n_rows * (n_cols (t+1) - sum b m)
        n_cols = sum(ok)
        x = n_cols * (t + 1) - sum(bias[c] * mult[c] for c in range(p.cols) if ok[c])
        lim = p.score_limit
        out["mult"] = mult
        out["x"] = _clamp(x, -lim, lim)
        if any(m_ >= (1 << p.mult_bits) for m_ in mult):
            raise ValueError(f"score multiplier does not fit {p.mult_bits} bits")
    return out


def build_program(p: TileParams, job: LayerJob) -> TileProgram:
    """Lay ``job`` out in the tile's buffers (activations per group, weights per block)."""
    r_n = p.rows
    pixels = job.group_pixels() if p.dynamic else job.even_pixels(p.rows)
    n_groups = int(pixels.shape[0])
    _check_fits(p, job, n_groups)
    q_hi, q_lo = job.split()
    planes = (q_hi, q_lo) if p.dynamic else (job.cols,)
    gathered = []
    n_idx, y_idx, x_idx = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    valid = n_idx >= 0
    for plane in planes:
        ns, ys, xs = (np.where(valid, i, 0) for i in (n_idx, y_idx, x_idx))
        g = plane[ns, :, ys, xs]
        g = np.where(valid[..., None], g, 0)  # (n_groups, R, K)
        gathered.append(np.transpose(g, (0, 2, 1)))  # (n_groups, K, R)
    al = act_layout(p)
    keep = (valid.astype(np.int64) << np.arange(r_n)).sum(axis=1)
    act: list[int] = []
    lo: list[int] = []
    for gi in range(n_groups):
        for k in range(job.k):
            lanes = gathered[0][gi, k].tolist()
            word = {"lanes": lanes, "keep": int(keep[gi])} if p.dynamic else {"lanes": lanes}
            act.append(pack(al, word))
            if p.dynamic:
                lo.append(pack(lo_layout(p), gathered[1][gi, k].tolist()))
    wl = weight_layout(p)
    w_pad = np.zeros((job.n_blocks * p.cols, job.k), dtype=np.int64)
    w_pad[: job.c_out] = job.w
    weights = [
        pack(wl, w_pad[b * p.cols : (b + 1) * p.cols, k].tolist())
        for b in range(job.n_blocks)
        for k in range(job.k)
    ]
    pl = param_layout(p)
    block_params = [pack(pl, block_constants(p, job, b)) for b in range(job.n_blocks)]
    return TileProgram(
        params=p,
        k=job.k,
        n_groups=n_groups,
        n_blocks=job.n_blocks,
        act=act,
        lo=lo,
        weights=weights,
        block_params=block_params,
        pixels=pixels,
    )


def decision_fits(job: LayerJob, rows: int, cols: int, score: str) -> list[str]:
    """Why a dynamic ``job`` does not fit a deciding tile of ``rows x cols`` with ``score``:
    its groups must cover the rows, its blocks the columns, and it must decide by ``score``."""
    problems = []
    if job.group[0] * job.group[1] != rows:
        problems.append(f"group {job.group} does not cover the array's {rows} rows")
    if job.block_size != cols:
        problems.append(f"block_size {job.block_size} != array columns {cols}")
    if job.score != score:
        problems.append(f"score {job.score!r} but the tile decides by {score!r}")
    return problems


def _check_fits(p: TileParams, job: LayerJob, n_groups: int) -> None:
    problems = []
    if job.k < 2:
        problems.append(f"K={job.k}: the tile streams K >= 2 elements")
    if p.dynamic:
        problems += decision_fits(job, p.rows, p.cols, p.score)
        if (job.hi_bits, job.lo_bits, job.act_signed) != (p.hi_bits, p.lo_bits, p.act_signed):
            problems.append("activation split/signedness differs from the tile's")
        if job.midpoint:
            problems.append("the midpoint offset (the lane tile implements it)")
    elif job.bits != p.bits or job.act_signed != p.act_signed:
        problems.append("activation bits/signedness differ from the tile's")
    if job.weight_bits > p.weight_bits:
        problems.append(f"{job.weight_bits}-bit weights on a {p.weight_bits}-bit tile")
    top = 1 << p.addr_bits
    for what, n in (
        ("activation buffer", n_groups * job.k),
        ("weight buffer", job.n_blocks * job.k),
        ("fold length", p.fold_cycles(job.k)),
    ):
        if n > top:
            problems.append(f"{what} needs {n} > 2**addr_bits = {top} entries")
    if problems:
        raise ValueError(f"{job.name}: cannot run on {p.tag}: " + "; ".join(problems))


def scatter_outputs(
    prog: TileProgram, rows: Mapping[tuple[int, int, int], Sequence[int]], job: LayerJob
) -> np.ndarray:
    """Place drained rows ``{(block, group, row): C values}`` into ``(N, C_out, H, W)``."""
    n = int(job.cols.shape[0])
    h, w = job.out_hw
    out = np.zeros((n, job.c_out, h, w), dtype=np.int64)
    seen = np.zeros_like(out, dtype=bool)
    cols = prog.params.cols
    for (b, g, r), vals in rows.items():
        s, y, x = prog.pixels[g, r]
        if s < 0:
            continue
        for c in range(cols):
            ch = b * cols + c
            if ch < job.c_out:
                out[s, ch, y, x] = vals[c]
                seen[s, ch, y, x] = True
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} outputs were never drained")
    return out
