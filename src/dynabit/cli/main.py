"""The ``dynabit`` command line: a thin layer over the Python API.

Each command parses options, calls one public function and prints its result. Errors a user
can fix (bad config, missing dataset, missing checkpoint) print one message and exit with
status 2, without a traceback. Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from dynabit.cli.demo import register as register_demo
from dynabit.cli.engine import register as register_engine
from dynabit.cli.report import register as register_report
from dynabit.cli.rtl import register as register_rtl
from dynabit.cli.simulate import register as register_simulate
from dynabit.cli.sweep import register as register_sweep
from dynabit.config.io import ConfigError
from dynabit.config.run import RunConfig, load_run_config

app = typer.Typer(
    name="dynabit",
    help="Dynamic bit-width neural networks: train, evaluate and cost dual-precision models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_USAGE = 2


def _is_main() -> bool:
    """Rank 0 under torchrun (or a plain process)."""
    return int(os.environ.get("RANK", "0")) == 0


def _user_errors() -> tuple[type[Exception], ...]:
    from dynabit.data import DatasetError
    from dynabit.train import CheckpointError, RunDirError

    return (ConfigError, DatasetError, CheckpointError, RunDirError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into ``error: ...`` on stderr and exit status 2."""
    try:
        yield
    except _user_errors() as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@contextmanager
def stopped_cleanly(resume_hint: str) -> Iterator[None]:
    """A run stopped by SIGINT/SIGTERM (checkpointed) says how to resume and exits 128 + signal."""
    from dynabit.train import TrainingInterrupted

    try:
        yield
    except TrainingInterrupted as e:
        if _is_main():
            typer.echo(f"{e}\n{resume_hint}", err=True)
        raise typer.Exit(e.exit_code) from None


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(EXIT_USAGE)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch CPU threads per process (default: torch's).")
    ] = None,
) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level if _is_main() else logging.WARNING, format="%(message)s")


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


@app.command()
def train(
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
    with user_errors(), stopped_cleanly(hint):
        cfg = train_config(config, run_dir, resume, overrides, {"budget": budget})
        results = run_training(cfg, run_dir, resume)
    if _is_main():
        typer.echo(json.dumps({k: _brief(r.to_dict()) for k, r in results.items()}, indent=2))


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """A run summary without the per-layer details."""
    return {k: v for k, v in summary.items() if k != "stats"}


@app.command("eval")
def eval_(
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
        _fail(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASET_NAMES)}")
    if subset is not None and subset < 1:
        _fail(f"--subset must be >= 1, got {subset}")
    with user_errors():
        res = evaluate_checkpoint(
            path, dataset=dataset, data_dir=data_dir, subset=subset, batch_size=batch_size
        )
    if not _is_main():
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


# Subcommands of the other stages live in their own modules.
register_simulate(app)
register_demo(app)
register_report(app)
register_sweep(app)
register_rtl(app)
register_engine(app)

COMMANDS: dict[str, Callable[..., None]] = {"train": train, "eval": eval_}


if __name__ == "__main__":  # `torchrun ... -m dynabit.cli.main train ...`
    app()
