"""``dynabit sweep``: a grid trained in parallel processes, one table, resumable."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dynabit.cli.main import app
from dynabit.config import ConfigError
from dynabit.sweep import SweepConfig, expand, load_sweep, run_sweep
from dynabit.train import RunDir

SRC = Path(__file__).resolve().parents[2] / "src"

BASE = {
    "train": {
        "dataset": "digits",
        "model": "small_cnn",
        "width": 4,
        "epochs": 1,
        "max_steps_per_epoch": 2,
        "train_subset": 256,
        "test_subset": 64,
        "progress": False,
    },
    "quant": {"hardware": {"rows": 4, "cols": 8}},
}


def test_expand_is_the_cartesian_product() -> None:
    spec = SweepConfig(
        base=BASE, grid={"quant.budget": [4.5, 6.0], "quant.group": [[1, 4], [2, 2]]}
    )
    points = expand(spec)
    assert [n for n, _, _ in points] == [
        "budget=4.5_group=1x4",
        "budget=4.5_group=2x2",
        "budget=6.0_group=1x4",
        "budget=6.0_group=2x2",
    ]
    assert points[1][2].quant.budget == 4.5 and points[1][2].quant.group == (2, 2)


def test_bad_grids_fail_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match="must start with train., quant. or pretrain."):
        SweepConfig(base=BASE, grid={"budget": [5]})
    with pytest.raises(ConfigError, match=r"budget=9"):
        expand(SweepConfig(base=BASE, grid={"quant.budget": [9.0]}))
    bad = tmp_path / "s.yaml"
    bad.write_text(yaml.safe_dump({"base": BASE, "grid": {}}))
    with pytest.raises(ConfigError, match="at least one key"):
        load_sweep(bad)


def test_parallel_sweep_writes_table_and_resumes(tmp_path) -> None:
    spec = SweepConfig(base=BASE, grid={"quant.budget": [4.5, 6.0]})
    rows = run_sweep(spec, tmp_path / "sw", workers=2)
    assert [r["quant.budget"] for r in rows] == [4.5, 6.0]
    for r in rows:
        assert 0.0 <= r["top1"] <= 100.0 and 4.0 <= r["b_avg"] <= 8.0
    table = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert table["rows"] == rows
    assert "| quant.budget | top-1 % | B_avg |" in (tmp_path / "sw" / "sweep.md").read_text()
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "sw").rglob("model.safetensors")}
    assert stamp
    again = run_sweep(spec, tmp_path / "sw", workers=1)  # resumes: nothing is retrained
    assert again == rows
    assert {p: p.stat().st_mtime for p in (tmp_path / "sw").rglob("model.safetensors")} == stamp


def test_cli_sweep(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, "grid": {"quant.score": ["max", "mean"]}}))
    res = CliRunner().invoke(app, ["sweep", str(path), "-o", str(tmp_path / "o"), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "score=mean" in res.output and (tmp_path / "o" / "sweep.md").is_file()


def test_sigint_stops_every_point_with_a_checkpoint_and_the_sweep_resumes(tmp_path) -> None:
    """SIGINT to the sweep process alone: it passes the stop to its workers and exits 130."""
    base = copy.deepcopy(BASE)
    base["train"].update(epochs=4, max_steps_per_epoch=6, checkpoint_every=2, log_every=1)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": base, "grid": {"quant.budget": [4.5, 6.0]}}))
    out = tmp_path / "o"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "dynabit", "sweep", str(path), "-o", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not any(  # wait until a point is training
        r.get("event") == "step" for d in out.glob("*/") for r in RunDir(d).read_metrics()
    ):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "stopped by SIGINT" in err and "continue with: dynabit sweep" in err
    assert "Traceback" not in err and not (out / "sweep.json").exists()
    stopped = [d for d in out.glob("*/") if RunDir(d).read_summary() is None]
    assert stopped  # at least the point that was training stopped early ...
    for d in stopped:  # ... and kept a checkpoint where it stopped, if it had started
        events = [r["event"] for r in RunDir(d).read_metrics()]
        assert "interrupted" in events or not events
        if "interrupted" in events:
            assert RunDir(d).latest() is not None

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["quant.budget"] for r in rows] == [4.5, 6.0]
