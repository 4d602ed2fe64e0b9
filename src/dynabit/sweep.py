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

Underneath, :func:`run_tasks` runs any list of :class:`Task` objects with a runner of the
caller's (the frontier benchmark uses it): tasks wait for the ones they name (a shared FP32
parent), finished ones are skipped, a failure does not stop the others.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dynabit.config.io import ConfigError, read_mapping, validate
from dynabit.config.run import RunConfig, validate_run
from dynabit.train.interrupt import STOP_SIGNALS, TrainingInterrupted, stop_on_signals
from dynabit.train.lock import run_dir_lock
from dynabit.utils.files import atomic_write_text


class SweepPointError(RuntimeError):
    """A sweep point failed; the message ends with that point's error (its last line)."""


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
    """Every grid point: ``(name, {key: value}, run config)``, validated up front.

    A grid that repeats a point (the same value twice, or values such as ``5`` and ``5.0``
    that give the same config) is refused: two points would train the same run, or train into
    one directory at once.
    """
    keys = list(sweep.grid)
    points: list[tuple[str, dict[str, Any], RunConfig]] = []
    seen: dict[str, str] = {}  # the config of a point as JSON -> its name
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        data = copy.deepcopy(sweep.base)
        for key, value in zip(keys, values, strict=True):
            _set(data, key, value)
        name = "_".join(
            f"{k.split('.')[-1]}={_label(v)}" for k, v in zip(keys, values, strict=True)
        )
        cfg = validate_run(data, f"sweep point {name}")
        same = seen.get(key := cfg.model_dump_json())
        if same is not None or any(p[0] == name for p in points):
            raise ConfigError(
                f"sweep grid repeats a point: {name!r} is the same run as "
                f"{(same or name)!r}; list each value of {keys} once"
            )
        seen[key] = name
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


