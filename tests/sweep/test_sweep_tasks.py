"""``run_tasks``: tasks with a runner of the caller's, prerequisites first, failures kept apart,
finished tasks skipped, one sweep per folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from lock_holder import lock_held_elsewhere

from dynabit.sweep import Task, run_tasks
from dynabit.train.lock import RunDirLockedError


def record(payload: dict, run_dir: str) -> dict:
    """Runner: fails when asked to, else writes ``result.json`` with the time it ran."""
    if payload.get("fail"):
        raise RuntimeError(f"asked to fail: {payload['x']}")
    row = {"x": payload["x"], "t": time.monotonic_ns(), "run_dir": run_dir}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "result.json").write_text(json.dumps(row))
    return row


def finished(run_dir: Path) -> dict | None:
    path = run_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _tasks(fail_parent: bool = False) -> list[Task]:
    return [
        Task("a/parent", {"x": 0, "fail": fail_parent}),
        Task("b/alone", {"x": 1}),
        Task("a/child1", {"x": 2}, after=("a/parent",)),
        Task("a/child2", {"x": 3}, after=("a/parent",)),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_prerequisites_run_first_and_finished_tasks_are_skipped(tmp_path, workers) -> None:
    done: list[str] = []
    res = run_tasks(
        _tasks(), tmp_path, workers, runner=record, on_done=lambda n, _r: done.append(n),
        finished=finished, in_process=workers == 1,
    )  # fmt: skip
    assert not res.failed and set(res.rows) == set(done) == {t.name for t in _tasks()}
    parent = res.rows["a/parent"]["t"]
    assert res.rows["a/child1"]["t"] > parent and res.rows["a/child2"]["t"] > parent
    assert res.rows["b/alone"]["x"] == 1 and res.rows["b/alone"]["run_dir"].endswith("b/alone")
    again_done: list[str] = []
    again = run_tasks(
        _tasks(), tmp_path, workers, runner=record, on_done=lambda n, _r: again_done.append(n),
        finished=finished, in_process=workers == 1,
    )  # fmt: skip
    assert again.rows == res.rows and again_done == []  # nothing ran again


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failure_stops_only_the_tasks_that_wait_for_it(tmp_path, workers) -> None:
    res = run_tasks(
        _tasks(fail_parent=True), tmp_path, workers, runner=record, in_process=workers == 1
    )
    assert set(res.rows) == {"b/alone"}
    assert "asked to fail: 0" in res.failed["a/parent"]
    assert res.failed["a/child1"] == res.failed["a/child2"] == "a/parent failed"


def test_bad_task_lists_and_a_second_sweep_in_the_same_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match="'a' waits for 'z', not listed before it"):
        run_tasks([Task("a", {}, after=("z",))], tmp_path, runner=record)
    with pytest.raises(ValueError, match="listed twice"):
        run_tasks([Task("a", {}), Task("a", {})], tmp_path, runner=record)
    with pytest.raises(ValueError, match="in_process runs one task at a time"):
        run_tasks([], tmp_path, workers=2, in_process=True)
    with (
        lock_held_elsewhere(tmp_path) as holder,
        pytest.raises(RunDirLockedError, match=rf"sweep directory .* \(pid {holder.pid}\b"),
    ):
        run_tasks([Task("a", {"x": 0})], tmp_path, 1, runner=record, in_process=True)
    assert not (tmp_path / "a").exists()
