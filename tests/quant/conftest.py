"""Small models and inputs for the quantization tests."""

from __future__ import annotations

import pytest
import torch

from dynabit.config import QuantConfig


@pytest.fixture
def small_hw_config() -> QuantConfig:
    """4-row x 8-column array: 2x2 groups, blocks of 8 channels."""
    return QuantConfig(hardware={"rows": 4, "cols": 8})


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 1, 9, 9, generator=g)
