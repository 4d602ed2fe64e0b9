"""Shared test helper (not a test module): a real full or read-only file system.

As root (CI containers) a small ``tmpfs`` is mounted, then grown or remounted read-only; other
users get ``None`` and the tests fall back to ``/dev/full`` (every write fails with ENOSPC) and
``chmod`` (which root would bypass).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def small_tmpfs(path: Path, size_kib: int) -> Iterator[Path | None]:
    """A ``size_kib`` KiB tmpfs mounted at ``path`` (created), or ``None`` if none can be."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount(
        "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)
    ):
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow(path: Path, size_kib: int) -> None:
    """Give the tmpfs at ``path`` room again (what a user does after a disk-full error)."""
    assert _mount("-o", f"remount,size={size_kib}k", str(path))


def read_only(path: Path) -> None:
    """Remount the tmpfs at ``path`` read-only."""
    assert _mount("-o", "remount,ro", str(path))
