"""Tiny run configs on sklearn digits (tests import nothing from here: use the fixtures)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import tiny_runs
import torch

from dynabit.config.run import RunConfig

# Tiny tensors: one thread is fastest, and OpenMP spin-waits make 2 threads crawl on a busy box.
torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg() -> Callable[..., RunConfig]:
    """``tiny_cfg(**train_fields)``: a digits run config; ``quant=`` updates the quant section."""
    return tiny_runs.tiny_cfg
