"""The main job: data → FP32 → dynamic QAT → integer-engine parity → accelerator simulation.

``dynabit demo`` runs it with defaults on Fashion-MNIST (falling back to sklearn's digits when
the Debian package is not installed) and writes everything into one run directory::

    <run>/train/fp32, <run>/train/qat   two-stage training (resumable)
    <run>/baseline-w8a8.json            uniform 8-bit post-training baseline
    <run>/parity.json                   engine vs model on the test set
    <run>/simulation.{json,csv,md}      cycles and energy with the masks of real test images
    <run>/summary.json                  the figures of the summary table
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dynabit.config import HardwareConfig, QuantConfig
from dynabit.config.run import validate_run
from dynabit.utils.files import atomic_write_text

log = logging.getLogger(__name__)

FALLBACK_DATASET = "digits"


@dataclass
class DemoOptions:
    """Settings of the main job (defaults: what ``dynabit demo`` runs)."""

    run_dir: Path = Path("runs/demo")
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    model: str = "small_cnn"
    fp32_epochs: int = 4
    qat_epochs: int = 2
    budget: float = 5.0
    train_subset: int | None = None
    test_subset: int | None = None
    max_steps_per_epoch: int | None = None
    sim_samples: int = 256
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    seed: int = 0
    progress: bool = True
    resume: bool = True


def pick_dataset(name: str, data_dir: str | None) -> str:
    """``name`` when it can be loaded, else the bundled digits (saying why)."""
    from dynabit.data import DatasetError, dataset_info

    try:
        dataset_info(name, data_dir)
        return name
    except DatasetError as e:
        if name == FALLBACK_DATASET:
            raise
        log.warning("%s\nFalling back to sklearn's bundled digits (8x8 images).", e)
        return FALLBACK_DATASET


def run_config(opts: DemoOptions, dataset: str) -> Any:
    """Two-stage run config: FP32 pre-training, then QAT at the bit budget."""
    return validate_run(
        {
            "train": {
                "dataset": dataset,
                "data_dir": opts.data_dir if dataset != FALLBACK_DATASET else None,
                "model": opts.model,
                "epochs": opts.qat_epochs,
                "lr": 0.005,
                "threshold_lr": 0.01,
                "schedule": "cosine",
                "quantize": True,
                "calib_batches": 8,
                "seed": opts.seed,
                "train_subset": opts.train_subset,
                "test_subset": opts.test_subset,
                "max_steps_per_epoch": opts.max_steps_per_epoch,
                "progress": opts.progress,
            },
            "pretrain": {"epochs": opts.fp32_epochs, "lr": 0.05},
            "quant": {
                "bits": 8,
                "hi_bits": 4,
                "budget": opts.budget,
                "hardware": opts.hardware.model_dump(),
            },
        },
        "demo config",
    )


def uniform8_baseline(fp32_run: Path, dataset: str, opts: DemoOptions) -> dict[str, Any]:
    """W8A8 post-training quantization of the FP32 model (static layers, calibrated scales)."""
    from dynabit.data import load_dataset
    from dynabit.quant import calibrate, prepare
    from dynabit.train import evaluate, load_model

    fp32, cfg, _ = load_model(fp32_run)
    train = load_dataset(dataset, "train", cfg.train.data_dir, opts.train_subset)
    test = load_dataset(dataset, "test", cfg.train.data_dir, opts.test_subset)
    w8a8 = prepare(fp32, QuantConfig(dynamic=False, static_bits=8, hardware=opts.hardware))
    gen = torch.Generator().manual_seed(opts.seed)
    idx = torch.randperm(len(train), generator=gen)[: 8 * cfg.train.batch_size]
    calibrate(w8a8, [train.images[i] for i in idx.split(cfg.train.batch_size)])
    return {"top1": evaluate(w8a8, test).top1, "method": "W8A8 post-training quantization"}


def check_parity(qat_run: Path, dataset: str, opts: DemoOptions) -> dict[str, Any]:
    """Integer engine vs the converted model on the whole test split, element by element."""
    from dynabit.data import load_dataset
    from dynabit.engine.parity import check_parity as engine_parity
    from dynabit.quant import convert
    from dynabit.train import load_model

    model, cfg, _ = load_model(qat_run)
    frozen = convert(model, strict=True)
    test = load_dataset(dataset, "test", cfg.train.data_dir, opts.test_subset)
    report = engine_parity(frozen, test.images, test.labels, progress=opts.progress)
    return {**report.to_dict(), "parity": report.ok}


def simulate_real_masks(qat_run: Path, dataset: str, opts: DemoOptions) -> dict[str, Any]:
    """Accelerator figures for the QAT model with the decisions real test images produce."""
    from dynabit.data import load_dataset
    from dynabit.hardware import compare, synthetic_masks, to_csv, to_json, to_markdown, trace_model
    from dynabit.train import load_model

    model, cfg, _ = load_model(qat_run)
    test = load_dataset(dataset, "test", cfg.train.data_dir, opts.test_subset)
    images = test.images[: opts.sim_samples]
    shapes, masks = trace_model(model, images, opts.hardware)
    ratio = float(
        sum(m.sum() for m in masks.values()) / max(1, sum(m.size for m in masks.values()))
    )
    # Per-element gating at the same refine ratio (i.i.d. elements: its best case for skipping
    # is no better, since any refined element holds back its whole wave).
    element = synthetic_masks(shapes, ratio, images.shape[0], seed=opts.seed, kind="element")
    comp = compare(
        shapes,
        masks,
        opts.hardware,
        element_masks=element,
        baselines=("uniform", "high", "bitparallel"),
    )
    out = opts.run_dir / "simulation"
    atomic_write_text(out.with_suffix(".json"), to_json(comp))
    atomic_write_text(out.with_suffix(".csv"), to_csv(comp))
    atomic_write_text(out.with_suffix(".md"), to_markdown(comp))
    head = comp.headline()
    return {
        "samples": int(images.shape[0]),
        "speedup_vs_uniform8": head["speedup_vs_uniform"],
        "energy_saving_vs_uniform8": head["energy_saving_vs_uniform"],
        "speedup_per_element_gating": comp.speedup("uniform") / comp.speedup("element"),
        "ideal_speedup": head["ideal_network"],
        "headline": head,
    }


def run_demo(opts: DemoOptions | None = None) -> dict[str, Any]:
    """Run the main job; returns (and writes to ``<run>/summary.json``) the summary figures."""
    from dynabit.train import run_training

    opts = opts or DemoOptions()
    start = time.perf_counter()
    opts.run_dir.mkdir(parents=True, exist_ok=True)
    dataset = pick_dataset(opts.dataset, opts.data_dir)
    results = run_training(run_config(opts, dataset), opts.run_dir / "train", resume=opts.resume)
    fp32, qat = results["fp32"], results["qat"]
    baseline = uniform8_baseline(fp32.run_dir, dataset, opts)
    atomic_write_text(opts.run_dir / "baseline-w8a8.json", json.dumps(baseline, indent=2))
    parity = check_parity(qat.run_dir, dataset, opts)
    atomic_write_text(opts.run_dir / "parity.json", json.dumps(parity, indent=2))
    sim = simulate_real_masks(qat.run_dir, dataset, opts)
    summary = {
        "seconds": round(time.perf_counter() - start, 1),
        "dataset": dataset,
        "top1_fp32": fp32.top1,
        "top1_w8a8": baseline["top1"],
        "top1_dynamic": qat.top1,
        "b_avg": qat.b_avg_macs,
        "b_avg_elements": qat.b_avg_elements,
        "budget": opts.budget,
        "speedup_vs_uniform8": sim["speedup_vs_uniform8"],
        "energy_saving_vs_uniform8": sim["energy_saving_vs_uniform8"],
        "ideal_speedup": sim["ideal_speedup"],
        "speedup_per_element_gating": sim["speedup_per_element_gating"],
        "parity": parity["parity"],
        "parity_samples": parity["samples"],
        "hardware": f"{opts.hardware.rows}x{opts.hardware.cols} {opts.hardware.dataflow}",
        "run_dir": str(opts.run_dir),
    }
    atomic_write_text(opts.run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def summary_table(s: dict[str, Any]) -> str:
    """The end-of-run table as Markdown."""
    rows = [
        ("dataset", s["dataset"]),
        ("top-1 FP32", f"{s['top1_fp32']:.2f} %"),
        ("top-1 W8A8 (PTQ)", f"{s['top1_w8a8']:.2f} %"),
        (f"top-1 dynamic (budget {s['budget']:g} bits)", f"{s['top1_dynamic']:.2f} %"),
        (
            "B_avg measured (MAC / element weighted)",
            f"{s['b_avg']:.3f} / {s['b_avg_elements']:.3f}",
        ),
        (f"speedup vs uniform 8-bit ({s['hardware']})", f"{s['speedup_vs_uniform8']:.3f}x"),
        ("ideal speedup B / B_avg", f"{s['ideal_speedup']:.3f}x"),
        ("per-element gating speedup, same ratio", f"{s['speedup_per_element_gating']:.3f}x"),
        ("energy saving vs uniform 8-bit", f"{100 * s['energy_saving_vs_uniform8']:.1f} %"),
        (
            "integer engine parity",
            f"{'pass' if s['parity'] else 'FAIL'} ({s['parity_samples']} images)",
        ),
        ("wall time", f"{s['seconds']:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)
