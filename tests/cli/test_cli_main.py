"""The ``dynabit`` CLI: train / eval as thin calls, resume, and clean user errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_process import dynabit_process, one_error_line
from safetensors.torch import load_file
from typer.testing import CliRunner

from dynabit.cli.main import app
from dynabit.config.run import load_run_config, save_run_config, validate_run
from dynabit.train import RunDir, evaluate_checkpoint, train

torch.set_num_threads(1)
runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src"

TINY = {
    "dataset": "digits",
    "width": 8,
    "epochs": 2,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 0.01,
    "max_steps_per_epoch": 6,
    "train_subset": 600,
    "test_subset": 200,
    "calib_batches": 2,
    "progress": False,
    "checkpoint_every": 4,
}


@pytest.fixture
def config_file(tmp_path) -> Path:
    cfg = validate_run({"train": TINY, "quant": {"hardware": {"rows": 4, "cols": 4}}})
    path = tmp_path / "run.yaml"
    save_run_config(cfg, path)
    return path


def _ok(args: list[str]):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def _user_error(args: list[str], match: str) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "error:" in res.stderr and match in res.stderr, res.stderr
    return res.stderr


def test_help_lists_commands():
    out = _ok(["--help"]).output
    assert "train" in out and "eval" in out


def test_train_with_overrides_then_eval(tmp_path, config_file):
    run = tmp_path / "run"
    res = _ok(["train", "-c", str(config_file), "-o", str(run), "--fp32", "--epochs", "1"])
    summary = json.loads(res.stdout)["train"]
    assert summary["global_step"] == 6 and summary["quantized"] is False
    saved = load_run_config(run / "config.yaml")
    assert saved.train.epochs == 1 and not saved.train.quantize  # overrides reach the config

    out = _ok(["eval", str(run)]).stdout
    assert f"top-1       {summary['top1']:.2f} %" in out
    full = json.loads(_ok(["eval", str(run), "--json"]).stdout)
    assert full == evaluate_checkpoint(run)
    assert full["top1"] == pytest.approx(summary["top1"])


def test_eval_quantized_reports_b_avg_and_layers(tmp_path, config_file):
    run = tmp_path / "run"
    _ok(["train", "-c", str(config_file), "-o", str(run), "--epochs", "1", "--budget", "6"])
    res = json.loads(_ok(["eval", str(run / "checkpoints"), "--json", "--subset", "100"]).stdout)
    assert res["quantized"] and res["samples"] == 100
    assert 4.0 <= res["b_avg_macs"] <= 8.0 and res["layers"]
    text = _ok(["eval", str(run)]).stdout
    assert "B_avg" in text and "MAC-weighted" in text
    for name in res["layers"]:
        assert name in text


def test_resume_continues_from_last_checkpoint(tmp_path, config_file):
    cfg = load_run_config(config_file)

    def stop_at_10(step: int) -> None:
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", step_hook=stop_at_10)
    assert RunDir(tmp_path / "cut").latest().name == "step-00000008"
    res = _ok(["train", "-o", str(tmp_path / "cut"), "--resume"])  # config from the run dir
    assert json.loads(res.stdout)["train"]["global_step"] == 12

    _ok(["train", "-c", str(config_file), "-o", str(tmp_path / "full")])
    a = load_file(str(RunDir(tmp_path / "cut").latest() / "model.safetensors"))
    b = load_file(str(RunDir(tmp_path / "full").latest() / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_user_errors_exit_2_without_traceback(tmp_path, config_file):
    _user_error(
        ["train", "-c", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "r")], "missing"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: -3\n")
    _user_error(["train", "-c", str(bad), "-o", str(tmp_path / "r")], "[train]: epochs")
    _user_error(
        ["train", "-c", str(config_file), "-o", str(tmp_path / "r"), "--budget", "99"], "budget"
    )
    _user_error(["train", "-o", str(tmp_path / "r"), "--dataset", "idx"], "data_dir")
    _user_error(["train", "-o", str(tmp_path / "r"), "--dataset", "nope"], "dataset")
    _user_error(["eval", str(tmp_path / "nowhere")], "does not exist")
    _user_error(["eval", str(tmp_path), "--dataset", "nope"], "unknown dataset")
    run = tmp_path / "run"
    _ok(["train", "-c", str(config_file), "-o", str(run), "--fp32", "--epochs", "1"])
    _user_error(["train", "-c", str(config_file), "-o", str(run)], "--resume")
    _user_error(["train", "-c", str(config_file), "-o", str(run), "--resume"], "differs")


def test_resume_with_another_config_is_one_error_line_naming_the_fields(tmp_path, config_file):
    """The real command line: the differing fields are named inside a single ``error:`` line."""
    run = tmp_path / "run"
    _ok(["train", "-c", str(config_file), "-o", str(run), "--fp32", "--epochs", "1"])
    other = tmp_path / "other.yaml"
    saved = load_run_config(run / "config.yaml")
    save_run_config(
        saved.model_copy(update={"train": saved.train.model_copy(update={"lr": 0.5})}), other
    )
    before = sorted(p.name for p in run.rglob("*"))
    proc = dynabit_process(
        "train",
        "-c",
        str(other),
        "-o",
        str(run),
        "--resume",
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    one_error_line(proc, "differs", "train.lr")
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written or lost


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_under_torchrun(tmp_path, config_file):
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "dynabit.cli",
        "train",
        "-c",
        str(config_file),
        "-o",
        str(tmp_path / "run"),
        "--fp32",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"global_step"') == 1  # only rank 0 prints the summary
    assert json.loads(proc.stdout)["train"]["global_step"] == 12
