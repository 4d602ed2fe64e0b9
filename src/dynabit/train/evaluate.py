"""Evaluation: top-1, loss and (for quantized models) measured ``B_avg``, summed over ranks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dynabit.config.run import RunConfig
from dynabit.data.base import DatasetInfo, ImageDataset, check_finite
from dynabit.train.checkpoint import CheckpointError, load_checkpoint
from dynabit.train.distributed import (
    DistEnv,
    ShardedSampler,
    all_reduce_sum,
    current_env,
    init_distributed,
    shutdown,
)
from dynabit.train.rundir import resolve_run
from dynabit.utils.progress import progress_bar


@dataclass
class EvalResult:
    """Figures of one evaluation (global over all ranks)."""

    top1: float  # percent
    loss: float
    samples: int
    stats: dict[str, Any] | None = field(default=None)  # BudgetStats.to_dict() when quantized

    @property
    def b_avg_macs(self) -> float | None:
        return None if self.stats is None else self.stats["b_avg_macs"]

    @property
    def b_avg_elements(self) -> float | None:
        return None if self.stats is None else self.stats["b_avg_elements"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_quantized(model: nn.Module) -> bool:
    """True for a model returned by ``dynabit.quant.prepare``."""
    return hasattr(unwrap(model), "dynabit_config")


def inputs_at(dataset: Dataset, idx: torch.Tensor) -> torch.Tensor:
    """The input images at ``idx`` as one batch."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images[idx]
    return torch.stack([dataset[int(i)][0] for i in idx])


def iterate_batches(
    dataset: Dataset, sampler: ShardedSampler, batch_size: int, workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches in ``sampler`` order; in-memory datasets are sliced directly (no per-item copy)."""
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if workers == 0 and isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        idx = torch.tensor(list(iter(sampler)), dtype=torch.long)
        for chunk in idx.split(batch_size):
            if len(chunk):  # an epoch resumed at its end has nothing left
                yield images[chunk], labels[chunk]
        return
    yield from DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 128,
    env: DistEnv | None = None,
    progress: bool = False,
) -> EvalResult:
    """Top-1 (percent), mean cross-entropy and, for a quantized model, its decision statistics.

    Under ``torch.distributed`` each rank evaluates a disjoint shard and the counts (and the
    quantization counters) are all-reduced, so every rank returns the same global figures.
    Every rank must call this. Decision counters are reset first, so the statistics describe
    exactly this dataset.

    Raises:
        ValueError: the dataset is empty, or its inputs hold NaN/Inf (the message counts them).
    """
    env = env or current_env()
    if batch_size < 1:
        raise ValueError(f"evaluation batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{_describe(dataset)} is empty: nothing to evaluate")
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):  # in memory: one check of the whole set up front
        check_finite(images, _describe(dataset))
    model = unwrap(model)
    quantized = is_quantized(model)
    if quantized:
        from dynabit.quant import reset_stats

        reset_stats(model)
    was_training = model.training
    model.eval()
    sampler = ShardedSampler(len(dataset), env, shuffle=False)
    sums = torch.zeros(3, dtype=torch.float64)  # correct, loss sum, samples
    try:
        batches = iterate_batches(dataset, sampler, batch_size)
        total = -(-len(sampler) // batch_size)  # the bar shows a total and a time left
        bar = progress_bar(
            batches, desc="eval", total=total, leave=False, disable=not (progress and env.is_main)
        )
        for x, y in bar:
            if not isinstance(images, torch.Tensor):
                check_finite(x, f"a batch of {_describe(dataset)}")
            logits = model(x)
            sums[0] += (logits.argmax(1) == y).sum().item()
            sums[1] += F.cross_entropy(logits, y, reduction="sum").item()
            sums[2] += y.numel()
    finally:
        model.train(was_training)
    correct, loss, n = all_reduce_sum(sums, env).tolist()
    stats = None
    if quantized:
        from dynabit.quant import model_stats

        stats = model_stats(model, all_reduce=True).to_dict()
    return EvalResult(
        top1=100.0 * correct / max(n, 1), loss=loss / max(n, 1), samples=int(n), stats=stats
    )


def _describe(dataset: Dataset) -> str:
    describe = getattr(dataset, "describe", None)
    return f"dataset {describe()}" if callable(describe) else f"the {type(dataset).__name__}"


def run_input_info(cfg: RunConfig) -> DatasetInfo:
    """The input shape and classes the model of run config ``cfg`` is built for."""
    from dynabit.data import dataset_info

    return dataset_info(cfg.train.dataset, cfg.train.data_dir)


def check_dataset_for_run(dataset: ImageDataset, cfg: RunConfig, source: str | Path) -> None:
    """Refuse ``dataset`` unless its images and classes fit the model of ``cfg``.

    ``source`` (the run or checkpoint) is named in the :class:`DatasetMismatchError`.
    """
    from dynabit.data import check_fits

    model = f"the model of {str(source)!r} (trained on {cfg.train.dataset!r})"
    check_fits(dataset, run_input_info(cfg), model)


def build_for_config(
    cfg: RunConfig, in_channels: int, num_classes: int, image_size: int
) -> nn.Module:
    """The (unprepared) model a run config describes."""
    from dynabit.models import build_model

    t = cfg.train
    return build_model(t.model, in_channels, num_classes, image_size, t.width)


def load_model(path: str | Path) -> tuple[nn.Module, RunConfig, Path]:
    """Rebuild a trained model from a run directory or checkpoint (config read beside it).

    Returns the model (eval mode), its run config and the checkpoint folder used.

    Quantized runs are rebuilt with ``prepare`` and loaded from the saved state (scales and
    thresholds included), so no calibration is needed.
    """
    run, note = resolve_run(path)
    if note:
        logging.getLogger(__name__).info(note)
    ck = load_checkpoint(run, training_state=False)
    if ck.config is None:
        raise CheckpointError(f"checkpoint {str(ck.path)!r} has no config.yaml beside it")
    cfg = ck.config
    info = run_input_info(cfg)
    model = build_for_config(cfg, info.in_channels, info.num_classes, info.image_size)
    if cfg.train.quantize:
        from dynabit.quant import prepare

        model = prepare(model, cfg.quant)
    load_weights(model, ck.model, str(ck.path))
    return model.eval(), cfg, ck.path


def load_weights(model: nn.Module, state: dict[str, Any], where: str) -> None:
    """``load_state_dict`` (strict) with an error that names the source and the mismatch."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"weights in {where!r} do not fit the model: "
            + " ".join(line.strip() for line in first[:4])
        ) from None


