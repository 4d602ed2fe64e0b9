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

Variants of dynabit (``dynabit-mean``, ``dynabit-input``, ...) are named field changes, listed
in :data:`VARIANTS`. See ``docs/baselines.md`` for the mapping onto the papers.
"""

from __future__ import annotations

from typing import Any

from dynabit.config.quant import METHOD_PRESETS, QuantConfig

METHODS: tuple[str, ...] = tuple(METHOD_PRESETS)

# dynabit's own switches, each against the default (max score, output-directed, bounds only in
# training, plain truncation, blocks and groups from the default 16 x 16 array).
VARIANTS: dict[str, dict[str, Any]] = {
    "dynabit-mean": {"score": "mean"},
    "dynabit-input": {"decision": "input"},
    "dynabit-enforce": {"enforce_bounds": True},
    "dynabit-midpoint": {"midpoint": True},
    "dynabit-hw8x8": {"hardware": {"rows": 8, "cols": 8}},
}


def split_method(name: str) -> tuple[str, dict[str, Any]]:
    """``"dynabit-mean"`` -> ``("dynabit", {"score": "mean"})``; a plain method has no fields."""
    if name in METHODS:
        return name, {}
    if name in VARIANTS:
        return name.split("-", 1)[0], dict(VARIANTS[name])
    allowed = ", ".join([*METHODS, *VARIANTS])
    raise ValueError(f"unknown method {name!r}; allowed: {allowed}")


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
