"""Small models and inputs for the quantization tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynabit.config import QuantConfig


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


@pytest.fixture
def small_hw_config() -> QuantConfig:
    """4-row x 8-column array: 2x2 groups, blocks of 8 channels."""
    return QuantConfig(hardware={"rows": 4, "cols": 8})


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 1, 9, 9, generator=g)
