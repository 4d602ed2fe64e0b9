"""Parameter groups and the per-step LR schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dynabit.config.training import TrainConfig
from dynabit.train.optim import build_optimizer, build_scheduler, lr_factor, param_groups


class _Toy(nn.Module):
    """Names like a prepared model: a threshold, an act_scale, folded BN affine, plain BN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.conv.threshold = nn.Parameter(torch.zeros(2))
        self.conv.act_scale = nn.Parameter(torch.ones(()))
        self.conv.bn_weight = nn.Parameter(torch.ones(2))
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 3)


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_groups_thresholds_and_no_decay():
    m = _Toy()
    cfg = TrainConfig(lr=0.1, threshold_lr=0.003, weight_decay=1e-3)
    groups = {g["name"]: g for g in param_groups(m, cfg)}
    assert _names(m, groups["threshold"]) == {"conv.threshold"}
    assert groups["threshold"]["lr"] == 0.003 and groups["threshold"]["weight_decay"] == 0
    assert _names(m, groups["no_decay"]) == {
        "conv.act_scale",
        "conv.bn_weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "fc.bias",
    }
    assert _names(m, groups["decay"]) == {"conv.weight", "fc.weight"}
    assert groups["decay"]["weight_decay"] == 1e-3
    opt = build_optimizer(m, cfg)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.parameters()))


def test_fp32_model_has_no_threshold_group():
    names = [g["name"] for g in param_groups(nn.Linear(2, 2), TrainConfig())]
    assert names == ["decay", "no_decay"]


def test_frozen_parameters_are_left_out():
    m = nn.Linear(2, 2)
    m.weight.requires_grad_(False)
    assert [g["name"] for g in param_groups(m, TrainConfig())] == ["no_decay"]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_optimizer_kind(opt):
    o = build_optimizer(nn.Linear(2, 2), TrainConfig(optimizer=opt, momentum=0.8))
    assert type(o).__name__.lower() == opt


def test_cosine_schedule_per_step():
    cfg = TrainConfig(epochs=2, schedule="cosine", lr=1.0)
    assert lr_factor(cfg, 10, 0) == 1.0
    assert lr_factor(cfg, 10, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 10, 20) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(cfg, 10, 5) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    m = nn.Linear(2, 2)
    opt = build_optimizer(m, cfg)
    sched = build_scheduler(opt, cfg, 10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_step_and_constant_schedules():
    cfg = TrainConfig(epochs=10, schedule="step", step_size=3, gamma=0.5)
    assert [lr_factor(cfg, 4, s) for s in (0, 11, 12, 24)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(TrainConfig(schedule="constant"), 4, 999) == 1.0
