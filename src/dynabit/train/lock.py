"""One writer per run directory: an exclusive ``flock`` on ``<run>/.lock``.

The lock belongs to the open file, so the kernel drops it when its process ends in any way
(SIGKILL included): a killed run never leaves a stale lock behind, and the PID written into
the file is only a note for the message a second writer gets. Within one process the lock is
re-entrant (the two-stage pipeline, a trainer and the demo nest on the same folders).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from dynabit.train.rundir import RunDirError

if TYPE_CHECKING:
    from dynabit.train.distributed import DistEnv

LOCK_NAME = ".lock"

_held: dict[Path, tuple[IO[str], int]] = {}  # resolved folder -> (open lock file, depth)
_guard = threading.Lock()


class RunDirLockedError(RunDirError):
    """Another process is writing the run directory (it holds ``<run>/.lock``)."""


def _holder(f: IO[str]) -> str:
    f.seek(0)
    pid = f.read().strip()
    return pid if pid.isdigit() else "unknown"


@contextmanager
def run_dir_lock(path: str | Path, what: str = "run directory") -> Iterator[Path]:
    """Hold the exclusive lock of the folder ``path`` (created) for the ``with`` block.

    Raises :class:`RunDirLockedError` naming the holder's PID when another process holds it.
    Yields the lock file's path.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise RunDirError(
            f"{what} {str(folder)!r} is a file, not a directory; choose another directory"
        )
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    lock_path = folder / LOCK_NAME
    with _guard:
        if key in _held:
            f, depth = _held[key]
            _held[key] = (f, depth + 1)
        else:
            f = open(lock_path, "a+")  # noqa: SIM115 - held open for the whole block
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(f)
                f.close()
                raise RunDirLockedError(
                    f"{what} {str(folder)!r} is in use by another process (pid {pid}, which "
                    f"holds {str(lock_path)!r}); wait for it to finish or stop it, or choose "
                    "another directory"
                ) from None
            except BaseException:
                f.close()
                raise
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            _held[key] = (f, 1)
    try:
        yield lock_path
    finally:
        with _guard:
            f, depth = _held[key]
            if depth > 1:
                _held[key] = (f, depth - 1)
            else:
                del _held[key]
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()


@contextmanager
def main_rank_lock(path: str | Path, env: DistEnv, what: str = "run directory") -> Iterator[None]:
    """:func:`run_dir_lock` on rank 0 (the one rank that writes). Every rank learns rank 0's
    outcome, so a refused lock stops all ranks instead of leaving the others waiting for it."""
    from dynabit.train.distributed import broadcast_object

    with ExitStack() as stack:
        refusal = None
        if env.is_main:
            try:
                stack.enter_context(run_dir_lock(path, what))
            except RunDirLockedError as e:
                refusal = str(e)
        refusal = broadcast_object(refusal, env)
        if refusal is not None:
            raise RunDirLockedError(refusal)
        yield
