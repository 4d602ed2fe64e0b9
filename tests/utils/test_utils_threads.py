"""The default torch thread count of a dynabit process: decided from injected readings."""

import os

import pytest
import torch

from dynabit.utils import threads as threads_mod
from dynabit.utils.threads import (
    busy_cores,
    cpu_share,
    free_cores,
    refresh_threads,
    runnable_nices,
    set_threads,
    threads_for,
)


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads_mod.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads_mod, "_my_nice", lambda: 0)
    monkeypatch.setattr(threads_mod, "_auto", False)
    yield
    torch.set_num_threads(before)


def _reads(*readings):
    """A reader that returns ``readings`` one after the other (the last one repeated)."""
    seq = list(readings)

    def read():
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return read


@pytest.mark.parametrize(
    ("busy", "expected"), [(0.0, 2), (0.4, 2), (0.5, 1), (0.6, 1), (1.0, 1), (1.4, 1), (9.0, 1)]
)
def test_the_cores_left_free_rounded_half_up(busy, expected) -> None:
    assert threads_for(2, busy) == expected


def test_never_more_threads_than_cores_nor_fewer_than_one() -> None:
    assert threads_for(4, 1.0) == 3
    assert threads_for(4, -3.0) == 4
    assert threads_for(0, 0.0) == 1


def test_a_task_counts_by_the_share_the_scheduler_gives_it() -> None:
    assert cpu_share(0, 0) == 1.0
    assert cpu_share(-5, 0) == 1.0  # less nice than us: still at most one core
    assert cpu_share(19, 0) < 0.02  # a nice-19 background job hardly takes anything
    assert cpu_share(5, 5) == 1.0  # same nice as ours (we run niced too)
    assert cpu_share(5, 0) == pytest.approx(1.25**-5)


def test_busy_is_the_mean_over_the_readings() -> None:
    assert busy_cores([[0], [], [0, 0]], my_nice=0) == pytest.approx(1.0)
    assert busy_cores([], my_nice=0) == 0.0
    assert busy_cores([[19, 19, 19]], my_nice=0) < 0.1


def test_idle_now_gives_every_core_whatever_the_load_average_says(monkeypatch) -> None:
    # The lagging one-minute average of jobs that have just stopped must not matter.
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert free_cores(_reads([]), gap_s=0) == 2


def test_a_busy_process_now_takes_a_core(monkeypatch) -> None:
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert free_cores(_reads([0]), gap_s=0) == 1
    # seen in 2 of 5 readings (a job that sleeps most of the time): not a core
    assert free_cores(_reads([0], [], [0], [], []), gap_s=0) == 2
    # niced background jobs leave the cores to us
    assert free_cores(_reads([19, 19]), gap_s=0) == 2


def test_without_proc_the_load_average_stands_in(monkeypatch) -> None:
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert free_cores(_reads(None), gap_s=0) == 1
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert free_cores(_reads(None), gap_s=0) == 2


def test_reads_runnable_threads_of_other_processes(tmp_path) -> None:
    def task(pid, tid, state, nice, comm="python"):
        d = tmp_path / str(pid) / "task" / str(tid)
        d.mkdir(parents=True)
        rest = " ".join([state, *["0"] * 15, str(nice), "1", "0"])
        (d / "stat").write_text(f"{tid} ({comm}) {rest}\n")

    task(10, 10, "R", 0)
    task(10, 11, "S", 0)
    task(20, 20, "R", 19, comm="odd ) name")  # a command name holding ") "
    task(30, 30, "R", 0)  # this process: not counted
    task(30, 31, "R", 0)
    (tmp_path / "loadavg").write_text("0 0 0 1/1 1\n")  # not a process
    assert sorted(runnable_nices(str(tmp_path), pid=30)) == [0, 19]
    assert runnable_nices(str(tmp_path / "missing")) is None


def test_reads_this_machine() -> None:
    nices = runnable_nices()
    if nices is None:
        pytest.skip("no /proc on this platform")
    assert all(-20 <= n <= 19 for n in nices)


def test_environment_then_argument_win(monkeypatch) -> None:
    monkeypatch.setattr(threads_mod, "free_cores", lambda: 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads() == 2
    assert set_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert set_threads() == 1  # falls back to the free cores
    assert os.environ["OMP_NUM_THREADS"] == "not-a-number"


def test_refresh_follows_the_machine_only_for_the_default(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    free = {"now": 1}
    monkeypatch.setattr(threads_mod, "free_cores", lambda: free["now"])
    assert set_threads() == 1
    free["now"] = 2  # the other jobs stopped
    assert refresh_threads("QAT") == 2
    free["now"] = 1
    assert refresh_threads() == 1
    assert set_threads(2) == 2  # given explicitly: stays
    assert refresh_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads() == 2
    assert refresh_threads() == 2
