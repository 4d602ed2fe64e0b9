"""Training-free calibration: activation scales, then per-block thresholds from score quantiles."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from dynabit.quant.budget import dynamic_layers, quant_layers
from dynabit.quant.layers import QuantLayerMixin
from dynabit.quant.quantizers import DualSplit
from dynabit.utils.progress import progress_bar

SEQUENTIAL = None  # ``threshold_passes``: one pass over the batches per dynamic layer


def _as_inputs(batch: object) -> torch.Tensor:
    """Accept a tensor or an ``(inputs, labels)`` pair."""
    if isinstance(batch, list | tuple):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            f"calibration batches must be tensors or (inputs, labels), got {type(batch)}"
        )
    return batch


def threshold_for_ratio(
    scores: torch.Tensor, ratio: float, weights: torch.Tensor | None = None
) -> float:
    """A threshold such that the (weighted) share of ``scores`` strictly above it is ``ratio``.

    ``weights`` (same shape) count each score's elements, so partial groups weigh less.
    """
    flat = scores.flatten().double()
    w = torch.ones_like(flat) if weights is None else weights.flatten().double()
    order = torch.argsort(flat, descending=True, stable=True)
    s, cum = flat[order], torch.cumsum(w[order], 0)
    # k: how many of the highest scores to refine so their weight is closest to the target.
    target = ratio * float(cum[-1])
    err = (torch.cat([cum.new_zeros(1), cum]) - target).abs()
    # Only cuts between distinct scores are realisable: tied scores refine together.
    cut = torch.ones_like(err, dtype=torch.bool)
    cut[1:-1] = s[:-1] > s[1:]
    k = int(torch.argmin(torch.where(cut, err, torch.inf)))
    if k <= 0:
        return float(s[0])
    if k >= s.numel():
        return float(s[-1]) - 1.0
    return float((s[k - 1] + s[k]) / 2)


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[object],
    ratio: float | None = None,
    thresholds: bool = True,
    progress: bool = False,
    threshold_passes: int | None = SEQUENTIAL,
) -> None:
    """Set activation scales, then each block's threshold so it refines its target ratio.

    Scales come from a float pass (MSE-optimal clipping per quantizer). Thresholds are set
    layer by layer in execution order, each from the scores its block sees with the earlier
    layers already decided: the ``1 - r`` quantile of its group scores, with ``r`` the layer's
    ``r*`` (or ``ratio``). The score scale that normalizes scores and the surrogate temperature
    is set here too. Batches are tensors or ``(inputs, labels)`` pairs. ``progress`` shows a
    bar over the forward passes (one per batch for the scales, then the threshold passes).

    ``threshold_passes``: ``None`` (:data:`SEQUENTIAL`), one pass over the batches per dynamic
    layer as above; ``k``, ``k`` passes over the batches in which every dynamic layer keeps its
    scores at once, the first with every layer refining everything (each layer's thresholds
    then assume full-precision inputs), each later one with every layer deciding at the
    thresholds of the pass before (the sequential result once ``k`` reaches the depth).
    """
    inputs = [_as_inputs(b) for b in batches]
    if not inputs:
        raise ValueError("calibrate() needs at least one batch")
    layers = quant_layers(model)
    if not layers:
        raise ValueError("model has no quantized layers: call dynabit.quant.prepare() first")
    n_thr = len(dynamic_layers(model)) if threshold_passes is None else threshold_passes
    passes = len(inputs) * (1 + (n_thr if thresholds else 0))
    bar = progress_bar(total=passes, desc="calibration", unit="pass", disable=not progress)
    was_training = model.training
    model.eval()
    try:
        for _, m in layers:
            m.act_quant.start_observation()
        for x in inputs:
            model(x)
            bar.update(1)
        for _, m in layers:
            m.act_quant.finish_observation(_dual_split(m))
        if thresholds:
            _calibrate_thresholds(model, inputs, ratio, bar.update, threshold_passes)
    finally:
        bar.close()
        for _, m in layers:
            m.set_calibrating(False)
        model.train(was_training)
        for _, m in layers:
            m.reset_stats()


def _dual_split(m: QuantLayerMixin) -> DualSplit | None:
    """The split a ``scale_fit: dual`` layer's scale is fitted for (None: fit the full codes)."""
    c = m.qcfg
    if not (m.dynamic and c.scale_fit == "dual"):
        return None
    return DualSplit(c.lo_bits, min(max(c.target_ratio, 0.0), 1.0), c.midpoint)


def _calibrate_thresholds(
    model: nn.Module,
    inputs: list[torch.Tensor],
    ratio: float | None,
    advance: Callable[[int], object] = lambda n: None,
    passes: int | None = SEQUENTIAL,
) -> None:
    """Every dynamic layer's thresholds: one layer at a time in execution order
    (``passes=None``), or from ``passes`` joint passes (see :func:`calibrate`)."""
    if passes is not None and passes < 1:
        raise ValueError(f"threshold_passes must be None (sequential) or >= 1, got {passes}")
    layers = [m for _, m in dynamic_layers(model)]
    for m in layers:
        m.set_calibrating(True)
        m.thresholds_calibrated.fill_(False)
    if passes is None:
        for m in _execution_order(model, layers, inputs[0]):
            m.collect_scores()
            for x in inputs:
                model(x)
                advance(1)
            set_thresholds(m, m.take_scores(), ratio)
        return
    for _ in range(passes):
        for m in layers:
            m.collect_scores()
        for x in inputs:
            model(x)
            advance(1)
        # Take every layer's scores before setting any threshold: one pass, one set of inputs.
        scores = [m.take_scores() for m in layers]
        for m, sc in zip(layers, scores, strict=True):
            set_thresholds(m, sc, ratio)


def set_thresholds(m: QuantLayerMixin, scores: torch.Tensor, ratio: float | None) -> None:
    """Score scale and per-block thresholds of ``m`` from the group scores it kept,
    ``(N, blocks, gh, gw)`` normalized by its old score scale: the ``1 - r`` quantiles."""
    raw = scores * m.score_scale
    finite = raw[torch.isfinite(raw)]
    spread = float(finite.std()) if finite.numel() > 1 else 0.0
    m.score_scale.fill_(spread if spread > 0 else max(float(finite.abs().max()), 1.0))
    target = m.qcfg.target_ratio if ratio is None else ratio
    per_block = raw.transpose(0, 1).reshape(raw.shape[1], -1) / m.score_scale
    grid = m.last_grid
    assert grid is not None  # the layer ran
    counts = grid.valid_counts().unsqueeze(0).expand(raw.shape[0], -1, -1, -1)
    counts = counts.transpose(0, 1).reshape(raw.shape[1], -1)
    m.threshold.data.copy_(
        torch.tensor(
            [threshold_for_ratio(b, target, c) for b, c in zip(per_block, counts, strict=True)]
        )
    )
    m.thresholds_calibrated.fill_(True)


def _execution_order(
    model: nn.Module, layers: list[QuantLayerMixin], x: torch.Tensor
) -> list[QuantLayerMixin]:
    """Dynamic layers in the order a forward pass reaches them."""
    order: list[QuantLayerMixin] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _: order.append(mod)) for m in layers]
    try:
        model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    seen: list[QuantLayerMixin] = []
    for m in order:
        if m not in seen:
            seen.append(m)
    return seen + [m for m in layers if m not in seen]
