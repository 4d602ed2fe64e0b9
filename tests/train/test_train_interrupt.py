"""SIGINT / SIGTERM: a run stops at the next step with a checkpoint there, and resumes exactly."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dynabit.config.run import save_run_config
from dynabit.train import RunDir, TrainingInterrupted, train
from dynabit.train.lock import LOCK_NAME

SRC = Path(__file__).resolve().parents[2] / "src"


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _leftovers(run: Path) -> list[Path]:
    """Temporary files or folders an interrupted write would leave behind (the lock file
    stays: the lock itself died with its holder)."""
    return [
        p
        for p in run.rglob("*")
        if (p.name.startswith(".") and p.name != LOCK_NAME) or ".tmp" in p.name
    ]


@pytest.mark.parametrize(
    ("signum", "at_step", "position"),
    [
        (signal.SIGINT, 3, (0, 3)),  # mid-epoch, between periodic checkpoints
        (signal.SIGTERM, 9, (1, 3)),  # in the second epoch
        (signal.SIGTERM, 6, (0, 6)),  # on the last step of an epoch, before its evaluation
    ],
)
def test_signal_stops_with_a_checkpoint_and_resumes_exactly(
    tmp_path, tiny_cfg, signum, at_step, position
):
    cfg = tiny_cfg(quantize=True, checkpoint_every=4)

    def hook(step: int) -> None:
        if step == at_step:
            os.kill(os.getpid(), signum)

    before = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, tmp_path / "stopped", step_hook=hook)
    assert signal.getsignal(signum) is before  # handlers are put back
    err = info.value
    assert err.signum == signum and err.exit_code == 128 + signum
    rd = RunDir(tmp_path / "stopped")
    assert err.checkpoint == rd.latest() and rd.latest().name == f"step-{at_step:08d}"
    assert signal.Signals(signum).name in str(err) and str(rd.latest()) in str(err)
    assert rd.read_summary() is None and not _leftovers(rd.path)
    events = [r for r in rd.read_metrics() if r["event"] == "interrupted"]
    assert [(r["epoch"], r["step"], r["signal"]) for r in events] == [(*position, signum)]

    resumed = train(None, tmp_path / "stopped", resume=True)
    full = train(cfg, tmp_path / "full")
    _same(full.model.state_dict(), resumed.model.state_dict())
    assert resumed.top1 == full.top1 and resumed.b_avg_macs == full.b_avg_macs


def test_interrupted_pickles_for_worker_processes() -> None:
    err = TrainingInterrupted(signal.SIGTERM, "checkpoint x", Path("x"))
    back = pickle.loads(pickle.dumps(err))
    assert (back.signum, back.detail, back.checkpoint, str(back)) == (
        err.signum,
        err.detail,
        err.checkpoint,
        str(err),
    )
    assert not isinstance(err, Exception)  # `except Exception` in a loop does not swallow it


def _wait_for_steps(run: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        steps = [r for r in RunDir(run).read_metrics() if r.get("event") == "step"]
        if len(steps) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} steps within {timeout} s")


def test_cli_sigterm_at_any_moment_exits_143_and_resumes_to_the_same_parameters(tmp_path, tiny_cfg):
    """A real signal from outside, at whatever moment it lands."""
    cfg = tiny_cfg(quantize=True, checkpoint_every=4, epochs=3)
    save_run_config(cfg, tmp_path / "cfg.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dynabit", "--threads", "1", "train", "--run-dir", str(run)]
    proc = subprocess.Popen(
        [*cmd, "--config", str(tmp_path / "cfg.yaml")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_steps(run, 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    assert RunDir(run).latest() is not None and not _leftovers(run)

    again = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    full = train(cfg, tmp_path / "full")
    from safetensors.torch import load_file

    _same(load_file(str(RunDir(run).latest() / "model.safetensors")), full.model.state_dict())
