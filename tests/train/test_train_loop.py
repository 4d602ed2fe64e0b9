"""The training loop: run directory contents, resume = uninterrupted, warm start, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from dynabit.config.io import ConfigError
from dynabit.config.run import load_run_config
from dynabit.data import load_dataset
from dynabit.train import (
    CheckpointError,
    RunDir,
    RunDirError,
    Trainer,
    evaluate,
    load_model,
    run_training,
    train,
)
from dynabit.train.checkpoint import list_checkpoints


class Interrupt(Exception):
    """Raised by a step hook to simulate a crash."""


def interrupt_at(step: int):
    def hook(global_step: int) -> None:
        if global_step == step:
            raise Interrupt(step)

    return hook


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _records(run_dir) -> list[dict]:
    """metrics.jsonl without the wall-clock field."""
    return [{k: v for k, v in r.items() if k != "time"} for r in RunDir(run_dir).read_metrics()]


def test_fp32_run_learns_and_fills_the_run_dir(tmp_path, tiny_cfg):
    cfg = tiny_cfg(max_steps_per_epoch=10, lr=0.03)
    res = train(cfg, tmp_path / "run")
    assert res.top1 > 30.0  # chance is 10 %
    assert res.global_step == 20 and not res.quantized and res.b_avg_macs is None
    rd = RunDir(tmp_path / "run")
    assert load_run_config(rd.config_path) == cfg
    recs = rd.read_metrics()
    steps = [r["global_step"] for r in recs if r["event"] == "step"]
    assert steps == list(range(1, 21))
    epochs = [r for r in recs if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1]
    assert epochs[-1]["test_top1"] == pytest.approx(res.top1)
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    assert json.loads(rd.summary_path.read_text())["top1"] == pytest.approx(res.top1)
    ck = rd.latest()
    assert ck.name == "step-00000020"
    assert load_run_config(ck / "config.yaml") == cfg


@pytest.mark.parametrize("quantize", [False, True])
def test_checkpoint_reload_gives_identical_outputs(tmp_path, tiny_cfg, quantize):
    res = train(tiny_cfg(quantize=quantize, epochs=1), tmp_path / "run")
    model, cfg, path = load_model(tmp_path / "run")
    assert path == res.checkpoint and cfg.train.quantize == quantize
    x = load_dataset("digits", "test", subset=64).images
    trained = res.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))
    again = evaluate(model, load_dataset("digits", "test", subset=200))
    assert again.top1 == pytest.approx(res.top1)
    if quantize:
        assert again.b_avg_macs == pytest.approx(res.b_avg_macs)


@pytest.mark.parametrize("quantize", [False, True])
def test_resume_after_interrupt_matches_uninterrupted(tmp_path, tiny_cfg, quantize):
    # 2 epochs x 6 steps; checkpoints at steps 4 and 8 (every 4) and 6, 12 (epoch ends).
    cfg = tiny_cfg(quantize=quantize, checkpoint_every=4)
    full = train(cfg, tmp_path / "full")

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "cut", step_hook=interrupt_at(10))
    cut = RunDir(tmp_path / "cut")
    assert cut.latest().name == "step-00000008"  # mid-epoch 2
    assert max(r["global_step"] for r in cut.read_metrics()) == 10  # logged past the checkpoint

    steps_seen: list[int] = []
    resumed = train(None, tmp_path / "cut", resume=True, step_hook=steps_seen.append)
    assert steps_seen == [9, 10, 11, 12]  # continued from the checkpoint, not from scratch
    a, b = _params(full.model), _params(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.top1 == full.top1
    # Redone steps were not logged twice; apart from timing the logs are the same.
    assert _records(tmp_path / "cut") == _records(tmp_path / "full")


def test_resume_of_a_finished_run_trains_nothing(tmp_path, tiny_cfg):
    first = train(tiny_cfg(epochs=1), tmp_path / "run")
    steps: list[int] = []
    again = train(None, tmp_path / "run", resume=True, step_hook=steps.append)
    assert steps == [] and again.top1 == first.top1 and again.global_step == first.global_step


def test_resume_without_checkpoint_starts_fresh(tmp_path, tiny_cfg):
    res = train(tiny_cfg(epochs=1), tmp_path / "run", resume=True)
    assert res.global_step == 6


def test_keep_last_k_checkpoints(tmp_path, tiny_cfg):
    train(tiny_cfg(checkpoint_every=1, keep_checkpoints=2), tmp_path / "run")
    names = [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names == ["step-00000011", "step-00000012"]


def test_refuses_to_mix_runs(tmp_path, tiny_cfg):
    train(tiny_cfg(epochs=1), tmp_path / "run")
    with pytest.raises(RunDirError, match="--resume"):
        train(tiny_cfg(epochs=1), tmp_path / "run")
    with pytest.raises(RunDirError, match=r"train\.lr"):
        train(tiny_cfg(epochs=1, lr=0.5), tmp_path / "run", resume=True)
    # Where the data lives or how progress is shown may change on resume.
    train(tiny_cfg(epochs=1, progress=True, log_every=3), tmp_path / "run", resume=True)
    with pytest.raises(RunDirError, match="no config"):
        train(None, tmp_path / "empty")


def test_global_batch_must_split_over_processes(tmp_path, tiny_cfg):
    from dynabit.train.distributed import DistEnv

    with pytest.raises(ConfigError, match="divisible"):
        Trainer(tiny_cfg(batch_size=33), tmp_path / "run", env=DistEnv(0, 2))


def test_warm_start_from_fp32_run(tmp_path, tiny_cfg):
    fp32 = train(tiny_cfg(epochs=1), tmp_path / "fp32")
    trainer = Trainer(tiny_cfg(quantize=True, init_from=str(tmp_path / "fp32")), tmp_path / "qat")
    trainer._setup()
    src = fp32.model.state_dict()
    dst = trainer.model.state_dict()
    for name in ("features.block2.conv.weight", "fc.weight", "fc.bias"):
        assert torch.equal(dst[name], src[name]), name
    bad = Trainer(tiny_cfg(init_from=str(tmp_path / "nowhere")), tmp_path / "x")
    with pytest.raises(CheckpointError):
        bad._setup()
    wrong = Trainer(tiny_cfg(init_from=str(tmp_path / "fp32"), width=4), tmp_path / "y")
    with pytest.raises(CheckpointError, match="do not fit"):
        wrong._setup()


def test_two_stage_pipeline(tmp_path, tiny_cfg):
    cfg = tiny_cfg(quantize=True, epochs=1).model_copy(update={"pretrain": {"epochs": 2}})
    res = run_training(cfg, tmp_path / "run")
    assert set(res) == {"fp32", "qat"}
    assert res["fp32"].global_step == 12 and not res["fp32"].quantized
    assert res["qat"].global_step == 6 and res["qat"].quantized
    assert 4.0 <= res["qat"].b_avg_macs <= 8.0
    qat_cfg = load_run_config(tmp_path / "run" / "qat" / "config.yaml")
    assert qat_cfg.train.init_from == str((tmp_path / "run" / "fp32").resolve())
    assert load_run_config(tmp_path / "run" / "config.yaml") == cfg
    # Evaluating the pipeline's run dir means its final (QAT) stage.
    model, mcfg, path = load_model(tmp_path / "run")
    assert mcfg.train.quantize and path.parent.parent.name == "qat"
    # Resuming a finished pipeline redoes nothing.
    steps: list[int] = []
    again = run_training(None, tmp_path / "run", resume=True, step_hook=steps.append)
    assert steps == [] and again["qat"].top1 == res["qat"].top1
