"""The number of torch CPU threads a dynabit process uses by default.

Measured on a 2-core machine shared with other jobs (``python benchmarks/threads.py``, README
"Threads"): a QAT step of the small CNN ran 5x faster on one thread than on two, and 4x faster
with one more busy process on the machine, because torch's two OpenMP threads spin-wait on each
other as soon as the cores are contended. So one thread is the default; ``--threads`` (or
``OMP_NUM_THREADS``) asks for more on a machine whose cores are free.
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
