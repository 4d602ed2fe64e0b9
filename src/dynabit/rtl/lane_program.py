"""Host side of the lane tile: a :class:`~dynabit.rtl.program.LayerJob` in its buffer words.

The window ``K`` is cut into ``S = ceil(K / N)`` steps of ``N`` consecutive im2col elements
(``k = (c_in, k_h, k_w)``, so a 3-channel 3x3 first layer has ``K = 27``); the last step's
``N * S - K`` unused lanes hold zero codes and zero weights, so they add nothing. Each design
runs the job's codes at its own width (:func:`design_job`): ``dual``, ``int8`` and
``bitserial`` the whole ``B``-bit code, ``int4`` the ``B_hi``-bit high code alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dynabit.rtl.lane_params import (
    LaneTileParams,
    lane_act_layout,
    lane_param_layout,
    lane_weight_layout,
)
from dynabit.rtl.lanes import Design, LaneParams
from dynabit.rtl.program import (
    LayerJob,
    block_constants,
    decision_fits,
    golden,
    golden_uniform,
    pack,
    tile_order_mask,
)


def design_job(job: LayerJob, design: str) -> LayerJob:
    """The job as ``design`` computes it: ``int4`` takes the high codes, the others ``job``."""
    if design != "int4":
        return job
    q_hi, _ = job.split()
    h = job.hi_bits
    if h < 2:
        raise ValueError(f"int4 needs a high code of at least 2 bits, got {h}")
    return replace(
        job, cols=q_hi, hi_bits=h - h // 2, lo_bits=h // 2, midpoint=False, name=f"{job.name}/int4"
    )


def lane_params_for(
    job: LayerJob, design: Design, lanes: int, serial_bits: int = 1, **overrides: Any
) -> LaneTileParams:
    """The tile of ``design`` with ``lanes`` lanes for ``job``: ``R = g_h g_w``, ``C = block``."""
    bits = {"int4": job.hi_bits}.get(design, job.bits)
    pe = LaneParams(
        lanes=lanes,
        design=design,
        hi_bits=job.hi_bits,
        lo_bits=job.lo_bits,
        weight_bits=job.weight_bits,
        k_max=job.k,
        act_signed=job.act_signed,
        serial_bits=serial_bits,
        bits=None if design == "dual" else bits,
        midpoint=job.midpoint and design == "dual",
    )
    kw: dict[str, Any] = {
        "rows": job.group[0] * job.group[1],
        "cols": job.block_size,
        "pe": pe,
        "score": job.score,
    }
    kw.update(overrides)
    return LaneTileParams(**kw)


@dataclass
class LaneProgram:
    """Buffer images and descriptor of one layer for one lane tile."""

    params: LaneTileParams
    k: int
    steps: int
    n_groups: int
    n_blocks: int
    act: list[int]  # address group * S + step
    weights: list[int]  # address block * S + step
    block_params: list[int]  # address block
    pixels: np.ndarray  # (n_groups, R, 3)
    meta: dict[str, Any] = field(default_factory=dict)


def lane_block_constants(p: LaneTileParams, job: LayerJob, b: int) -> dict[str, Any]:
    """Block word of ``b``: the two-bank tile's exact rewrites, thresholds on the unshifted sum.

    ``(h << s) > t  <=>  h > floor(t / 2**s)`` for an integer high sum ``h`` and the PE's
    shift ``s`` (``B_lo``, or ``B_lo - 1`` with the mid-point offset); the result is clamped
    to the ``c``-bit threshold register's range ``[-2**(c-1), 2**(c-1) - 1]`` (``c`` the
    compared sum's width), which keeps every comparison's outcome: ``|h|`` is at most
    ``K * h_max * 2**(W-1) < 2**(c-1)``, so ``h`` never equals ``-2**(c-1)``.
    """
    if not p.dynamic:
        chans = range(b * p.cols, (b + 1) * p.cols)
        return {"bias": [int(job.bias[ch]) if ch < job.c_out else 0 for ch in chans]}
    out = block_constants(p.decision_params(), job, b)
    if p.score == "max":
        cmax = (1 << (p.pe.cmp_bits - 1)) - 1
        s = p.pe.shift
        out["thr"] = [max(-cmax - 1, min(cmax, t >> s)) for t in out["thr"]]
    if p.pe.low_offset:  # the unsigned mid-point low plane adds low_offset * sum_k w_k
        chans = range(b * p.cols, (b + 1) * p.cols)
        off = p.pe.low_offset
        out["bias_lo"] = [
            int(job.bias[ch] - off * job.w[ch].sum()) if ch < job.c_out else 0 for ch in chans
        ]
    return out


def build_lane_program(p: LaneTileParams, job: LayerJob) -> LaneProgram:
    """Lay ``job`` (already at the design's width, see :func:`design_job`) out for ``p``."""
    _check_lane_fits(p, job)
    n, s_n, k = p.lanes, p.steps(job.k), job.k
    pixels = job.group_pixels() if p.dynamic else job.even_pixels(p.rows)
    n_groups = int(pixels.shape[0])
    valid = pixels[..., 0] >= 0
    ns, ys, xs = (np.where(valid, pixels[..., i], 0) for i in range(3))
    g = np.where(valid[..., None], job.cols[ns, :, ys, xs], 0)  # (groups, R, K)
    g = np.pad(g, ((0, 0), (0, 0), (0, s_n * n - k))).reshape(n_groups, p.rows, s_n, n)
    keep = (valid.astype(np.int64) << np.arange(p.rows)).sum(axis=1)
    al = lane_act_layout(p)
    act = []
    for gi in range(n_groups):
        for s in range(s_n):
            word: dict[str, Any] = {"lanes": g[gi, :, s].tolist()}
            if p.dynamic:
                word["keep"] = int(keep[gi])
            act.append(pack(al, word))
    w_pad = np.zeros((job.n_blocks * p.cols, s_n * n), dtype=np.int64)
    w_pad[: job.c_out, :k] = job.w
    w_pad = w_pad.reshape(job.n_blocks, p.cols, s_n, n)
    wl = lane_weight_layout(p)
    weights = [pack(wl, w_pad[b, :, s].tolist()) for b in range(job.n_blocks) for s in range(s_n)]
    pl = lane_param_layout(p)
    block_params = [pack(pl, lane_block_constants(p, job, b)) for b in range(job.n_blocks)]
    return LaneProgram(p, k, s_n, n_groups, job.n_blocks, act, weights, block_params, pixels)


def _check_lane_fits(p: LaneTileParams, job: LayerJob) -> None:
    problems = []
    pe = p.pe
    if job.k > pe.k_max:
        problems.append(f"K={job.k} > the accumulator's k_max={pe.k_max}")
    if p.dynamic:
        problems += decision_fits(job, p.rows, p.cols, p.score)
        if (job.hi_bits, job.lo_bits) != (pe.hi_bits, pe.lo_bits):
            problems.append("activation split differs from the tile's")
        if job.midpoint != pe.midpoint:
            problems.append(f"midpoint={job.midpoint} on a tile with midpoint={pe.midpoint}")
    elif job.bits != pe.code_bits:
        problems.append(f"{job.bits}-bit codes on a {pe.code_bits}-bit tile")
    if job.act_signed != pe.act_signed:
        problems.append("activation signedness differs from the tile's")
    if job.weight_bits > pe.weight_bits:
        problems.append(f"{job.weight_bits}-bit weights on a {pe.weight_bits}-bit tile")
    top = 1 << p.addr_bits
    groups = job.n_groups if p.dynamic else len(job.even_pixels(p.rows))
    for what, size in (
        ("activation buffer", groups * p.steps(job.k)),
        ("weight buffer", job.n_blocks * p.steps(job.k)),
        ("fold length", p.fold_cycles(job.k)),
    ):
        if size > top:
            problems.append(f"{what} needs {size} > 2**addr_bits = {top} entries")
    if problems:
        raise ValueError(f"{job.name}: cannot run on {p.tag}: " + "; ".join(problems))


def lane_golden(p: LaneTileParams, job: LayerJob) -> tuple[np.ndarray, np.ndarray | None]:
    """``(outputs, group mask or None)`` the design must produce for ``job`` (its own width)."""
    if p.dynamic:
        g = golden(job)
        return g.acc, g.mask
    return golden_uniform(job), None


def lane_predicted_cycles(p: LaneTileParams, job: LayerJob, mask: np.ndarray | None = None) -> int:
    """Cycles from the first MAC of PE ``(0, 0)`` to the last of ``(R-1, C-1)``.

    With ``S = ceil(K / N)`` and ``fill = R + C - 2``: a uniform design with ``P`` planes takes
    ``folds * (fill + P * S) - 1``; the dual design ``F * (fill + S) + S * refined +
    fill * [last refined] - 1`` (the output-stationary rule of :mod:`dynabit.hardware` with
    ``k_steps``).
    """
    s_n, fill = p.steps(job.k), p.fill
    if not p.dynamic:
        folds = len(job.even_pixels(p.rows)) * job.n_blocks
        return folds * (fill + len(p.pe.planes) * s_n) - 1
    if mask is None:
        raise ValueError("the dual tile's cycles depend on the group masks")
    run = tile_order_mask(job, mask)
    return len(run) * (fill + s_n) + s_n * int(run.sum()) + fill * int(run[-1]) - 1
