"""Shared test helper (not a test module): a second process that holds a run-directory lock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLD = (
    "import sys, time\n"
    "from dynabit.train.lock import run_dir_lock\n"
    "with run_dir_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


@contextmanager
def lock_held_elsewhere(
    path: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Another process (with environment ``env``, default this one's) holds the lock of
    ``path`` for the ``with`` block (then is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
