"""Shared test helper (not a test module): ``dynabit`` as a real process, and its one error line."""

from __future__ import annotations

import subprocess
import sys


def dynabit_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dynabit ARGS`` with no standard input, as CI does."""
    return subprocess.run(
        [sys.executable, "-m", "dynabit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert exit status 2 and a single ``error:`` line on stderr (progress bars aside) that
    contains every needle; return the line."""
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "%|" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]
