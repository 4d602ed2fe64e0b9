"""Tiny run configs on sklearn digits, shared by the tests (importable: ``pythonpath = tests``).

A few steps of a narrow small CNN on 8x8 digits: seconds, yet it learns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynabit.config.run import RunConfig, validate_run
from dynabit.demo import DemoOptions

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


def tiny_cfg(quant: dict[str, Any] | None = None, **train: Any) -> RunConfig:
    """A digits run config: ``train`` fields update the train section, ``quant`` the quant one."""
    return validate_run(
        {"train": {**TINY_TRAIN, **train}, "quant": {**TINY_QUANT, **(quant or {})}}
    )


def tiny_demo_options(run_dir: Path, sim_samples: int) -> DemoOptions:
    """The main job on digits, one short epoch per stage: seconds."""
    return DemoOptions(
        run_dir=run_dir,
        dataset="digits",
        fp32_epochs=1,
        qat_epochs=1,
        max_steps_per_epoch=4,
        sim_samples=sim_samples,
        progress=False,
    )
