"""Random layers for the RTL tests and the ``--check`` option (reproducible from a seed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.config.layer import ceil_div, hardware_units
from dynabit.config.scores import score_for
from dynabit.rtl.params import TileParams
from dynabit.rtl.program import LayerJob, golden

if TYPE_CHECKING:
    from torch import nn

    from dynabit.data import ImageDataset


def group_scores(job: LayerJob) -> np.ndarray:
    """The model's group scores ``(N, blocks, gh, gw)`` of ``job`` (thresholds ignored)."""
    probe = LayerJob(**{**job.__dict__, "threshold": np.zeros(job.n_blocks, dtype=np.int64)})
    g = golden(probe)
    n = g.acc_hi.shape[0]
    vals = g.acc_hi * job.score_mult[None, :, None, None]
    gh, gw = job.grid
    bs, (g_h, g_w) = job.block_size, job.group
    how = score_for(job.score)
    h, w = job.out_hw
    out = np.zeros((n, job.n_blocks, gh, gw), dtype=np.int64)
    for b in range(job.n_blocks):
        for y in range(gh):
            for x in range(gw):
                cell = vals[
                    :,
                    b * bs : (b + 1) * bs,
                    y * g_h : min(h, (y + 1) * g_h),
                    x * g_w : min(w, (x + 1) * g_w),
                ].reshape(n, -1)
                out[:, b, y, x] = how.exact(cell, 1, lambda c=cell: c.shape[1], np)
    return out


def random_job(
    rng: np.random.Generator,
    p: TileParams,
    k: int = 12,
    out_hw: tuple[int, int] = (3, 3),
    c_out: int | None = None,
    samples: int = 1,
    refine: float | None = None,
    bias_range: int = 4000,
    midpoint: bool = False,
) -> LayerJob:
    """A random layer for tile ``p``: codes, weights, bias, multipliers and thresholds.

    Each block's threshold sits at a random quantile of its group scores (or at the
    ``1 - refine`` quantile), so masks mix refined and unrefined groups; ``refine=1`` and
    ``refine=0`` give all or none. ``midpoint``: the layer uses the mid-point offset.
    """
    c_out = c_out or p.cols
    lo, hi = (
        (-(1 << (p.bits - 1)), (1 << (p.bits - 1)) - 1) if p.act_signed else (0, (1 << p.bits) - 1)
    )
    qmax = (1 << (p.weight_bits - 1)) - 1
    # the output-stationary defaults a quantization config would give this array
    group, block = hardware_units(HardwareConfig(rows=p.rows, cols=p.cols), aligned=False)
    job = LayerJob(
        w=rng.integers(-qmax, qmax + 1, (c_out, k)),
        bias=rng.integers(-bias_range, bias_range + 1, c_out),
        cols=rng.integers(lo, hi + 1, (samples, k, *out_hw)),
        hi_bits=p.hi_bits,
        lo_bits=p.lo_bits,
        act_signed=p.act_signed,
        threshold=np.zeros(ceil_div(c_out, p.cols), dtype=np.int64),
        score_mult=rng.integers(1, 1 << min(16, p.mult_bits), c_out),
        score=p.score,
        group=group,
        block_size=block,
        weight_bits=p.weight_bits,
        name="random",
        midpoint=midpoint,
    )
    scores = group_scores(job)
    thr = []
    for b in range(job.n_blocks):
        s = np.sort(scores[:, b].reshape(-1))
        q = rng.uniform(0.0, 1.0) if refine is None else 1.0 - refine
        if q >= 1.0:
            thr.append(int(s[-1]))  # nothing strictly above the top score
        elif q <= 0.0:
            thr.append(int(s[0]) - 1)  # everything above
        else:
            thr.append(int(s[min(len(s) - 1, int(q * len(s)))]) + int(rng.integers(-1, 2)))
    job.threshold = np.asarray(thr, dtype=np.int64)
    return job


def train_small_cnn(
    steps: int = 150,
    width: int = 4,
    rows: int = 4,
    cols: int = 4,
    score: str = "max",
    seed: int = 0,
    midpoint: bool = False,
) -> tuple[nn.Module, ImageDataset, float]:
    """A small CNN trained on sklearn's 8x8 digits for an ``rows x cols`` array, converted.

    FP32 training for ``steps`` SGD steps, then ``prepare`` (groups and blocks from the
    array), calibration and ``steps // 2`` quantization-aware steps with the budget penalty,
    then ``convert`` (``midpoint``: the mid-point offset in every dual layer). Returns
    ``(converted model, test split, test top-1 in %)``; takes a few seconds on a CPU.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only contend
    try:
        return _train_small_cnn(steps, width, rows, cols, score, seed, midpoint)
    finally:
        torch.set_num_threads(threads)


def _train_small_cnn(
    steps: int, width: int, rows: int, cols: int, score: str, seed: int, midpoint: bool
) -> tuple[nn.Module, ImageDataset, float]:
    import torch
    import torch.nn.functional as F

    from dynabit.config import QuantConfig
    from dynabit.data import load_dataset
    from dynabit.models.small_cnn import SmallCNN
    from dynabit.quant import budget_penalty, calibrate, convert, prepare, reset_stats

    torch.manual_seed(seed)
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    model = SmallCNN(in_channels=1, width=width, image_size=8)
    gen = torch.Generator().manual_seed(seed)

    def fit(net: torch.nn.Module, n: int, lr: float, penalty: bool) -> None:
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        net.train()
        for _ in range(n):
            idx = torch.randint(0, len(train), (64,), generator=gen)
            loss = F.cross_entropy(net(train.images[idx]), train.labels[idx])
            if penalty:
                loss = loss + budget_penalty(net)
            opt.zero_grad()
            loss.backward()
            opt.step()

    fit(model, steps, 0.05, False)
    cfg = QuantConfig(hardware={"rows": rows, "cols": cols}, score=score, midpoint=midpoint)  # type: ignore[arg-type]
    qmodel = prepare(model, cfg)
    calibrate(qmodel, [train.images[i : i + 256] for i in range(0, 1024, 256)])
    fit(qmodel, steps // 2, 0.01, True)
    reset_stats(qmodel)  # drops the last step's differentiable ratios
    frozen = convert(qmodel.eval(), strict=True)
    with torch.no_grad():
        top1 = float((frozen(test.images).argmax(1) == test.labels).float().mean()) * 100
    return frozen, test, top1
