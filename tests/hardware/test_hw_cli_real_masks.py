"""``dynabit simulate --checkpoint`` and ``--program``: masks that real images produced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dynabit.cli.main import app
from dynabit.config.run import RunConfig
from dynabit.data import load_dataset
from dynabit.engine import Executor, lower_checkpoint, save_program
from dynabit.hardware import compare, trace_model
from dynabit.hardware.engine_trace import program_shapes, trace_masks
from dynabit.models import build_model
from dynabit.quant import calibrate, prepare
from dynabit.train import load_model, save_checkpoint

HW = {"rows": 4, "cols": 8}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    cfg = RunConfig(
        train={"dataset": "digits", "model": "small_cnn", "width": 8, "quantize": True},
        quant={"hardware": HW},
    )
    model = prepare(build_model("small_cnn", 1, 10, 8, width=8), cfg.quant)
    calibrate(model, [load_dataset("digits", "train").images[:128]])
    state = {"epoch": 1, "step": 0, "global_step": 1}
    save_checkpoint(root / "checkpoints", model_state=model.state_dict(), state=state, config=cfg)
    return root


def _cycles(out: Path) -> float:
    return json.loads((out / "simulate.json").read_text())["runs"]["dynamic"]["summary"]["cycles"]


def test_checkpoint_and_program_give_the_same_cycles(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    prog = tmp_path / "p.safetensors"
    save_program(lower_checkpoint(run_dir), prog)
    outs = {}
    for flag, path in (("--checkpoint", run_dir), ("--program", prog)):
        out = tmp_path / flag.strip("-")
        res = runner.invoke(
            app,
            ["simulate", flag, str(path), "--images", "24", "--out", str(out), "--dataflow", "os"],
        )
        assert res.exit_code == 0, res.output
        outs[flag] = out
    # The engine takes the model's decisions, so both paths simulate the same schedule.
    assert _cycles(outs["--checkpoint"]) == _cycles(outs["--program"])


def test_program_masks_equal_model_masks(run_dir: Path) -> None:
    model, cfg, _ = load_model(run_dir)
    x = load_dataset("digits", "test", None, 16).images
    shapes, masks = trace_model(model, x, cfg.quant.hardware)
    program = lower_checkpoint(run_dir)
    p_shapes = program_shapes(program, cfg.quant.hardware)
    p_masks = trace_masks(Executor(program)(x).trace)
    assert set(p_masks) == set(masks)
    for name in masks:
        assert np.array_equal(p_masks[name], masks[name])
    dyn = {s.name: s for s in shapes if s.dynamic}
    for s in p_shapes:
        if s.dynamic:
            ref = dyn[s.name]
            assert (s.in_hw, s.out_hw, s.kernel, s.group, s.block_size) == (
                ref.in_hw,
                ref.out_hw,
                ref.kernel,
                ref.group,
                ref.block_size,
            )
    hw = cfg.quant.hardware
    assert compare(p_shapes, p_masks, hw).mean_cycles("dynamic") > 0


def test_fp32_checkpoint_and_both_sources_are_refused(run_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["simulate", "--checkpoint", str(run_dir), "--program", str(tmp_path / "x")]
    )
    assert res.exit_code != 0 and "not both" in res.output
    res = CliRunner().invoke(app, ["simulate", "--checkpoint", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "missing" in res.output
