"""The default torch thread count of a dynabit process."""

import pytest
import torch

from dynabit.utils.threads import DEFAULT_THREADS, set_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_is_one_thread_without_environment(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert set_threads() == DEFAULT_THREADS == 1


def test_environment_then_argument_win(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads() == 2
    assert set_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert set_threads() == DEFAULT_THREADS
