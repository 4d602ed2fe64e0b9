"""Training configuration: data, model, optimizer, schedule and the budget penalties."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """One training run (FP32 or quantization-aware)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: Literal["fashion-mnist", "mnist", "idx", "digits", "cifar10"] = "fashion-mnist"
    data_dir: str | None = Field(None, description="Dataset directory; None: the default place.")
    train_subset: int | None = Field(None, ge=1, description="Use only the first N train samples.")
    test_subset: int | None = Field(None, ge=1, description="Use only the first N test samples.")
    model: Literal["small_cnn", "resnet20", "resnet18"] = "small_cnn"
    width: int = Field(16, ge=1, le=512, description="Base channel width of the model.")
    epochs: int = Field(4, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0.0, le=10.0)
    threshold_lr: float = Field(0.05, gt=0.0, le=10.0, description="LR of block thresholds.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_size: int = Field(30, ge=1, description="Epochs between LR drops (step schedule).")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="LR factor per step (step schedule).")
    quantize: bool = Field(True, description="Quantization-aware training (False: FP32).")
    init_from: str | None = Field(None, description="Warm start from this checkpoint (FP32).")
    calib_batches: int = Field(4, ge=1, description="Batches that set scales and thresholds.")
    seed: int = 0
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes.")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="Cap steps (smoke tests).")
