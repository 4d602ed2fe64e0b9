"""Sweeps: one training run per point of a grid of config values, in parallel processes.

A sweep file holds a ``base`` run config (the ``train``/``quant``/``pretrain`` sections of
``dynabit train``) and a ``grid`` of dotted keys to lists of values::

    base: {train: {dataset: digits, epochs: 2}, quant: {budget: 5.0}}
    grid:
      quant.budget: [4.5, 5.0, 6.0]
      quant.group: [[2, 2], [4, 4]]
      quant.hardware.rows: [16, 32]

Every point trains in ``<out>/<point name>/``; a finished point is not trained again, so
re-running the same command resumes the sweep. The table of all points is written to
``<out>/sweep.json`` and ``<out>/sweep.md``.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dynabit.config.io import read_mapping, validate
from dynabit.config.run import RunConfig, validate_run
from dynabit.train.interrupt import STOP_SIGNALS, TrainingInterrupted, stop_on_signals
from dynabit.utils.files import atomic_write_text


class SweepConfig(BaseModel):
    """A base run config and the grid of values to vary."""

    model_config = ConfigDict(extra="forbid")

    base: dict[str, Any] = Field(default_factory=dict, description="Run config mapping.")
    grid: dict[str, list[Any]] = Field(..., description="Dotted key -> values.")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not v:
            raise ValueError("grid must name at least one key")
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid key {key!r} has no values")
            if key.split(".")[0] not in ("train", "quant", "pretrain"):
                raise ValueError(f"grid key {key!r} must start with train., quant. or pretrain.")
        return v


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file (YAML or JSON)."""
    return validate(SweepConfig, read_mapping(path), str(path))


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def _label(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def expand(sweep: SweepConfig) -> list[tuple[str, dict[str, Any], RunConfig]]:
    """Every grid point: ``(name, {key: value}, run config)``, validated up front."""
    keys = list(sweep.grid)
    points = []
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        data = copy.deepcopy(sweep.base)
        for key, value in zip(keys, values, strict=True):
            _set(data, key, value)
        name = "_".join(
            f"{k.split('.')[-1]}={_label(v)}" for k, v in zip(keys, values, strict=True)
        )
        cfg = validate_run(data, f"sweep point {name}")
        points.append((name, dict(zip(keys, values, strict=True)), cfg))
    return points


def _train_point(cfg_data: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Worker: train (or resume) one point; plain data in and out so it crosses processes."""
    import torch

    from dynabit.train import run_training

    torch.set_num_threads(1)  # the points share the cores
    results = run_training(RunConfig.model_validate(cfg_data), run_dir, resume=True)
    final = list(results.values())[-1]
    return {"top1": final.top1, "b_avg": final.b_avg_macs, "run_dir": run_dir}


def _ignore_stop_signals() -> None:
    """Pool worker initializer: an idle worker ignores SIGINT/SIGTERM (a training point installs
    its own handlers while it runs), so a stop never kills a worker between points."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def _stop_workers(pending: set[Future], signum: int) -> None:
    """Cancel the points not started and pass the signal to the running ones, which
    checkpoint and stop (a worker that already got it from the terminal ignores the copy)."""
    for fut in pending:
        fut.cancel()
    for child in active_children():
        os.kill(child.pid, signum)


def run_sweep(
    sweep: SweepConfig,
    out_dir: str | Path,
    workers: int = 2,
    on_point: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every point (``workers`` processes at a time) and write the table.

    SIGINT/SIGTERM stop every running point at its next step with a checkpoint and raise
    :class:`~dynabit.train.TrainingInterrupted`; running the sweep again resumes it.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = expand(sweep)
    rows: dict[str, dict[str, Any]] = {}
    signum = 0  # the signal that stops the sweep, once one arrives (here or in a worker)
    with (
        stop_on_signals("stopping every point at its next step, with a checkpoint") as stop,
        ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_ignore_stop_signals
        ) as pool,
    ):
        futures = {
            pool.submit(_train_point, cfg.model_dump(mode="json"), str(out / name)): (name, values)
            for name, values, cfg in points
        }
        pending = set(futures)
        forwarded = False
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                name, values = futures[fut]
                if fut.cancelled():
                    continue
                try:
                    rows[name] = {"point": name, **values, **fut.result()}
                except TrainingInterrupted as e:
                    signum = signum or e.signum
                    continue
                except BrokenProcessPool:  # an idle worker the stop signal ended
                    if not (signum or stop):
                        raise
                    continue
                if on_point is not None:
                    on_point(name, rows[name])
            if stop and not signum:
                signum = stop.signum or 0
            if signum and not forwarded:
                _stop_workers(pending, signum)
                forwarded = True
    if signum:
        raise TrainingInterrupted(
            signum, f"sweep {out}: {len(rows)}/{len(points)} points finished, the others resume"
        )
    table = [rows[name] for name, _, _ in points]
    atomic_write_text(out / "sweep.json", json.dumps({"rows": table}, indent=2) + "\n")
    atomic_write_text(out / "sweep.md", to_markdown(table, list(sweep.grid)))
    return table


def to_markdown(rows: list[dict[str, Any]], keys: list[str]) -> str:
    """The sweep table: grid values, top-1 and measured ``B_avg`` per point."""
    head = [*keys, "top-1 %", "B_avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        b_avg = "" if r["b_avg"] is None else f"{r['b_avg']:.3f}"
        cells = [_label(r[k]) for k in keys] + [f"{r['top1']:.2f}", b_avg]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
