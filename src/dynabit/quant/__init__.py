"""Quantization layers and model preparation: the dynabit method."""

from dynabit.quant.budget import (
    BudgetStats,
    LayerStats,
    budget_penalty,
    dynamic_layers,
    load_stats_state,
    model_stats,
    quant_layers,
    record_decisions,
    reset_stats,
    stats_state,
)
from dynabit.quant.calibrate import calibrate
from dynabit.quant.layers import NotCalibratedError, QuantConv2d, QuantLayerMixin, QuantLinear
from dynabit.quant.prepare import convert, prepare

__all__ = [
    "BudgetStats",
    "LayerStats",
    "NotCalibratedError",
    "QuantConv2d",
    "QuantLayerMixin",
    "QuantLinear",
    "budget_penalty",
    "calibrate",
    "convert",
    "dynamic_layers",
    "load_stats_state",
    "model_stats",
    "prepare",
    "quant_layers",
    "record_decisions",
    "reset_stats",
    "stats_state",
]
