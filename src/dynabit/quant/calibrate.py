"""Training-free calibration: activation scales, then per-block thresholds from score quantiles."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from dynabit.quant.budget import dynamic_layers, quant_layers
from dynabit.quant.layers import QuantLayerMixin
from dynabit.quant.quantizers import DualSplit
from dynabit.utils.progress import progress_bar


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
) -> None:
    """Set activation scales, then each block's threshold so it refines its target ratio.

    Scales come from a float pass (MSE-optimal clipping per quantizer). Thresholds are set
    layer by layer in execution order, each from the scores its block sees with the earlier
    layers already decided: the ``1 - r`` quantile of its group scores, with ``r`` the layer's
    ``r*`` (or ``ratio``). The score scale that normalizes scores and the surrogate temperature
    is set here too. Batches are tensors or ``(inputs, labels)`` pairs. ``progress`` shows a
    bar over the forward passes (one per batch for the scales, then one per batch and dynamic
    layer for the thresholds).
    """
    inputs = [_as_inputs(b) for b in batches]
    if not inputs:
        raise ValueError("calibrate() needs at least one batch")
    layers = quant_layers(model)
    if not layers:
        raise ValueError("model has no quantized layers: call dynabit.quant.prepare() first")
    passes = len(inputs) * (1 + (len(dynamic_layers(model)) if thresholds else 0))
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
            _calibrate_thresholds(model, inputs, ratio, bar.update)
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
) -> None:
    layers = [m for _, m in dynamic_layers(model)]
    for m in layers:
        m.set_calibrating(True)
        m.thresholds_calibrated.fill_(False)
    for m in _execution_order(model, layers, inputs[0]):
        m.collect_scores()
        for x in inputs:
            model(x)
            advance(1)
        scores = m.take_scores()  # (N, blocks, gh, gw), normalized by the old scale
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
