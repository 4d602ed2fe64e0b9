"""MACs per layer from PyTorch's own FLOP counter, and bit operations (BOPs).

``BOPs = sum over layers of MACs x weight bits x activation bits``, per sample, with the
activation bits of a dynamic layer its measured MAC-weighted ``B_avg`` (``B_hi + r * B_lo``
from :func:`dynabit.quant.model_stats`), of a static layer its bit width, and 32 x 32 for an
unquantized (FP32) layer.

MACs are counted on the *float* model (before ``prepare``): a prepared dynamic layer runs its
convolution twice (high and low pass), which the FLOP counter would count twice. The counter
reports 2 FLOPs per multiply-accumulate for convolutions and matrix products.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dynabit.quant.budget import BudgetStats, quant_layers

FP32_BITS = 32


def count_macs(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """MACs per sample of every ``Conv2d`` / ``Linear`` of a float model, by qualified name.

    ``example`` is one input batch (any batch size; the counts are divided by it).
    """
    if hasattr(model, "dynabit_config"):
        raise ValueError(
            "count_macs() needs the float model (before prepare): a prepared dynamic layer "
            "runs two passes and would be counted twice"
        )
    layers = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    prefix = type(model).__name__ + "."
    n = example.shape[0]
    out: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        name = key[len(prefix) :] if key.startswith(prefix) else key
        if name in layers:
            out[name] = int(sum(ops.values())) // 2 // n
    missing = sorted(layers - set(out))
    if missing:  # a layer the forward pass never reached: zero MACs
        out.update(dict.fromkeys(missing, 0))
    return out


@dataclass
class LayerBops:
    """One layer's MACs, bit widths and BOPs (per sample)."""

    macs: int
    weight_bits: int
    act_bits: float
    dynamic: bool

    @property
    def bops(self) -> float:
        return self.macs * self.weight_bits * self.act_bits


@dataclass
class BopsReport:
    """Per-layer and total MACs and BOPs of one model, per sample."""

    layers: dict[str, LayerBops] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.layers.values())

    @property
    def bops(self) -> float:
        return sum(s.bops for s in self.layers.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "macs": self.macs,
            "bops": self.bops,
            "layers": {n: {**asdict(s), "bops": s.bops} for n, s in self.layers.items()},
        }


def fp32_bops(macs: dict[str, int]) -> BopsReport:
    """BOPs of the unquantized model: 32-bit weights and activations everywhere."""
    return BopsReport(
        {n: LayerBops(m, FP32_BITS, float(FP32_BITS), False) for n, m in macs.items()}
    )


def layer_bits(
    model: nn.Module, stats: BudgetStats | dict[str, Any] | None = None
) -> dict[str, tuple[int, float, bool]]:
    """``name -> (weight bits, activation bits, dynamic)`` of a prepared model.

    A dynamic layer's activation bits are its measured ``B_avg`` from ``stats`` (a
    :class:`BudgetStats` or its ``to_dict()``, e.g. a run's evaluation statistics); without
    ``stats`` (or when a layer saw no data) they are its full ``B``, the worst case.
    """
    layers = stats.to_dict()["layers"] if isinstance(stats, BudgetStats) else None
    if isinstance(stats, dict):
        layers = stats.get("layers", stats)
    out: dict[str, tuple[int, float, bool]] = {}
    for name, m in quant_layers(model):
        act = float(m.act_quant.bits)
        if m.dynamic and layers and name in layers:
            b = layers[name].get("b_avg")
            if b is not None and b == b:  # not NaN
                act = float(b)
        out[name] = (int(m.qcfg.weight_bits), act, bool(m.dynamic))
    return out


def model_bops(
    macs: dict[str, int],
    model: nn.Module | None = None,
    stats: BudgetStats | dict[str, Any] | None = None,
) -> BopsReport:
    """BOPs per sample from :func:`count_macs` and a prepared ``model`` (with measured
    ``stats``); ``model=None`` is the FP32 model (32 x 32 bits)."""
    if model is None:
        return fp32_bops(macs)
    bits = layer_bits(model, stats)
    unknown = sorted(set(bits) - set(macs))
    if unknown:
        raise ValueError(f"no MAC count for quantized layer(s) {unknown}: count the same model")
    report = BopsReport()
    for name, n in macs.items():
        if name in bits:
            w, a, dyn = bits[name]
            report.layers[name] = LayerBops(n, w, a, dyn)
        else:  # left in float
            report.layers[name] = LayerBops(n, FP32_BITS, float(FP32_BITS), False)
    return report