def evaluate_checkpoint(
    path: str | Path,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    subset: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Load a run/checkpoint and evaluate it on the test split (of its dataset unless given).

    Returns ``{"top1", "loss", "samples", "b_avg_macs", "b_avg_elements", "refine_ratio",
    "layers", "checkpoint", "dataset", "quantized"}``.

    Raises:
        DatasetMismatchError: the dataset's image shape or classes do not fit the model.
    """
    from dynabit.data import load_dataset

    model, cfg, ck_path = load_model(path)
    name = dataset or cfg.train.dataset
    ddir = data_dir if data_dir is not None else (cfg.train.data_dir if dataset is None else None)
    test = load_dataset(name, "test", ddir, subset if subset is not None else cfg.train.test_subset)
    check_dataset_for_run(test, cfg, ck_path)
    env = init_distributed()  # under torchrun the ranks share the test set
    try:
        res = evaluate(
            model,
            test,
            batch_size=cfg.train.eval_batch_size if batch_size is None else batch_size,
            env=env,
            progress=progress,
        )
    finally:
        shutdown(env)
    stats = res.stats or {}
    return {
        "top1": res.top1,
        "loss": res.loss,
        "samples": res.samples,
        "b_avg_macs": stats.get("b_avg_macs"),
        "b_avg_elements": stats.get("b_avg_elements"),
        "refine_ratio": stats.get("refine_ratio"),
        "layers": stats.get("layers", {}),
        "checkpoint": str(ck_path),
        "dataset": name,
        "quantized": res.stats is not None,
    }
