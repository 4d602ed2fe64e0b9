"""dynabit: dynamic bit-width neural networks.

Activations are quantized to ``B`` bits and split into a high and a low part; every layer runs
the high pass, and the low pass only for the groups whose score exceeds their block's
threshold, under a bit budget.
"""

from dynabit.config import HardwareConfig, QuantConfig, TrainConfig
from dynabit.quant import (
    budget_penalty,
    calibrate,
    convert,
    model_stats,
    prepare,
    record_decisions,
    reset_stats,
)

__version__ = "0.1.0"

__all__ = [
    "HardwareConfig",
    "QuantConfig",
    "TrainConfig",
    "budget_penalty",
    "calibrate",
    "convert",
    "model_stats",
    "prepare",
    "record_decisions",
    "reset_stats",
]
