"""Tiny run configs on sklearn digits (tests import nothing from here: use the fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from dynabit.config.run import RunConfig, validate_run

# Tiny tensors: one thread is fastest, and OpenMP spin-waits make 2 threads crawl on a busy box.
torch.set_num_threads(1)

# A few steps of a narrow small CNN on 8x8 digits: seconds, yet it learns.
TINY_TRAIN: dict[str, Any] = {
    "dataset": "digits",
    "model": "small_cnn",
    "width": 8,
    "epochs": 2,
    "batch_size": 32,
    "eval_batch_size": 256,
    "optimizer": "adam",
    "lr": 0.01,
    "threshold_lr": 0.01,
    "max_steps_per_epoch": 6,
    "train_subset": 600,
    "test_subset": 200,
    "calib_batches": 2,
    "progress": False,
    "log_every": 1,
    "quantize": False,
}
TINY_QUANT: dict[str, Any] = {"budget": 5.0, "hardware": {"rows": 4, "cols": 4}}


@pytest.fixture
def tiny_cfg() -> Callable[..., RunConfig]:
    """``tiny_cfg(**train_fields)``: a digits run config; ``quant=`` updates the quant section."""

    def make(quant: dict[str, Any] | None = None, **train: Any) -> RunConfig:
        return validate_run(
            {"train": {**TINY_TRAIN, **train}, "quant": {**TINY_QUANT, **(quant or {})}}
        )

    return make
