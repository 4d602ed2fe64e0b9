"""The default torch thread count of a dynabit process."""

import os

import pytest
import torch

from dynabit.utils import threads as threads_mod
from dynabit.utils.threads import free_cores, set_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("load", "expected"), [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (9.0, 1)])
def test_default_is_the_cores_the_load_leaves_free(monkeypatch, load, expected) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_mod.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (load, 0.0, 0.0))
    assert free_cores() == expected
    assert set_threads() == expected


def test_environment_then_argument_win(monkeypatch) -> None:
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads() == 2
    assert set_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert set_threads() == 1  # falls back to the free cores (none free at load 9)
    assert os.environ["OMP_NUM_THREADS"] == "not-a-number"
