"""Progress bars that suit where the output goes.

On a terminal :func:`progress_bar` is an ordinary ``tqdm`` bar (with a total and an estimate of
the time left). When stderr is not a terminal (a log file, CI, a pipe) it prints plain lines —
the same bar text, one line at most every ``LOG_INTERVAL_S`` seconds, without the carriage
returns and cursor codes that would fill a log with thousands of redraws. :func:`busy` does the
same for a step that cannot count its own progress (an external synthesis run).
"""

from __future__ import annotations

import io
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 15.0
_CURSOR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class PlainLines(io.TextIOBase):
    """A file for tqdm that turns each redraw into one line on stderr (repeats dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self._last = ""

    def write(self, s: str) -> int:  # noqa: D102
        for part in _CURSOR.sub("", s).replace("\r", "\n").split("\n"):
            part = part.strip()
            if part and part != self._last:
                sys.stderr.write(part + "\n")
                self._last = part
        return len(s)

    def flush(self) -> None:  # noqa: D102
        sys.stderr.flush()


def on_terminal() -> bool:
    """Whether stderr is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal; plain, throttled lines elsewhere.

    Pass ``disable=True`` to show nothing.
    """
    if not on_terminal() and not kwargs.get("disable"):
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.update(file=PlainLines(), ascii=True, dynamic_ncols=False, ncols=100)
    return tqdm(iterable, **kwargs)


@contextmanager
def busy(desc: str, *, disable: bool = False, tick_s: float = 1.0) -> Iterator[None]:
    """Show that a step without its own progress (an external tool, one long call) is still
    running: a bar of the elapsed seconds, updated from a background thread.

    On a terminal it redraws every ``tick_s``; in a log it prints a plain line at most every
    ``LOG_INTERVAL_S`` seconds, and one when the step ends.
    """
    if disable:
        yield
        return
    bar = progress_bar(desc=desc, bar_format="{desc}: {elapsed} elapsed", leave=True)
    done = threading.Event()
    every = tick_s if on_terminal() else LOG_INTERVAL_S  # refresh() ignores mininterval

    def tick() -> None:
        while not done.wait(every):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()
