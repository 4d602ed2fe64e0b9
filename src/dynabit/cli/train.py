"""``dynabit train`` and ``dynabit eval``: a training run and the evaluation of its model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dynabit.cli.errors import fail, is_main, stopped_cleanly, user_errors
from dynabit.config.run import RunConfig, load_run_config


def train_config(
    config: Path | None,
    run_dir: Path,
    resume: bool,
    train: dict[str, Any],
    quant: dict[str, Any],
) -> RunConfig:
    """The run config: ``--config``, else the saved one when resuming, else defaults; then
    the command-line overrides (``train`` / ``quant`` fields that are not ``None``)."""
    if config is not None:
        cfg = load_run_config(config)
    elif resume and (run_dir / "config.yaml").is_file():
        cfg = load_run_config(run_dir / "config.yaml")
    else:
        cfg = RunConfig()
    train = {k: v for k, v in train.items() if v is not None}
    quant = {k: v for k, v in quant.items() if v is not None}
    return cfg.updated(train, quant, where="command-line options") if train or quant else cfg


def train_command(
    run_dir: Annotated[Path, typer.Option("--run-dir", "-o", help="Run directory (created).")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML/JSON file with train / quant / pretrain."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run directory's last checkpoint.")
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Override train.dataset.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Override train.data_dir.")] = None,
    budget: Annotated[float | None, typer.Option(help="Override quant.budget (B_target).")] = None,
    fp32: Annotated[
        bool, typer.Option("--fp32", help="Train in FP32 (train.quantize = false).")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Override train.seed.")] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bars.")
    ] = None,
) -> None:
    """Train a model (FP32, QAT, or FP32 then QAT when the config has ``pretrain``)."""
    from dynabit.train import run_training

    overrides = {
        "epochs": epochs,
        "dataset": dataset,
        "data_dir": data_dir,
        "seed": seed,
        "progress": progress,
        "quantize": False if fp32 else None,
    }
    hint = f"continue with: dynabit train --run-dir {run_dir} --resume"
    if resume and not run_dir.is_dir():
        fail(
            f"--resume: run directory {str(run_dir)!r} does not exist; drop --resume to start "
            "a new run there"
        )
    if resume and config is None and not (run_dir / "config.yaml").is_file():
        fail(
            f"--resume: {str(run_dir)!r} holds no run to resume (no config.yaml); give --config "
            "to start one there, or name the run directory of an existing run"
        )
    with user_errors(), stopped_cleanly(hint):
        cfg = train_config(config, run_dir, resume, overrides, {"budget": budget})
        results = run_training(cfg, run_dir, resume)
    if is_main():
        typer.echo(json.dumps({k: _brief(r.to_dict()) for k, r in results.items()}, indent=2))


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """A run summary without the per-layer details."""
    return {k: v for k, v in summary.items() if k != "stats"}


def eval_command(
    path: Annotated[Path, typer.Argument(help="Run directory or checkpoint folder.")],
    dataset: Annotated[
        str | None, typer.Option(help="Evaluate on this dataset (default: the run's).")
    ] = None,
    data_dir: Annotated[str | None, typer.Option(help="Dataset directory.")] = None,
    subset: Annotated[int | None, typer.Option(help="Only the first N test samples.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Evaluation batch size.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
) -> None:
    """Top-1, measured B_avg and per-layer refine ratios of a trained model (test split)."""
    from dynabit.data import DATASET_NAMES
    from dynabit.train import evaluate_checkpoint

    if dataset is not None and dataset not in DATASET_NAMES:
        fail(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASET_NAMES)}")
    if subset is not None and subset < 1:
        fail(f"--subset must be >= 1, got {subset}")
    if batch_size is not None and not 1 <= batch_size <= 65_536:
        fail(f"--batch-size must lie in [1, 65536], got {batch_size}")
    with user_errors():
        res = evaluate_checkpoint(
            path, dataset=dataset, data_dir=data_dir, subset=subset, batch_size=batch_size
        )
    if not is_main():
        return
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    for line in format_eval(res):
        typer.echo(line)


def format_eval(res: dict[str, Any]) -> list[str]:
    """Human-readable lines for an :func:`dynabit.train.evaluate_checkpoint` result."""
    lines = [
        f"checkpoint  {res['checkpoint']}",
        f"dataset     {res['dataset']} (test, {res['samples']} samples)",
        f"top-1       {res['top1']:.2f} %",
        f"loss        {res['loss']:.4f}",
    ]
    if not res["quantized"]:
        lines.append("B_avg       - (FP32 model)")
        return lines
    lines += [
        f"B_avg       {res['b_avg_macs']:.3f} bits (MAC-weighted), "
        f"{res['b_avg_elements']:.3f} (element-weighted)",
        f"refine      {res['refine_ratio']:.3f} of low-pass MACs",
        "",
        f"{'layer':<32} {'ratio':>7} {'B_avg':>6} {'bounds':>13} {'in bounds':>9}  blocks",
    ]
    for name, s in res["layers"].items():
        lo, hi = s["bounds"]
        blocks = " ".join(f"{r:.2f}" for r in s["block_ratios"])
        inside = sum(lo - 1e-9 <= r <= hi + 1e-9 for r in s["block_ratios"])
        lines.append(
            f"{name:<32} {s['ratio_macs']:>7.3f} {s['b_avg']:>6.2f} "
            f"{f'[{lo:.2f}, {hi:.2f}]':>13} {inside:>4}/{len(s['block_ratios']):<4}  {blocks}"
        )
    return lines


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``eval`` commands to ``app``."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
