"""Graceful stops: SIGINT or SIGTERM end a run at the next step boundary, checkpointed.

The signal handler only records the request; the training loop checks it after each optimizer
step, writes a checkpoint at that exact position and raises :class:`TrainingInterrupted`. So a
stopped run loses nothing and ``--resume`` continues it to the same parameters as an
uninterrupted run. Further signals while it stops are ignored (a parent process may forward
the one the terminal already sent); SIGKILL still stops at once, and checkpoints are atomic,
so even that leaves no half-written file.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(BaseException):
    """A run (or a sweep) stopped on a signal after checkpointing.

    A ``BaseException``, like ``KeyboardInterrupt``, so ``except Exception`` blocks that carry
    on after a failed item (benchmarks, sweeps) do not swallow a stop. ``exit_code`` is the
    shell's 128 + signal number.
    """

    def __init__(self, signum: int, detail: str, checkpoint: Path | None = None) -> None:
        self.signum = signum
        self.detail = detail
        self.checkpoint = checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (sweep workers)
        return (type(self), (self.signum, self.detail, self.checkpoint))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The signal received so far (``None`` while none has arrived)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextmanager
def stop_on_signals(
    message: str = "stopping at the next step, with a checkpoint",
) -> Iterator[StopRequest]:
    """Within the block, SIGINT/SIGTERM set the yielded request (and print ``message`` once)
    instead of killing the process.

    Off the main thread Python cannot install handlers: the request then never fires and the
    signals keep their usual effect.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handler(signum: int, _frame: FrameType | None) -> None:
        if request.signum is None:
            request.signum = signum
            name = signal.Signals(signum).name
            os.write(2, f"\n{name}: {message}\n".encode())

    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)  # None: set outside Python
