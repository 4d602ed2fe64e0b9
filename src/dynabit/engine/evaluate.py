"""Evaluate an integer program on a dataset, and fix its refine ratio (for benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dynabit.data.base import DatasetInfo, ImageDataset, check_fits
from dynabit.engine.execute import Executor
from dynabit.engine.program import IntegerProgram
from dynabit.engine.trace import EngineTrace
from dynabit.utils.progress import progress_bar


@dataclass
class ProgramEval:
    """Result of :func:`evaluate_program`."""

    top1: float  # percent
    samples: int
    correct: int
    predictions: torch.Tensor  # int64 (N,)
    logits_int: torch.Tensor  # int64 (N, classes)
    trace: EngineTrace
    budget: dict[str, Any]  # EngineTrace.budget(): B_avg, refine ratio, per layer

    def summary(self) -> dict[str, Any]:
        """Plain dict for JSON (no tensors)."""
        return {
            "top1": self.top1,
            "samples": self.samples,
            "correct": self.correct,
            "b_avg_macs": self.budget["b_avg_macs"],
            "b_avg_elements": self.budget["b_avg_elements"],
            "refine_ratio": self.budget["refine_ratio"],
            "layers": self.budget["layers"],
        }


def layer_bits(program: IntegerProgram) -> dict[str, tuple[int, int]]:
    """``name -> (B_hi, B_lo)`` of the layers ``B_avg`` covers: the dynamic ones, and the
    static ones of the uniform baseline (``(bits, 0)``)."""
    out = {}
    for op in program.layer_ops():
        a = op.attrs
        if a["dynamic"]:
            out[op.name] = (int(a["bits"]) - int(a["lo_bits"]), int(a["lo_bits"]))
        elif a.get("in_budget", False):
            out[op.name] = (int(a["bits"]), 0)
    return out


def evaluate_program(
    program: IntegerProgram | Executor,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 100,
    progress: bool = False,
) -> ProgramEval:
    """Run the program over ``images`` in batches: top-1, integer logits, the whole trace and
    the measured ``B_avg`` (``progress``: a bar over the batches).

    Raises:
        ValueError: no images, not one label per image, a label outside the program's
            classes, or NaN/Inf in the images.
        EngineError: the images' shape is not the program's input shape.
    """
    ex = program if isinstance(program, Executor) else Executor(program)
    if images.shape[0] == 0:
        raise ValueError("no images: nothing to evaluate")
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}: "
            "want one label per image"
        )
    classes = program_input_info(ex.program).num_classes
    if int(labels.max()) >= classes or int(labels.min()) < 0:
        raise ValueError(
            f"labels span {int(labels.min())}..{int(labels.max())}, but the program has "
            f"{classes} outputs (classes 0..{classes - 1})"
        )
    traces, logits, preds = [], [], []
    starts = range(0, images.shape[0], batch_size)
    for start in progress_bar(
        starts, desc="integer engine", unit="batch", disable=not progress, leave=False
    ):
        res = ex(images[start : start + batch_size])
        traces.append(res.trace)
        logits.append(res.logits_int)
        preds.append(res.logits.argmax(dim=1))
    trace = EngineTrace.concat(traces)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)
    correct = int((pred == labels[: pred.numel()]).sum())
    n = int(pred.numel())
    return ProgramEval(
        top1=100.0 * correct / max(n, 1),
        samples=n,
        correct=correct,
        predictions=pred,
        logits_int=torch.cat(logits) if logits else torch.zeros(0, dtype=torch.int64),
        trace=trace,
        budget=trace.budget(layer_bits(ex.program)),
    )


def program_input_info(program: IntegerProgram) -> DatasetInfo:
    """The input channels, image size and classes ``program`` was lowered for."""
    c, h, _ = program.input_shape
    return DatasetInfo(int(c), int(h), int(program.tensors[program.output].shape[-1]))


def check_dataset_for_program(
    dataset: ImageDataset, program: IntegerProgram, source: str | Path
) -> None:
    """Refuse ``dataset`` unless its images and classes fit ``program`` (read from
    ``source``): a :class:`~dynabit.data.DatasetMismatchError` naming both."""
    trained = program.meta.get("dataset")
    model = f"the integer program from {str(source)!r}" + (
        f" (lowered from a model trained on {trained!r})" if trained else ""
    )
    check_fits(dataset, program_input_info(program), model)


def with_refine_ratio(program: IntegerProgram, ratio: float) -> IntegerProgram:
    """A copy whose dynamic layers refine exactly ``floor(ratio * groups)`` groups per block
    and sample (the top-scoring ones: bounds ``(ratio, ratio)`` enforced)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    out = program.copy()
    for op in out.dynamic_ops():
        op.attrs["k_bounds"] = list(out.layer_spec(op).grid().k_bounds(ratio, ratio))
    return out


def lower_checkpoint(path: str | Path) -> IntegerProgram:
    """Load a trained run or checkpoint (:func:`dynabit.train.load_model`), convert it strictly
    and lower it for its dataset's input shape. The program's ``meta`` records the dataset."""
    from dynabit.data import dataset_info
    from dynabit.engine.lower import lower
    from dynabit.quant import convert
    from dynabit.train import load_model

    model, cfg, ck = load_model(path)
    if not cfg.train.quantize:
        raise ValueError(f"{ck} is an FP32 run: only quantized (QAT) runs have an integer form")
    info = dataset_info(cfg.train.dataset, cfg.train.data_dir)
    program = lower(
        convert(model, strict=True), (info.in_channels, info.image_size, info.image_size)
    )
    program.meta.update(
        checkpoint=str(ck),
        dataset=cfg.train.dataset,
        data_dir=cfg.train.data_dir,
        hardware=cfg.quant.hardware.model_dump(mode="json"),
    )
    return program
