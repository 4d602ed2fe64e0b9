"""Small models shared by the tests (importable: ``pythonpath = tests``)."""

from __future__ import annotations

from torch import nn


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