Runner = Callable[[dict[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One unit of a sweep: its name (also its run directory under the sweep's folder), the
    plain data its runner gets, and the names of earlier tasks that must finish first (a
    shared FP32 parent, say)."""

    name: str
    payload: dict[str, Any]
    after: tuple[str, ...] = ()


@dataclass
class TaskResults:
    """What :func:`run_tasks` did: the finished tasks' rows and the failed tasks' errors."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _check_tasks(tasks: list[Task]) -> None:
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise ValueError(f"task {t.name!r} is listed twice")
        for dep in t.after:
            if dep not in seen:
                raise ValueError(f"task {t.name!r} waits for {dep!r}, not listed before it")
        seen.add(t.name)


def run_tasks(
    tasks: list[Task],
    out_dir: str | Path,
    workers: int = 2,
    runner: Runner = _train_point,
    on_done: Callable[[str, dict[str, Any]], None] | None = None,
    finished: Callable[[Path], dict[str, Any] | None] | None = None,
    in_process: bool = False,
) -> TaskResults:
    """Run every task (``workers`` processes at a time), each after the tasks it waits for.

    ``runner(task.payload, run_dir)`` runs one task and returns its row; with ``workers > 1``
    it must be a module-level function (it crosses to a spawned process). ``finished(run_dir)``
    returns the row of a task that already finished (it is not run again), or None.
    ``in_process`` runs the tasks one by one in this process (``workers`` must be 1). A task
    that raises is recorded in ``failed`` and the others go on; the tasks waiting for it fail
    too. SIGINT/SIGTERM stop every running task at its next step with a checkpoint and raise
    :class:`~dynabit.train.TrainingInterrupted`; running the same tasks again resumes them.
    Only one sweep runs at a time in ``out_dir``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if in_process and workers != 1:
        raise ValueError(f"in_process runs one task at a time, got workers={workers}")
    _check_tasks(tasks)
    out = Path(out_dir)
    res = TaskResults()
    with run_dir_lock(out, "sweep directory"):
        todo: list[Task] = []
        for t in tasks:
            row = finished(out / t.name) if finished is not None else None
            if row is not None:
                res.rows[t.name] = row
            else:
                todo.append(t)
        if in_process:
            _run_inline(todo, out, runner, on_done, res)
        else:
            _run_pool(todo, out, workers, runner, on_done, res)
    return res


def _blocked(t: Task, res: TaskResults) -> str | None:
    """The failed task ``t`` waits for, if any."""
    return next((d for d in t.after if d in res.failed), None)


def _run_inline(
    todo: list[Task],
    out: Path,
    runner: Runner,
    on_done: Callable[[str, dict[str, Any]], None] | None,
    res: TaskResults,
) -> None:
    for t in todo:
        dep = _blocked(t, res)
        if dep is not None:
            res.failed[t.name] = f"{dep} failed"
            continue
        try:
            res.rows[t.name] = runner(t.payload, str(out / t.name))
        except TrainingInterrupted as e:
            raise TrainingInterrupted(
                e.signum, f"sweep {out}: {len(res.rows)} tasks finished, the others resume"
            ) from None
        except Exception:  # the others go on; the caller reports it
            res.failed[t.name] = traceback.format_exc()
            continue
        if on_done is not None:
            on_done(t.name, res.rows[t.name])


def _run_pool(
    todo: list[Task],
    out: Path,
    workers: int,
    runner: Runner,
    on_done: Callable[[str, dict[str, Any]], None] | None,
    res: TaskResults,
) -> None:
    signum = 0  # the signal that stops the sweep, once one arrives (here or in a worker)
    waiting = list(todo)
    with (
        stop_on_signals("stopping every point at its next step, with a checkpoint") as stop,
        ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_ignore_stop_signals
        ) as pool,
    ):
        futures: dict[Future, Task] = {}
        forwarded = False
        while waiting or futures:
            if not signum:  # start what is ready, in the order given, up to one per worker
                for t in list(waiting):
                    if len(futures) >= workers:
                        break
                    dep = _blocked(t, res)
                    if dep is not None:
                        res.failed[t.name] = f"{dep} failed"
                        waiting.remove(t)
                    elif all(d in res.rows for d in t.after):
                        futures[pool.submit(runner, t.payload, str(out / t.name))] = t
                        waiting.remove(t)
            elif waiting:
                waiting.clear()
            if not futures:
                if waiting:  # only tasks whose prerequisites failed are left
                    continue
                break
            done, _ = wait(set(futures), timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                t = futures.pop(fut)
                if fut.cancelled():
                    continue
                try:
                    res.rows[t.name] = fut.result()
                except TrainingInterrupted as e:
                    signum = signum or e.signum
                    continue
                except BrokenProcessPool:  # an idle worker the stop signal ended
                    if not (signum or stop):
                        raise
                    continue
                except Exception:  # the others go on; the caller reports it
                    res.failed[t.name] = traceback.format_exc()
                    continue
                if on_done is not None:
                    on_done(t.name, res.rows[t.name])
            if stop and not signum:
                signum = stop.signum or 0
            if signum and not forwarded:
                _stop_workers(set(futures), signum)
                forwarded = True
    if signum:
        raise TrainingInterrupted(
            signum, f"sweep {out}: {len(res.rows)} tasks finished, the others resume"
        )


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
    points = expand(sweep)
    values = {name: v for name, v, _ in points}

    def done(name: str, row: dict[str, Any]) -> None:
        if on_point is not None:
            on_point(name, {"point": name, **values[name], **row})

    tasks = [Task(name, cfg.model_dump(mode="json")) for name, _, cfg in points]
    res = run_tasks(tasks, out, workers, on_done=done)
    if res.failed:
        name, err = next(iter(res.failed.items()))
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else "unknown error"
        more = len(res.failed) - 1
        others = f" ({more} other point(s) failed too)" if more else ""
        raise SweepPointError(f"sweep point {name} failed{others}: {last}")
    table = [{"point": name, **values[name], **res.rows[name]} for name, _, _ in points]
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
