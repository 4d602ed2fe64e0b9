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
from dynabit.hardware.iso_area import summary_figures, summary_rows
from dynabit.utils.files import atomic_write_text
from dynabit.utils.threads import refresh_threads

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
                "log_every": _log_every(opts),
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


def _log_every(opts: DemoOptions) -> int:
    """Steps between metric records: every 50 (about 20 threshold points over the default
    QAT), or often enough that a short capped run still logs a few points per epoch."""
    if opts.max_steps_per_epoch is None:
        return 50
    return max(1, min(50, opts.max_steps_per_epoch // 4))


def _source(ck: Path) -> dict[str, Any]:
    """What a reusable result was computed from: the checkpoint and its weights file's stamp."""
    st = (ck / "model.safetensors").stat()
    return {"checkpoint": str(ck), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read(path: Path) -> Any:
    """A JSON file written by an earlier run, or ``None`` when it is missing or damaged."""
    try:
        return json.loads(path.read_bytes().decode())
    except (OSError, ValueError):
        return None


def _reusable(path: Path, source: dict[str, Any], **same: Any) -> dict[str, Any] | None:
    """The result saved at ``path`` when it was computed from ``source`` with ``same``."""
    old = _read(path)
    if not isinstance(old, dict) or old.get("source") != source:
        return None
    return old if all(old.get(k) == v for k, v in same.items()) else None


class _Phase:
    """Logs what a phase does, and how long it took (also into ``times[key]`` when given)."""

    def __init__(self, what: str, times: dict[str, float] | None = None, key: str = "") -> None:
        self.what, self.times, self.key = what, times, key

    def __enter__(self) -> _Phase:
        refresh_threads(self.what.split(":")[0])  # the machine's load may have moved
        log.info("%s ...", self.what)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            took = time.perf_counter() - self.start
            log.info("  done in %.1f s", took)
            if self.times is not None:
                self.times[self.key] = round(took, 1)


def uniform8_baseline(
    fp32: torch.nn.Module, train: Any, test: Any, batch_size: int, opts: DemoOptions
) -> dict[str, Any]:
    """W8A8 post-training quantization of the FP32 model (static layers, calibrated scales)."""
    import copy

    from dynabit.quant import calibrate, prepare
    from dynabit.train import evaluate

    qcfg = QuantConfig(dynamic=False, static_bits=8, hardware=opts.hardware)
    w8a8 = prepare(copy.deepcopy(fp32), qcfg)
    gen = torch.Generator().manual_seed(opts.seed)
    idx = torch.randperm(len(train), generator=gen)[: 8 * batch_size]
    calibrate(w8a8, [train.images[i] for i in idx.split(batch_size)], progress=opts.progress)
    res = evaluate(w8a8, test, progress=opts.progress)
    return {"top1": res.top1, "samples": res.samples, "method": "W8A8 post-training quantization"}


def check_parity(model: torch.nn.Module, test: Any, opts: DemoOptions) -> dict[str, Any]:
    """Integer engine vs the converted QAT model on the test split, element by element."""
    from dynabit.engine.parity import check_parity as engine_parity
    from dynabit.quant import convert

    frozen = convert(model, strict=True)
    report = engine_parity(frozen, test.images, test.labels, progress=opts.progress)
    return {**report.to_dict(), "parity": report.ok}


def simulate_real_masks(model: torch.nn.Module, test: Any, opts: DemoOptions) -> dict[str, Any]:
    """Accelerator figures for the QAT model with the decisions real test images produce."""
    from dynabit.hardware import compare, synthetic_masks, to_csv, to_json, to_markdown, trace_model

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
    """Run the main job; returns (and writes to ``<run>/summary.json``) the summary figures.

    Run again on the same directory it reuses what is done (the trained stages, the W8A8
    baseline and the parity check of the same checkpoints) and says so; ``seconds`` stays the
    first run's wall time (``seconds_this_run`` is the rerun's).
    """
    from dynabit.train.lock import run_dir_lock

    opts = opts or DemoOptions()
    with run_dir_lock(opts.run_dir, "demo directory"):  # one demo at a time per folder
        return _run_demo(opts)


def _run_demo(opts: DemoOptions) -> dict[str, Any]:
    from dynabit.data import load_dataset
    from dynabit.train import load_model, run_training

    start = time.perf_counter()
    first = _first_seconds(opts.run_dir / "summary.json") if opts.resume else None
    dataset = pick_dataset(opts.dataset, opts.data_dir)
    stages: dict[str, float] = {}  # wall seconds of this run's stages
    t0 = time.perf_counter()
    results = run_training(run_config(opts, dataset), opts.run_dir / "train", resume=opts.resume)
    stages["training"] = round(time.perf_counter() - t0, 1)
    fp32, qat = results["fp32"], results["qat"]
    model, cfg, qat_ck = load_model(qat.run_dir)
    test = load_dataset(dataset, "test", cfg.train.data_dir, opts.test_subset)

    fp32_model, fp32_cfg, fp32_ck = load_model(fp32.run_dir)
    base_path = opts.run_dir / "baseline-w8a8.json"
    baseline = _reusable(base_path, _source(fp32_ck), samples=len(test)) if opts.resume else None
    if baseline is None:
        what = f"W8A8 baseline: calibrating the FP32 model, evaluating {len(test)} images"
        with _Phase(what, stages, "w8a8_baseline"):
            train = load_dataset(dataset, "train", cfg.train.data_dir, opts.train_subset)
            bs = fp32_cfg.train.batch_size
            baseline = uniform8_baseline(fp32_model, train, test, bs, opts)
        baseline["source"] = _source(fp32_ck)
        atomic_write_text(base_path, json.dumps(baseline, indent=2))
    else:
        log.info("W8A8 baseline: reusing %s (same FP32 checkpoint)", base_path)

    par_path = opts.run_dir / "parity.json"
    parity = _reusable(par_path, _source(qat_ck), samples=len(test)) if opts.resume else None
    if parity is None:
        what = f"integer engine parity: frozen QAT model vs engine on {len(test)} images"
        with _Phase(what, stages, "parity"):
            parity = check_parity(model, test, opts)
        parity["source"] = _source(qat_ck)
        atomic_write_text(par_path, json.dumps(parity, indent=2))
    else:
        log.info("integer engine parity: reusing %s (same QAT checkpoint)", par_path)

    what = f"simulation: masks of {min(opts.sim_samples, len(test))} test images"
    with _Phase(what, stages, "simulation"):
        sim = simulate_real_masks(model, test, opts)
    seconds = round(time.perf_counter() - start, 1)
    summary = {
        "seconds": first if first is not None else seconds,
        "seconds_this_run": seconds,
        "stage_seconds": stages,  # this run's (a stage reused from a previous run is absent)
        "threads": torch.get_num_threads(),  # at the end (the default may change per stage)
        "dataset": dataset,
        "top1_fp32": fp32.top1,
        "top1_w8a8": baseline["top1"],
        "top1_dynamic": qat.top1,
        "top1_integer": parity["engine_top1"],
        "b_avg": qat.b_avg_macs,
        "b_avg_elements": qat.b_avg_elements,
        "budget": opts.budget,
        "speedup_vs_uniform8": sim["speedup_vs_uniform8"],
        "energy_saving_vs_uniform8": sim["energy_saving_vs_uniform8"],
        "ideal_speedup": sim["ideal_speedup"],
        "speedup_per_element_gating": sim["speedup_per_element_gating"],
        **summary_figures(sim["headline"]),
        "parity": parity["parity"],
        "parity_samples": parity["samples"],
        "sim_samples": sim["samples"],
        "hardware": f"{opts.hardware.rows}x{opts.hardware.cols} {opts.hardware.dataflow}",
        "run_dir": str(opts.run_dir),
    }
    atomic_write_text(opts.run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def _first_seconds(path: Path) -> float | None:
    """The wall time a previous run of the demo recorded (kept across reruns)."""
    old = _read(path)
    value = old.get("seconds") if isinstance(old, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _wall_time(s: dict[str, Any]) -> str:
    again = s.get("seconds_this_run")
    if again is None or abs(again - s["seconds"]) < 0.5:
        return f"{s['seconds']:.0f} s"
    return f"{s['seconds']:.0f} s (first run; this rerun {again:.0f} s, reusing its results)"


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
        *summary_rows(s),
        (
            "integer engine parity",
            f"{'pass' if s['parity'] else 'FAIL'} ({s['parity_samples']} images)",
        ),
        ("wall time", _wall_time(s)),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)
