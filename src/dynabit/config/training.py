"""Training configuration: data, model, optimizer, schedule, checkpoints and logging."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from dynabit.config.io import StrictConfig


class TrainConfig(StrictConfig):
    """One training run (FP32 or quantization-aware).

    ``batch_size`` is the *global* batch: under ``torchrun`` each of the ``W`` processes takes
    ``batch_size / W`` samples per step, so a step sees the same samples whatever ``W`` is.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    dataset: Literal["fashion-mnist", "mnist", "idx", "digits", "cifar10"] = "fashion-mnist"
    data_dir: str | None = Field(None, description="Dataset directory; None: the default place.")
    train_subset: int | None = Field(None, ge=1, description="Use only the first N train samples.")
    test_subset: int | None = Field(None, ge=1, description="Use only the first N test samples.")
    model: Literal["small_cnn", "resnet20", "resnet18", "mobilenet_v2"] = "small_cnn"
    width: int | None = Field(
        None, ge=1, le=512, description="Base channel width; None: the model's default."
    )
    epochs: int = Field(4, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536, description="Global batch (all processes).")
    eval_batch_size: int = Field(
        128,
        ge=1,
        le=65_536,
        description="Batch used for evaluation (small batches stay in the CPU's caches).",
    )
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0.0, le=10.0)
    threshold_lr: float = Field(0.05, gt=0.0, le=10.0, description="LR of block thresholds.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_size: int = Field(30, ge=1, description="Epochs between LR drops (step schedule).")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="LR factor per step (step schedule).")
    quantize: bool = Field(True, description="Quantization-aware training (False: FP32).")
    init_from: str | None = Field(
        None, description="Warm start: FP32 run dir, checkpoint folder or .safetensors file."
    )
    calib_batches: int = Field(4, ge=1, description="Batches that set scales and thresholds.")
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seed of every random stream (a 63-bit integer)."
    )
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes.")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="Cap steps (smoke tests).")
    checkpoint_every: int | None = Field(
        None, ge=1, description="Also checkpoint every N optimizer steps (besides epoch ends)."
    )
    keep_checkpoints: int = Field(3, ge=1, le=1000, description="Keep the last K checkpoints.")
    log_every: int = Field(50, ge=1, description="Write a step record to metrics.jsonl every N.")
    progress: bool = Field(True, description="Show progress bars (rank 0 only).")
