"""Optimizer parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math

from torch import nn
from torch.optim import SGD, Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from dynabit.config.training import TrainConfig

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def is_bn_leaf(leaf: str) -> bool:
    """Folded-BN affine parameters kept on a quantized layer (``bn_weight``, ``bn_bias``)."""
    return leaf.startswith("bn_")


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Split trainable parameters into ``decay``, ``no_decay`` and ``threshold`` groups.

    Block thresholds get their own learning rate and no weight decay (decay would pull every
    threshold to zero, i.e. refine everything). Activation scales, norm-layer affine parameters
    (also when folded into a quantized conv) and biases are not decayed either: shrinking
    them changes the function, not its complexity.
    Group order and membership depend only on the model, so optimizer state reloads by index.
    """
    norm_params = {
        id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(False)
    }
    decay, no_decay, threshold = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if "threshold" in name:
            threshold.append(p)
        elif "act_scale" in name or id(p) in norm_params or leaf == "bias" or is_bn_leaf(leaf):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": cfg.weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
        {"name": "threshold", "params": threshold, "weight_decay": 0.0, "lr": cfg.threshold_lr},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    """SGD (with momentum) or Adam over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return Adam(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int, step: int) -> float:
    """Multiplier of the base LR after ``step`` optimizer steps (a pure function of the step)."""
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)
    total = max(1, cfg.epochs * steps_per_epoch)
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """A per-step ``LambdaLR`` (cosine to zero over the run, step decay per epoch, or constant).

    Stepping per optimizer step (not per epoch) lets a run resume mid-epoch at the exact LR.
    """
    return LambdaLR(optimizer, lambda step: lr_factor(cfg, steps_per_epoch, step))
