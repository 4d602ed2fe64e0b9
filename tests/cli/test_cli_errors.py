"""The CLI's error boundary: one ``error:`` line and status 2 for usage errors and I/O errors,
and the demo's run directory accepted where a run is expected."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from dynabit.cli.errors import describe_os_error
from dynabit.train.rundir import resolve_run


def _dynabit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynabit", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--threads", "0", "eval", "runs/none"),  # below the option's range
        ("export",),  # missing argument
        ("simulate", "--no-such-option"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(args: tuple[str, ...]) -> None:
    res = _dynabit(*args)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert not any(ch in res.stderr for ch in "╭╰│"), "typer's box leaked through"


def test_os_errors_name_the_path_and_the_cause(tmp_path: Path) -> None:
    target = tmp_path / "out.safetensors"
    msg = describe_os_error(OSError(errno.ENOSPC, "No space left on device", str(target)))
    assert str(target) in msg and "No space left on device" in msg
    with pytest.raises(IsADirectoryError) as e:
        open(tmp_path, "w")  # noqa: SIM115 - a directory where a file is expected
    assert str(tmp_path) in describe_os_error(e.value)


def test_simulate_output_on_a_file_is_one_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    res = _dynabit("simulate", "--network", "resnet20", "--out", str(blocker / "sub"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().startswith("error: ") and str(blocker) in res.stderr
    assert blocker.read_text() == "keep me"


def test_the_demo_directory_resolves_to_its_qat_run(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    (demo / "train" / "fp32" / "checkpoints").mkdir(parents=True)
    run, note = resolve_run(demo)
    assert run == demo / "train" / "fp32" and note and "FP32" in note
    (demo / "train" / "qat" / "checkpoints").mkdir(parents=True)
    run, note = resolve_run(demo)
    assert run == demo / "train" / "qat" and note and "QAT" in note
    assert resolve_run(demo / "train" / "qat") == (demo / "train" / "qat", None)
    other = tmp_path / "elsewhere"
    assert resolve_run(other) == (other, None)
