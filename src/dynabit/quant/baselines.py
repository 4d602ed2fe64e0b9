"""Method presets: dynabit, its variants, and the baselines it is measured against.

Every method runs through the same ``prepare`` / ``calibrate`` / training loop; a method is a
:class:`~dynabit.config.QuantConfig` whose ``method`` field fills the per-layer settings the
user did not give (:data:`~dynabit.config.quant.METHOD_PRESETS`):

- ``fp32``: no quantization (train with ``train.quantize: false``);
- ``uniform``: the budgeted layers static at ``uniform_bits`` activation bits (W8A8, W8A4, ...);
- ``pg``: Precision-Gating-style per-element gating, per-output-channel thresholds pulled toward
  a target;
- ``drq``: DRQ-style input regions (all channels of a pixel patch), scored by their mean, with
  thresholds fixed by calibration to the target ratio;
- ``dynabit``: hardware-shaped blocks and groups, trainable per-block thresholds and bounds.

Variants (``dynabit-mean``, ``dynabit-midpoint-enforce``, ``pg-midpoint``, ...) are a dynamic
method plus named field changes from :data:`SWITCHES`. See ``docs/baselines.md`` for the
mapping onto the papers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from dynabit.config.quant import METHOD_PRESETS, QuantConfig

METHODS: tuple[str, ...] = tuple(METHOD_PRESETS)

# Named switches, each against the default (max score, output-directed, bounds only in training,
# plain truncation, blocks and groups from the default 16 x 16 array). A variant is a dynamic
# method and switches joined by "-": "dynabit-mean", "dynabit-midpoint-enforce", "pg-midpoint".
SWITCHES: dict[str, dict[str, Any]] = {
    "mean": {"score": "mean"},
    "input": {"decision": "input"},
    "enforce": {"enforce_bounds": True},
    "midpoint": {"midpoint": True},
    "dual": {"scale_fit": "dual"},
    "hw8x8": {"hardware": {"rows": 8, "cols": 8}},
}
DYNAMIC_METHODS: tuple[str, ...] = ("dynabit", "pg", "drq")
VARIANTS: tuple[str, ...] = tuple(f"dynabit-{s}" for s in SWITCHES)


def split_method(name: str) -> tuple[str, dict[str, Any]]:
    """``"dynabit-mean"`` -> ``("dynabit", {"score": "mean"})``; a plain method has no fields."""
    if name in METHODS:
        return name, {}
    base, *switches = name.split("-")
    if base not in DYNAMIC_METHODS or not switches or any(s not in SWITCHES for s in switches):
        raise ValueError(
            f"unknown method {name!r}; allowed: {', '.join(METHODS)}, or one of "
            f"{', '.join(DYNAMIC_METHODS)} followed by switches -{', -'.join(SWITCHES)} "
            "(e.g. dynabit-midpoint)"
        )
    fields: dict[str, Any] = {}
    for s in switches:
        fields.update(SWITCHES[s])
    return base, fields


def quantizes(method: str) -> bool:
    """False for ``fp32`` (and its variants), which train without quantization."""
    return split_method(method)[0] != "fp32"


def method_config(method: str, budget: float = 5.0, **fields: Any) -> QuantConfig:
    """The quantization config of ``method`` (or a variant) at a bit budget.

    ``budget`` is ``B_target`` for the dynamic methods and the activation bit width for
    ``uniform`` (an integer); ``fields`` are further ``QuantConfig`` fields (they win over the
    preset). 8-bit activations split 4 + 4 and 8-bit weights unless ``fields`` say otherwise.
    """
    base, variant = split_method(method)
    data: dict[str, Any] = {"method": base, **variant, **fields}
    if base == "uniform":
        bits = float(budget)
        if not bits.is_integer():
            raise ValueError(f"uniform quantization needs an integer bit width, got {budget}")
        data.setdefault("uniform_bits", int(bits))
        # B_target only matters to dynamic layers; keep it valid for the layer fields.
        hi, b = data.get("hi_bits", 4), data.get("bits", 8)
        data.setdefault("budget", float(min(max(bits, hi), b)))
    elif base != "fp32":
        data.setdefault("budget", float(budget))
    return QuantConfig.model_validate(data)


def describe(cfg: QuantConfig, layer: str = "layer") -> str:
    """One line saying what a layer of this config computes (for logs and reports)."""
    lc = cfg.for_layer(layer)
    if cfg.method == "fp32":
        return "fp32: no quantization"
    if lc.uniform_bits is not None:
        return f"uniform: W{lc.weight_bits}A{lc.uniform_bits}, static"
    if not lc.dynamic:
        return f"static: W{lc.weight_bits}A{lc.static_bits}"
    block = "all channels" if lc.block_all_channels else f"{lc.block_size} channels"
    return (
        f"{cfg.method}: W{lc.weight_bits}A{lc.bits} = {lc.hi_bits}+{lc.lo_bits}, "
        f"B_target {lc.budget:g}, {lc.decision}-directed, {lc.score} over "
        f"{lc.group[0]}x{lc.group[1]} groups, blocks of {block}, thresholds "
        f"{'trained' if lc.train_thresholds else 'fixed'}"
        + (f", pull {lc.threshold_penalty:g}" if lc.threshold_penalty > 0 else "")
        + (", bounds enforced" if lc.enforce_bounds else "")
        + (", mid-point" if lc.midpoint else "")
    )


@torch.no_grad()
def recalibrate_thresholds(
    model: nn.Module, batches: Iterable[object], ratio: float | None = None
) -> None:
    """Set every block threshold again from score quantiles, leaving the scales as trained.

    DRQ sets its fixed thresholds offline on the network it runs: after QAT with the thresholds
    frozen at their initial calibration, this sets them on the fine-tuned network so each block
    refines ``r*`` (or ``ratio``) again. Batches are tensors or ``(inputs, labels)`` pairs.
    """
    from dynabit.quant.budget import quant_layers, reset_stats
    from dynabit.quant.calibrate import _as_inputs, _calibrate_thresholds

    inputs = [_as_inputs(b) for b in batches]
    if not inputs:
        raise ValueError("recalibrate_thresholds() needs at least one batch")
    layers = [m for _, m in quant_layers(model)]
    was_training = model.training
    model.eval()
    try:
        _calibrate_thresholds(model, inputs, ratio)
    finally:
        for m in layers:
            m.set_calibrating(False)
        model.train(was_training)
        reset_stats(model)
