"""Small models shared by the tests (importable: ``pythonpath = tests``)."""

from __future__ import annotations

import torch
from torch import nn

from dynabit.models.efficientnet_lite import EfficientNetLite
from dynabit.models.layers import init_weights


def tiny_cnn(c: int = 8) -> nn.Sequential:
    """conv-BN-ReLU x3 + classifier, enough to have two dynamic layers."""
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.BatchNorm2d(2 * c),
        nn.ReLU(),
        nn.Conv2d(2 * c, 2 * c, 3, padding=1, stride=2),
        nn.BatchNorm2d(2 * c),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * c, 10),
    )


TINY_STAGES = ((1, 3, 1, 1, 8, 8), (2, 3, 2, 4, 8, 16), (1, 5, 2, 4, 16, 24))


def tiny_lite() -> EfficientNetLite:
    torch.manual_seed(0)
    model = EfficientNetLite(num_classes=10, stages=TINY_STAGES, stem_channels=8, head_channels=32)
    init_weights(model)
    with torch.no_grad():  # non-trivial BN statistics, as in a trained network
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()
