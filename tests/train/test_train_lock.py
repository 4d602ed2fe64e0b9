"""One writer per run directory: a second ``dynabit train`` (or ``train()``, demo, sweep) on a
directory another process writes gets one ``error:`` line naming that process, and a SIGKILLed
writer leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from lock_holder import lock_held_elsewhere

from dynabit.config.run import save_run_config
from dynabit.demo import DemoOptions, run_demo
from dynabit.sweep import SweepConfig, SweepPointError, run_sweep
from dynabit.train import RunDir, run_training, train
from dynabit.train.lock import LOCK_NAME, RunDirLockedError, run_dir_lock

WORKER = Path(__file__).with_name("worker_train.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def _dynabit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynabit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )


def test_second_train_process_is_refused_and_a_killed_writer_leaves_no_stale_lock(
    tmp_path, tiny_cfg
):
    cfg = tiny_cfg(checkpoint_every=2)
    save_run_config(cfg, tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "cfg.yaml"), str(run), "--pause-at", "3"],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "paused"
        assert (run / LOCK_NAME).read_text().strip() == str(first.pid)
        metrics = RunDir(run).metrics_path.read_bytes()
        for args in (("--resume",), ("-c", str(tmp_path / "cfg.yaml"))):
            second = _dynabit("train", "--run-dir", str(run), *args)
            assert second.returncode == 2, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
            assert f"pid {first.pid}" in lines[0] and str(run) in lines[0]
        assert RunDir(run).metrics_path.read_bytes() == metrics  # nothing written by the second
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    # The kernel dropped the lock with the process: the run resumes from its checkpoint.
    resumed = _dynabit("train", "--run-dir", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert RunDir(run).read_summary()["global_step"] == 12


def test_python_api_demo_and_sweep_refuse_a_locked_directory(tmp_path, tiny_cfg):
    cfg = tiny_cfg()
    with lock_held_elsewhere(tmp_path / "run") as holder:
        for call in (
            lambda: train(cfg, tmp_path / "run"),
            lambda: run_training(cfg, tmp_path / "run", resume=True),
        ):
            with pytest.raises(RunDirLockedError, match=rf"pid {holder.pid}\b"):
                call()
    assert not (tmp_path / "run" / "checkpoints").exists()
    demo_locked = r"demo directory .*pid (\d+)\b"
    with (
        lock_held_elsewhere(tmp_path / "demo"),
        pytest.raises(RunDirLockedError, match=demo_locked),
    ):
        run_demo(DemoOptions(run_dir=tmp_path / "demo", dataset="digits", progress=False))
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [LOCK_NAME]
    sweep = SweepConfig(base={"train": {"dataset": "digits"}}, grid={"quant.budget": [5.0]})
    point_locked = r"budget=5.0 failed: .*pid \d+\b"
    with (
        lock_held_elsewhere(tmp_path / "sweep" / "budget=5.0"),
        pytest.raises(SweepPointError, match=point_locked),
    ):
        run_sweep(sweep, tmp_path / "sweep", workers=1)


def test_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    with run_dir_lock(tmp_path) as path, run_dir_lock(tmp_path):
        assert path.read_text().strip() == str(os.getpid())
    with lock_held_elsewhere(tmp_path) as holder:
        held = rf"pid {holder.pid}\b"
        with pytest.raises(RunDirLockedError, match=held), run_dir_lock(tmp_path):
            pass
    with run_dir_lock(tmp_path):  # free again once the other process is gone
        pass


def test_a_grid_that_repeats_a_point_is_refused_before_anything_trains(tmp_path):
    (tmp_path / "sweep.yaml").write_text(
        "base: {train: {dataset: digits}}\ngrid: {quant.budget: [5.0, 6.0, 5.0]}\n"
    )
    res = _dynabit("sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and "repeats a point" in line
    assert "'budget=5.0'" in line
    assert not (tmp_path / "out").exists()
    sweep = SweepConfig(base={}, grid={"quant.budget": [5, 5.0]})  # one config, two spellings
    with pytest.raises(ValueError, match="'budget=5.0' is the same run as 'budget=5'"):
        run_sweep(sweep, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_every_rank_learns_that_rank_0_was_refused(tmp_path: Path, monkeypatch) -> None:
    """Under DDP rank 0 takes the lock; its refusal is broadcast, so no rank waits for it."""
    from dynabit.train import distributed
    from dynabit.train.distributed import DistEnv
    from dynabit.train.lock import RunDirLockedError, main_rank_lock

    sent: list[object] = []

    def broadcast(obj: object, env: DistEnv) -> object:  # rank 0's value, as the group would
        if env.is_main:
            sent.append(obj)
        return sent[-1]

    monkeypatch.setattr(distributed, "broadcast_object", broadcast)
    run = tmp_path / "run"
    run.mkdir()
    with lock_held_elsewhere(run) as holder:  # another writer holds the directory
        with pytest.raises(RunDirLockedError) as main_err, main_rank_lock(run, DistEnv(0, 2)):
            pass
        with pytest.raises(RunDirLockedError) as other_err, main_rank_lock(run, DistEnv(1, 2)):
            pass
    assert str(other_err.value) == str(main_err.value) and str(holder.pid) in str(main_err.value)
    with main_rank_lock(run, DistEnv(0, 2)):  # free again: rank 0 proceeds, and says so
        assert sent[-1] is None
