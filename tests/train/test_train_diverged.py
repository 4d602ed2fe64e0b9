"""A loss or weights that stop being finite stop the run with ``TrainingDivergedError``
(exit status 2 from the CLI) naming the position and the last good checkpoint; NaN/Inf weights
are never checkpointed."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from dynabit.config.run import save_run_config
from dynabit.train import RunDir, Trainer, TrainingDivergedError, load_checkpoint


def _poison(trainer_box: list[Trainer], at: int, name: str):
    def hook(step: int) -> None:
        if step == at:
            with torch.no_grad():
                dict(trainer_box[0].model.state_dict())[name].fill_(math.nan)

    return hook


def _first(model: torch.nn.Module, kind: str) -> str:
    return next(k for k in model.state_dict() if k.endswith(kind))


@pytest.mark.parametrize("poisoned", ["weight", "running_mean"])
def test_non_finite_weights_stop_the_run_and_are_never_saved(tmp_path, tiny_cfg, poisoned):
    box: list[Trainer] = []
    t = Trainer(tiny_cfg(checkpoint_every=2), tmp_path / "run")
    box.append(t)
    t._setup()  # build the model to name its tensors, then run from the start
    name = _first(t.model, poisoned)
    t = Trainer(tiny_cfg(checkpoint_every=2), tmp_path / "run", step_hook=_poison(box, 3, name))
    box[0] = t
    with pytest.raises(TrainingDivergedError) as e:
        t.run()
    msg = str(e.value)
    # A NaN weight makes the next loss NaN; a NaN BatchNorm statistic (training mode normalises
    # with the batch's own) keeps the loss finite and is caught at the checkpoint of step 4.
    want = "the loss is nan" if poisoned == "weight" else f"weights are not finite ({name}"
    assert want in msg and "epoch 1, step 4 (global step 4)" in msg, msg
    ckpts = RunDir(tmp_path / "run").checkpoints
    assert "step-00000002" in msg and sorted(p.name for p in ckpts.iterdir()) == [
        "latest",
        "step-00000002",
    ]
    ck = load_checkpoint(ckpts)  # the last good checkpoint is intact and finite
    assert ck.global_step == 2
    events = [r["event"] for r in RunDir(tmp_path / "run").read_metrics()]
    assert events[-1] == "diverged"


def test_cli_diverged_run_is_one_error_line_with_status_2(tmp_path, tiny_cfg):
    # A finite but extreme pull target: the penalty overflows float32 at the first step.
    cfg = tiny_cfg({"threshold_penalty": 1.0, "threshold_target": 1e30}, quantize=True)
    save_run_config(cfg, tmp_path / "cfg.yaml")
    res = subprocess.run(
        [sys.executable, "-m", "dynabit", "train", "-c", str(tmp_path / "cfg.yaml")]
        + ["--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "diverged" in lines[0] and "epoch 1, step 1" in lines[0] and "penalty inf" in lines[0]
    assert "no checkpoint yet" in lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
    last = json.loads(RunDir(tmp_path / "run").metrics_path.read_text().splitlines()[-1])
    assert last["event"] == "diverged" and last["global_step"] == 1
