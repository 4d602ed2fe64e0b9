"""The number of torch CPU threads a dynabit process uses by default.

Measured on a 2-core machine shared with other jobs (``README.md``, "Threads"): one thread
runs a QAT step of the small CNN about 4x faster than two once anything else wants the cores,
because torch's two OpenMP threads spin-wait on each other; with the cores to itself a second
thread gains little at these layer sizes. So one thread is the default, and ``--threads`` (or
``OMP_NUM_THREADS``) asks for more.
"""

from __future__ import annotations

import os

import torch

DEFAULT_THREADS = 1


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``OMP_NUM_THREADS`` when the environment
    sets it, else :data:`DEFAULT_THREADS`. Returns the count now in use."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else DEFAULT_THREADS
    torch.set_num_threads(threads)
    return torch.get_num_threads()
