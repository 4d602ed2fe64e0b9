"""Checkpoint folders: round trips, atomic layout, the latest pointer, pruning, RNG state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from dynabit.config.run import RunConfig
from dynabit.train.checkpoint import (
    CheckpointError,
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_state,
    resolve_checkpoint,
    restore_rng,
    save_checkpoint,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def _trained(opt_name: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    m = _model()
    opt = (
        torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        if opt_name == "sgd"
        else torch.optim.Adam(m.parameters(), lr=0.01)
    )
    for _ in range(3):
        loss = m(torch.randn(8, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m, opt


def _state(step: int, epoch: int = 0) -> dict:
    return {"epoch": epoch, "step": step, "global_step": step}


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_roundtrip_model_optimizer_scheduler(tmp_path, opt_name):
    m, opt = _trained(opt_name)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    opt.step()  # (no gradients: a no-op that keeps the scheduler's order check quiet)
    sched.step()
    cfg = RunConfig()
    path = save_checkpoint(
        tmp_path,
        model_state=m.state_dict(),
        state=_state(3, epoch=1),
        config=cfg,
        optimizer_state=opt.state_dict(),
        scheduler_state=sched.state_dict(),
        rng=[capture_rng()],
    )
    ck = load_checkpoint(path)
    assert (ck.epoch, ck.step, ck.global_step) == (1, 3, 3)
    assert ck.config == cfg
    for k, v in m.state_dict().items():
        assert torch.equal(ck.model[k], v), k

    # A fresh model + optimizer loaded from the checkpoint takes the very same next step.
    m2 = _model()
    m2.load_state_dict(ck.model)
    opt2 = type(opt)(m2.parameters(), lr=1.0)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 0.5**s)
    opt2.load_state_dict(ck.optimizer)  # after building the scheduler, as the trainer does
    sched2.load_state_dict(ck.scheduler)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    x = torch.randn(8, 4)
    for mm, oo in ((m, opt), (m2, opt2)):
        loss = mm(x).square().mean()
        oo.zero_grad()
        loss.backward()
        oo.step()
    for a, b in zip(m.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rng_roundtrip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    expected = (torch.rand(3), np.random.normal(size=3), random.random())
    path = save_checkpoint(tmp_path, model_state={}, state=_state(1), rng=[state, capture_rng()])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    ck = load_checkpoint(path)
    assert len(ck.rng) == 2
    restore_rng(ck.rng[0])
    got = (torch.rand(3), np.random.normal(size=3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_layout_latest_pointer_and_pruning(tmp_path):
    m = _model()
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, model_state=m.state_dict(), state=_state(step), keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-00000006", "step-00000008"]
    assert (tmp_path / "latest").read_text().strip() == "step-00000008"
    assert not list(tmp_path.glob(".tmp-*"))
    assert {p.name for p in (tmp_path / "step-00000008").iterdir()} == {
        "model.safetensors",
        "state.json",
    }


def test_latest_falls_back_to_newest_folder(tmp_path):
    m = _model()
    save_checkpoint(tmp_path, model_state=m.state_dict(), state=_state(1))
    save_checkpoint(tmp_path, model_state=m.state_dict(), state=_state(5))
    (tmp_path / "latest").write_text("step-00000099\n")  # dangling pointer
    assert latest_checkpoint(tmp_path).name == "step-00000005"
    (tmp_path / "latest").unlink()
    assert latest_checkpoint(tmp_path).name == "step-00000005"


def test_half_written_folder_is_ignored_and_cleaned(tmp_path):
    m = _model()
    save_checkpoint(tmp_path, model_state=m.state_dict(), state=_state(3))
    tmp = tmp_path / ".tmp-step-00000007-123"  # what a writer killed mid-save leaves
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"garbage")
    assert latest_checkpoint(tmp_path).name == "step-00000003"
    save_checkpoint(tmp_path, model_state=m.state_dict(), state=_state(4), keep=5)
    assert not tmp.exists()


def test_resolve_paths_and_errors(tmp_path):
    m = _model()
    ck = save_checkpoint(
        tmp_path / "run" / "checkpoints", model_state=m.state_dict(), state=_state(2)
    )
    assert resolve_checkpoint(tmp_path / "run") == ck
    assert resolve_checkpoint(tmp_path / "run" / "checkpoints") == ck
    assert resolve_checkpoint(ck) == ck
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "empty")
    weights = load_model_state(ck / "model.safetensors")
    assert torch.equal(weights["0.weight"], m.state_dict()["0.weight"])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model_state(bad)


def test_non_tensor_extra_state_kept_and_unjsonable_rejected(tmp_path):
    ck = save_checkpoint(
        tmp_path, model_state={"w": torch.ones(2), "meta": {"a": 1}}, state=_state(1)
    )
    assert load_checkpoint(ck).model["meta"] == {"a": 1}
    with pytest.raises(CheckpointError, match="cannot store"):
        save_checkpoint(tmp_path, model_state={"obj": object()}, state=_state(2))
    assert latest_checkpoint(tmp_path) == ck and not list(tmp_path.glob(".tmp-*"))
