"""``dynabit export`` and ``dynabit run-int`` on a small quantized checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dynabit.cli.engine import register
from dynabit.config.run import RunConfig
from dynabit.data import load_dataset
from dynabit.engine import load_program, load_trace
from dynabit.models import build_model
from dynabit.quant import calibrate, prepare
from dynabit.train import save_checkpoint


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quantized digits run (calibrated, untrained) saved like the training loop does."""
    root = tmp_path_factory.mktemp("run")
    cfg = RunConfig(
        train={"dataset": "digits", "model": "small_cnn", "width": 4, "quantize": True},
        quant={"hardware": {"rows": 4, "cols": 8}},
    )
    model = prepare(build_model("small_cnn", 1, 10, 8, width=4), cfg.quant)
    calibrate(model, [load_dataset("digits", "train").images[:128]])
    state = {"epoch": 1, "step": 0, "global_step": 1}
    save_checkpoint(root / "checkpoints", model_state=model.state_dict(), state=state, config=cfg)
    return root


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_export_then_run_int(run_dir: Path, app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    prog, onnx_path = tmp_path / "m.safetensors", tmp_path / "m.onnx"
    args = ["export", str(run_dir), "-p", str(prog), "--subset", "64", "--json"]
    with_onnx = importlib.util.find_spec("onnxruntime") is not None
    if with_onnx:
        args += ["--onnx", str(onnx_path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    if with_onnx:
        assert out["check"]["ok"] and out["check"]["logits_int_mismatches"] == 0
    assert load_program(prog).meta["dataset"] == "digits"

    res = runner.invoke(app, ["run-int", str(prog), "--subset", "100", "--batch-size", "32"])
    assert res.exit_code == 0, res.output
    assert "top-1" in res.output and "B_avg" in res.output
    trace = load_trace(tmp_path / "m.trace.safetensors")
    assert trace.samples == 100


def test_user_errors_exit_2(run_dir: Path, app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    res = runner.invoke(app, ["run-int", str(bad)])
    assert res.exit_code == 2 and "truncated" in res.output
    res = runner.invoke(app, ["export", str(tmp_path / "nowhere"), "-p", str(tmp_path / "x")])
    assert res.exit_code == 2 and "error:" in res.output
    res = runner.invoke(app, ["export", str(tmp_path / "nowhere")])  # no defaults to write to
    assert res.exit_code == 2 and res.output.startswith("error:") and "nowhere" in res.output
    assert not (tmp_path / "nowhere").exists()


def test_export_without_outputs_writes_both_into_the_run(run_dir: Path, app: typer.Typer) -> None:
    res = CliRunner().invoke(app, ["export", str(run_dir), "--subset", "20"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "program.safetensors").is_file() and (run_dir / "model.onnx").is_file()
    assert "check    OK" in res.output
    res = CliRunner().invoke(app, ["run-int", str(run_dir), "--subset", "20", "--no-trace"])
    assert res.exit_code == 0, res.output
    assert f"program     {run_dir / 'program.safetensors'}" in res.output
