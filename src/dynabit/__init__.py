"""dynabit: dynamic bit-width neural networks.

Activations are quantized to ``B`` bits and split into a high and a low part; every layer runs
the high pass, and the low pass only for the groups whose score exceeds their block's
threshold, under a bit budget.

The main entry point of each stage, on the data's path:

- configure: :class:`QuantConfig`, :class:`HardwareConfig`, :class:`TrainConfig`
- quantize: :func:`prepare`, :func:`calibrate`, :func:`budget_penalty`, :func:`model_stats`,
  :func:`reset_stats`, :func:`record_decisions`, :func:`convert`
- train: :func:`run_training` (a run directory from a config), :func:`load_model`,
  :func:`evaluate_checkpoint`
- integer engine: :func:`lower`, :func:`lower_checkpoint`, :func:`evaluate_program`
- accelerator model: :func:`run_simulation` (what ``dynabit simulate`` does: a model, program
  or named network, real or synthetic masks, a hardware config -> cycles, traffic, energy),
  :func:`simulate_run` (its shortcut for a model, program or run and its images)
- export: :func:`export_onnx`, :func:`check_onnx`
- the main job and its report: :func:`run_demo`, :func:`write_report`

Everything beyond the quantization step is imported on first use.
"""

from importlib import import_module
from typing import Any

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

# Name -> module of the entry points imported on first use (they pull in more of the stack).
_LAZY = {
    "run_training": "dynabit.train",
    "load_model": "dynabit.train",
    "evaluate_checkpoint": "dynabit.train",
    "lower": "dynabit.engine",
    "lower_checkpoint": "dynabit.engine",
    "evaluate_program": "dynabit.engine",
    "run_simulation": "dynabit.hardware",
    "simulate_run": "dynabit.hardware",
    "export_onnx": "dynabit.export",
    "check_onnx": "dynabit.export",
    "run_demo": "dynabit.demo",
    "write_report": "dynabit.reports",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dynabit' has no attribute {name!r}")


__all__ = [
    "HardwareConfig",
    "QuantConfig",
    "TrainConfig",
    "budget_penalty",
    "calibrate",
    "check_onnx",
    "convert",
    "evaluate_checkpoint",
    "evaluate_program",
    "export_onnx",
    "load_model",
    "lower",
    "lower_checkpoint",
    "model_stats",
    "prepare",
    "record_decisions",
    "reset_stats",
    "run_demo",
    "run_simulation",
    "run_training",
    "simulate_run",
    "write_report",
]
