"""Per-layer static mixed precision: each budgeted layer A4 or A8, chosen by sensitivity.

The fair static alternative to dynamic precision on the same 4-bit array: a layer at 8 bits
runs two passes (4 + 4), a layer at 4 bits one. Which layers get 8 bits is chosen greedily
by measured sensitivity: starting from every budgeted layer at 8 bits, each layer alone is
put at 4 bits and the mean ``KL(FP32 || quantized)`` on the calibration batches is measured;
then, from all layers at 4 bits, the most sensitive are promoted to 8 bits while the
MAC-weighted ``B_avg`` (the one :func:`dynabit.quant.model_stats` measures) stays within the
target (a layer that would overshoot is skipped and the next one tried).

The result is an ordinary ``uniform`` config (:func:`dynabit.quant.baselines.method_config`)
with one override per 8-bit layer, so ``prepare``, ``calibrate``, QAT, ``convert``, the engine
and the budget statistics treat it like any other static config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dynabit.config.quant import QuantConfig
from dynabit.ptq import agreement
from dynabit.quant.baselines import method_config
from dynabit.quant.budget import budget_layers, model_stats, reset_stats
from dynabit.quant.calibrate import _as_inputs, calibrate

MIXED = "mixed"  # the method name the benchmarks use for it


def is_mixed(method: str) -> bool:
    """True for the per-layer mixed-precision method's name."""
    return method == MIXED


@dataclass
class MixedAssignment:
    """Activation bits per budgeted layer, with the measurements they were chosen from."""

    bits: dict[str, int]
    macs: dict[str, float]
    sensitivity: dict[str, float] = field(default_factory=dict)
    budget: float = 5.0
    low_bits: int = 4
    high_bits: int = 8

    @property
    def b_avg(self) -> float:
        """MAC-weighted average activation bits of the budgeted layers."""
        total = sum(self.macs.values())
        return sum(self.macs[n] * b for n, b in self.bits.items()) / total if total else 0.0

    @property
    def high_layers(self) -> list[str]:
        """The layers at ``high_bits``."""
        return [n for n, b in self.bits.items() if b == self.high_bits]

    def config(self, **fields: Any) -> QuantConfig:
        """The ``uniform`` config at ``low_bits`` with the 8-bit layers as overrides."""
        return mixed_config(self.bits, self.low_bits, **fields)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "budget": self.budget,
            "b_avg": self.b_avg,
            "low_bits": self.low_bits,
            "high_bits": self.high_bits,
            "high_layers": self.high_layers,
            "bits": dict(self.bits),
            "macs": dict(self.macs),
            "sensitivity": dict(self.sensitivity),
        }


def mixed_config(bits: dict[str, int], low_bits: int = 4, **fields: Any) -> QuantConfig:
    """``method_config("uniform", low_bits)`` with an override for every layer not at
    ``low_bits`` (patterns are the escaped layer names, so each matches its layer only)."""
    overrides = list(fields.pop("overrides", []))
    base = method_config("uniform", low_bits, overrides=overrides, **fields)
    for name, b in bits.items():
        if b != low_bits:
            settings: dict[str, Any] = {"uniform_bits": int(b)}
            if base.hi_bits <= b <= base.bits:  # B_target of a static layer: its width
                settings["budget"] = float(b)
            overrides.append({"pattern": re.escape(name), "settings": settings})
    return method_config("uniform", low_bits, overrides=overrides, **fields)


def check_budget(budget: float, low_bits: int = 4, high_bits: int = 8) -> None:
    """Refuse a budget the two widths cannot reach (``ValueError`` naming the range)."""
    if not low_bits <= budget <= high_bits:
        raise ValueError(
            f"mixed precision: budget {budget:g} must lie in [{low_bits}, {high_bits}]"
        )


def greedy_bits(
    sensitivity: dict[str, float],
    macs: dict[str, float],
    budget: float,
    low_bits: int = 4,
    high_bits: int = 8,
) -> dict[str, int]:
    """Promote the most sensitive layers to ``high_bits`` while ``B_avg <= budget``.

    Layers are tried in decreasing sensitivity (ties: registration order); one whose
    promotion would take the MAC-weighted ``B_avg`` over ``budget`` is skipped.
    """
    check_budget(budget, low_bits, high_bits)
    total = sum(macs.values())
    bits = dict.fromkeys(macs, low_bits)
    if total <= 0:
        return bits
    spent = float(low_bits) * total  # sum of MACs x bits
    order = sorted(macs, key=lambda n: -sensitivity.get(n, 0.0))
    for name in order:
        extra = (high_bits - low_bits) * macs[name]
        if (spent + extra) / total <= budget + 1e-9:
            bits[name] = high_bits
            spent += extra
    return bits


@torch.no_grad()
def layer_sensitivity(
    model: nn.Module,
    batches: Iterable[object],
    low_bits: int = 4,
    high_bits: int = 8,
    **fields: Any,
) -> tuple[dict[str, float], dict[str, float]]:
    """``(sensitivity, macs)`` of every budgeted layer of the float ``model``.

    ``sensitivity[name]``: the increase of the mean ``KL(FP32 || quantized)`` over the batches
    when ``name`` alone runs at ``low_bits`` and every other budgeted layer at ``high_bits``
    (each layer's scale calibrated for its width; scales come from a float pass, so they do
    not depend on the other layers' widths). ``macs[name]``: its MACs on the batches, as
    :func:`dynabit.quant.model_stats` counts them. ``fields`` go to ``method_config``.
    """
    inputs = [_as_inputs(b) for b in batches]
    if not inputs:
        raise ValueError("layer_sensitivity() needs at least one batch")
    model.eval()
    ref = torch.cat([model(x) for x in inputs])
    high = prepare_calibrated(model, method_config("uniform", high_bits, **fields), inputs)
    low = prepare_calibrated(model, method_config("uniform", low_bits, **fields), inputs)
    low_layers = dict(budget_layers(low))

    def kl() -> float:
        return agreement(ref, torch.cat([high(x) for x in inputs]))["kl"]

    reset_stats(high)
    base = kl()
    macs = {n: s.macs for n, s in model_stats(high).layers.items()}
    sensitivity: dict[str, float] = {}
    for name, layer in budget_layers(high):
        _swap(high, name, low_layers[name])
        try:
            sensitivity[name] = kl() - base
        finally:
            _swap(high, name, layer)
    return sensitivity, macs


def mixed_precision(
    model: nn.Module,
    batches: Iterable[object],
    budget: float,
    low_bits: int = 4,
    high_bits: int = 8,
    **fields: Any,
) -> MixedAssignment:
    """The per-layer assignment of the float ``model`` at ``B_avg <= budget`` (see the module
    docstring); ``assignment.config(**fields)`` is the config to ``prepare`` with."""
    inputs = [_as_inputs(b) for b in batches]
    sens, macs = layer_sensitivity(model, inputs, low_bits, high_bits, **fields)
    bits = greedy_bits(sens, macs, budget, low_bits, high_bits)
    return MixedAssignment(bits, macs, sens, float(budget), low_bits, high_bits)


def prepare_calibrated(model: nn.Module, config: QuantConfig, inputs: list) -> nn.Module:
    """``prepare`` a copy of ``model`` with ``config`` and calibrate it on ``inputs`` (eval)."""
    from dynabit.quant.prepare import prepare

    q = prepare(model, config)
    calibrate(q, inputs)
    return q.eval()


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)
