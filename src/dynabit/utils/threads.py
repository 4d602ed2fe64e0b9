"""The number of torch CPU threads a dynabit process uses by default.

Measured on a 2-core machine (``python benchmarks/threads.py``, README "Threads"): while other
jobs kept the cores busy, a QAT step of the small CNN ran 5x faster on one thread than on two,
because torch's OpenMP threads spin-wait on each other as soon as the cores are contended; on
the idle machine two threads ran the demo's FP32 stage about twice as fast as one.

So the default is the number of cores that other processes leave free *now*: the threads of
other processes that are runnable at this moment (state ``R`` in ``/proc``), sampled a few times
over a tenth of a second and averaged, each counted by the CPU share the scheduler gives it
against this process (a task niced 19 beside one at nice 0 takes about 1.5 % of a core, so it
hardly counts; one at our own nice or lower counts as a whole core). The one-minute load
average is not used where ``/proc`` can be read: it trails the machine by minutes, so right
after other jobs stop it still reports them and a run would start on one thread on an idle
machine. ``--threads`` or ``OMP_NUM_THREADS`` decide instead when given; otherwise long jobs
decide again at each stage (:func:`refresh_threads`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

import torch

log = logging.getLogger(__name__)

PROC = "/proc"
SAMPLES = 5  # readings of the runnable tasks, ...
SAMPLE_GAP_S = 0.025  # ... this far apart (0.1 s in all)
NICE_STEP = 1.25  # CFS: each nice level is about 1.25x less CPU weight

# True once set_threads() chose the count itself (no argument, no OMP_NUM_THREADS): only then
# may refresh_threads() change it.
_auto = False


def cpu_share(their_nice: int, my_nice: int) -> float:
    """The fraction of one core a runnable task at ``their_nice`` takes from this process
    (at ``my_nice``) when both want the same core: ``1.25**(my - their)``, at most 1."""
    return min(1.0, NICE_STEP ** (my_nice - their_nice))


def runnable_nices(proc: str = PROC, pid: int | None = None) -> list[int] | None:
    """Nice values of the threads of *other* processes that are runnable now (state ``R`` in
    ``<proc>/<pid>/task/<tid>/stat``), or ``None`` when ``proc`` cannot be listed."""
    me = os.getpid() if pid is None else pid
    try:
        entries = os.listdir(proc)
    except OSError:
        return None
    nices = []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            tids = os.listdir(f"{proc}/{entry}/task")
        except OSError:  # the process ended meanwhile
            continue
        for tid in tids:
            try:
                with open(f"{proc}/{entry}/task/{tid}/stat", encoding="ascii") as f:
                    stat = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            # "pid (comm) state ... nice ...": the command may hold spaces and parentheses,
            # so fields are counted from the last ")"; state is field 3, nice field 19.
            fields = stat[stat.rfind(")") + 1 :].split()
            if len(fields) > 16 and fields[0] == "R":
                try:
                    nices.append(int(fields[16]))
                except ValueError:
                    continue
    return nices


def busy_cores(readings: Sequence[Sequence[int]], my_nice: int) -> float:
    """Cores the other processes keep busy: the mean over ``readings`` (each the nice values of
    the runnable tasks seen at one instant) of their summed :func:`cpu_share`."""
    if not readings:
        return 0.0
    return sum(sum(cpu_share(n, my_nice) for n in r) for r in readings) / len(readings)


def threads_for(cores: int, busy: float) -> int:
    """The thread count for ``cores`` usable cores of which ``busy`` are taken: the cores left,
    ``busy`` rounded half up, at least 1 and at most ``cores``."""
    cores = max(1, cores)
    return max(1, min(cores, cores - int(busy + 0.5)))


def _my_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _my_nice() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


def free_cores(
    read: Callable[[], list[int] | None] = runnable_nices,
    samples: int = SAMPLES,
    gap_s: float = SAMPLE_GAP_S,
) -> int:
    """Cores this process may use that other processes leave free now (at least 1).

    ``read()`` gives the nice values of the other processes' runnable threads at one instant
    (:func:`runnable_nices`), or ``None`` where that cannot be read; then the one-minute load
    average stands in.
    """
    cores = _my_cores()
    readings: list[list[int]] = []
    for i in range(max(1, samples)):
        r = read()
        if r is None:
            break
        readings.append(r)
        if i + 1 < samples:
            time.sleep(gap_s)
    if readings:
        busy = busy_cores(readings, _my_nice())
    else:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average either: assume the cores are free
            busy = 0.0
    return threads_for(cores, busy)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``OMP_NUM_THREADS`` when the environment
    sets it, else :func:`free_cores` (and then :func:`refresh_threads` may change it later).
    Returns the count now in use."""
    global _auto
    _auto = False
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            threads = int(env)
        else:
            threads = free_cores()
            _auto = True
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def refresh_threads(stage: str = "") -> int:
    """Decide the thread count again (at the start of a stage of a long job) when
    :func:`set_threads` chose it from the free cores; a count given by ``--threads`` or
    ``OMP_NUM_THREADS`` (or set by the caller directly) stays. Returns the count in use."""
    if not _auto:
        return torch.get_num_threads()
    before, now = torch.get_num_threads(), free_cores()
    if now != before:
        torch.set_num_threads(now)
        log.info("%sthreads: %d -> %d (cores free now)", f"{stage}: " if stage else "", before, now)
    return torch.get_num_threads()
