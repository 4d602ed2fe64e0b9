"""Quantization layers and model preparation: the dynabit method.

The public surface: :func:`prepare` swaps a float model's conv/linear layers for quantized
ones, :func:`calibrate` sets their scales and block thresholds, :func:`budget_penalty` is the
QAT loss term, :func:`model_stats` / :func:`reset_stats` / :func:`record_decisions` measure
what the layers decided, and :func:`convert` freezes an integer-faithful copy. The layer
classes, the layer walkers and the errors a user may catch are exported too; everything else
(the layer mixin, the decision counters a checkpoint saves, the quantizers) lives in its
submodule (``dynabit.quant.layers``, ``.budget``, ``.quantizers``, ``.baselines``, ``.bops``).
"""

from dynabit.quant.budget import (
    BudgetStats,
    LayerStats,
    budget_penalty,
    dynamic_layers,
    model_stats,
    quant_layers,
    record_decisions,
    reset_stats,
)
from dynabit.quant.calibrate import calibrate
from dynabit.quant.layers import NotCalibratedError, QuantConv2d, QuantLinear
from dynabit.quant.prepare import convert, prepare

__all__ = [
    "BudgetStats",
    "LayerStats",
    "NotCalibratedError",
    "QuantConv2d",
    "QuantLinear",
    "budget_penalty",
    "calibrate",
    "convert",
    "dynamic_layers",
    "model_stats",
    "prepare",
    "quant_layers",
    "record_decisions",
    "reset_stats",
]
