"""Suite-wide fixtures."""

import pytest
import torch

from dynabit.utils.threads import set_threads


@pytest.fixture(autouse=True)
def _threads_stay_as_they_are():
    """A CLI command run in-process lets the thread count follow the machine's load
    (``dynabit.utils.threads.refresh_threads``); fix it again afterwards, so that later tests
    (runs compared bit for bit) never change thread counts between two runs."""
    yield
    set_threads(torch.get_num_threads())
