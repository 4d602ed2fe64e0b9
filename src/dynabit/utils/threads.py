"""The number of torch CPU threads a dynabit process uses by default.

Measured on a 2-core machine (``python benchmarks/threads.py``, README "Threads"): while other
jobs kept the cores busy, a QAT step of the small CNN ran 5x faster on one thread than on two,
because torch's OpenMP threads spin-wait on each other as soon as the cores are contended; on
the idle machine two threads ran the demo's FP32 stage about twice as fast as one. So the
default is the number of cores left free by the machine's load when the process starts (the
one-minute load average, rounded), at least one; ``--threads`` or ``OMP_NUM_THREADS`` decide
instead when given.
"""

from __future__ import annotations

import os

import torch


def free_cores() -> int:
    """Cores this process may use, less the machine's one-minute load average (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform: assume the cores are free
        load = 0.0
    return max(1, (cores or 1) - round(load))


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``OMP_NUM_THREADS`` when the environment
    sets it, else :func:`free_cores`. Returns the count now in use."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else free_cores()
    torch.set_num_threads(threads)
    return torch.get_num_threads()
