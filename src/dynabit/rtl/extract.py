"""Layers of a converted dynabit model as :class:`~dynabit.rtl.program.LayerJob` s.

The integer engine (:mod:`dynabit.engine`) is the reference: :func:`engine_jobs` lowers a
converted model, runs it on a batch keeping every layer's input codes and accumulators, and
turns each output-directed dynamic conv/linear into a job (weights, bias, codes as im2col
windows, block thresholds, score multipliers) plus the engine's accumulators and masks, which
the tile must reproduce bit for bit. :func:`frozen_reference` reads the same quantities off the
frozen PyTorch layer, as an independent second reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dynabit.config.layer import LayerSpec
from dynabit.rtl.program import LayerJob

if TYPE_CHECKING:
    from dynabit.engine import Op


class UnsupportedForRtl(ValueError):
    """The layer uses a feature the RTL tile does not implement."""


@dataclass
class Reference:
    """What a reference computed for a job: ``acc`` ``(N, C_out, H, W)``, ``mask``."""

    acc: np.ndarray
    mask: np.ndarray
    source: str


def im2col(
    codes: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """``(N, C_in, H, W)`` integer codes -> ``(N, C_in*kh*kw, H_out, W_out)`` windows.

    Zero padding (code 0), ``k = (c_in, ky, kx)`` order like the weights' flattening.
    """
    x = codes.to(torch.float64)  # integers < 2**53: exact
    n, _, h, w = x.shape
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return cols.reshape(n, -1, ho, wo).round().to(torch.int64).numpy()


def job_from_op(op: Op, codes: torch.Tensor, spec: LayerSpec) -> LayerJob:
    """A job from an engine :class:`~dynabit.engine.Op`, its
    :meth:`~dynabit.engine.IntegerProgram.layer_spec` and the layer's input codes."""
    a, prm, name = op.attrs, op.params, op.name
    if not spec.dynamic:
        raise UnsupportedForRtl(f"{name}: a static layer (the RTL tile is the dynamic datapath)")
    problems = []
    if spec.decision != "output":
        problems.append("input-directed decisions")
    if spec.k_bounds is not None:
        problems.append("enforced top-k bounds")
    if spec.groups != 1:
        problems.append("grouped convolution")
    if problems:
        raise UnsupportedForRtl(f"{name}: the RTL tile does not implement " + ", ".join(problems))
    w = prm["weight"].to(torch.int64)
    c_out = int(w.shape[0])
    if spec.kind == "conv":
        cols = im2col(codes, spec.kernel, spec.stride, spec.padding, spec.dilation)
    else:
        cols = codes.reshape(codes.shape[0], -1, 1, 1).to(torch.int64).numpy()
    return LayerJob(
        w=w.reshape(c_out, -1).numpy(),
        bias=prm["bias"].to(torch.int64).numpy(),
        cols=cols,
        hi_bits=spec.hi_bits,
        lo_bits=spec.lo_bits,
        act_signed=bool(a["signed"]),
        threshold=prm["threshold"].to(torch.int64).numpy(),
        score_mult=prm["score_mult"].to(torch.int64).numpy(),
        score=spec.score,
        group=spec.group,
        block_size=spec.block_size,
        weight_bits=int(a.get("weight_bits", 8)),
        name=name,
        spec=spec,
        midpoint=bool(a.get("midpoint")),
    )


def engine_jobs(
    model: nn.Module, x: torch.Tensor, names: list[str] | None = None
) -> list[tuple[LayerJob, Reference]]:
    """Lower the converted ``model``, run the engine on ``x`` and return each dynamic layer's
    job with the engine's accumulators and masks (``names``: only these layers)."""
    from dynabit.engine import Executor, lower

    program = lower(model, tuple(x.shape[1:]))
    result = Executor(program)(x, keep=True)
    traces = {lt.name: lt for lt in result.trace.layers}
    out = []
    for op in program.dynamic_ops():
        if names is not None and op.name not in names:
            continue
        lt = traces[op.name]
        job = job_from_op(op, lt.codes, program.layer_spec(op))
        acc = lt.acc.to(torch.int64)
        acc = acc.reshape(acc.shape[0], acc.shape[1], *job.out_hw).numpy()
        out.append((job, Reference(acc, lt.mask.numpy().astype(bool), "engine")))
    if names is not None:
        missing = sorted(set(names) - {j.name for j, _ in out})
        if missing:
            raise KeyError(f"no dynamic layer named {missing}; have {[j.name for j, _ in out]}")
    return out


def frozen_reference(model: nn.Module, layer_name: str, x: torch.Tensor) -> Reference:
    """Accumulators and masks of the frozen PyTorch layer ``layer_name`` on ``x``."""
    from dynabit.quant import quant_layers

    layers = dict(quant_layers(model))
    if layer_name not in layers:
        raise KeyError(f"no quantized layer {layer_name!r}")
    layer = layers[layer_name]
    record: dict[str, list[torch.Tensor]] = {"codes": [], "acc": []}
    masks: list[torch.Tensor] = []
    layer.record_integers(record)
    layer.record_masks(masks)
    try:
        with torch.no_grad():
            model(x)
    finally:
        layer.record_integers(None)
        layer.record_masks(None)
    acc = torch.cat(record["acc"]).to(torch.int64)
    acc = acc.reshape(acc.shape[0], acc.shape[1], *(acc.shape[2:] or (1, 1)))
    return Reference(acc.numpy(), torch.cat(masks).numpy().astype(bool), "frozen torch")
