"""What a run or a program reads back is tied to what wrote it: editing one digit of a
checkpoint's config or state, of the run directory's config before ``--resume``, or of an
integer program's operation description is refused with an error naming the file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_cfg

from dynabit.engine import ProgramFormatError, load_program, lower_checkpoint
from dynabit.train import RunDir, RunDirError, evaluate_checkpoint, train
from dynabit.train.checkpoint import CheckpointError, load_checkpoint

torch.set_num_threads(1)


def _dynabit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynabit", *args], capture_output=True, text=True, timeout=300
    )


def _one_error_line(res: subprocess.CompletedProcess[str], *names: Path) -> str:
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("integrity") / "run"
    train(tiny_cfg(quantize=True, epochs=1, max_steps_per_epoch=3), run)
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _edit(path: Path, pattern: str, repl: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    assert n == 1, f"{pattern!r} not in {path}"
    path.write_text(new)


def test_edited_checkpoint_config_is_refused_by_eval_and_resume(run: Path) -> None:
    ck = RunDir(run).latest()
    cfg = ck / "config.yaml"
    _edit(cfg, r"^  bits: 8$", "  bits: 6")  # 8/4 -> 6/3: still a valid config
    _edit(cfg, r"^  hi_bits: 4$", "  hi_bits: 3")
    for call in (lambda: evaluate_checkpoint(run), lambda: load_checkpoint(run)):
        with pytest.raises(CheckpointError, match="no longer matches") as e:
            call()
        assert str(cfg) in str(e.value)
    _one_error_line(_dynabit("eval", str(run)), cfg)
    _one_error_line(_dynabit("train", "--run-dir", str(run), "--resume"), cfg)


def test_edited_state_json_is_refused(run: Path) -> None:
    state = RunDir(run).latest() / "state.json"
    meta = json.loads(state.read_text())
    meta["state"]["global_step"] += 1  # still the right layout
    state.write_text(json.dumps(meta, indent=1, sort_keys=True))
    with pytest.raises(CheckpointError, match="no longer matches") as e:
        load_checkpoint(run)
    assert str(state) in str(e.value)


def test_missing_checkpoint_config_is_refused(run: Path) -> None:
    cfg = RunDir(run).latest() / "config.yaml"
    cfg.unlink()
    with pytest.raises(CheckpointError, match="is missing") as e:
        load_checkpoint(run)
    assert str(cfg) in str(e.value)


def test_resume_after_editing_the_run_dir_config_is_refused(run: Path) -> None:
    _edit(run / "config.yaml", r"^  budget: 5\.0$", "  budget: 6.0")
    ck = RunDir(run).latest()
    before = RunDir(run).metrics_path.read_bytes()
    with pytest.raises(RunDirError, match="no longer matches") as e:
        train(None, run, resume=True)
    assert str(ck / "config.yaml") in str(e.value) and "quant.budget: 5.0 -> 6.0" in str(e.value)
    line = _one_error_line(_dynabit("train", "--run-dir", str(run), "--resume"), ck)
    assert "quant.budget" in line
    assert RunDir(run).metrics_path.read_bytes() == before  # nothing rewritten


def _program(run: Path, tmp_path: Path) -> Path:
    path = tmp_path / "program.safetensors"
    lower_checkpoint(run).save(path)
    assert load_program(path).ops
    return path


def _edit_header(path: Path, pattern: bytes, change) -> None:
    """Change the program description inside the file's header, keeping its length."""
    raw = path.read_bytes()
    m = re.search(pattern, raw)
    assert m is not None, pattern
    new = change(m.group(0))
    assert len(new) == len(m.group(0))
    path.write_bytes(raw[: m.start()] + new + raw[m.end() :])


def _bump_last_digit(b: bytes) -> bytes:
    i = max(i for i, c in enumerate(b) if chr(c).isdigit())
    return b[:i] + str((int(chr(b[i])) + 1) % 10).encode() + b[i + 1 :]


@pytest.mark.parametrize(
    "what,pattern",
    [
        ("input scale", rb'\\"scale\\": [0-9.e-]+'),
        ("stride", rb'\\"stride\\": \[1, 1\]'),
    ],
)
def test_edited_program_description_is_refused(run: Path, tmp_path: Path, what, pattern) -> None:
    path = _program(run, tmp_path)
    _edit_header(path, pattern, _bump_last_digit)
    with pytest.raises(ProgramFormatError, match="operation description no longer matches"):
        load_program(path)
    _one_error_line(_dynabit("run-int", str(path), "--no-trace"), path)


def test_edited_engine_trace_is_refused(run: Path, tmp_path: Path) -> None:
    from dynabit.engine import Executor, TraceFormatError, load_trace

    path = tmp_path / "trace.safetensors"
    Executor(load_program(_program(run, tmp_path)))(torch.rand(3, 1, 8, 8)).trace.save(path)
    assert load_trace(path).samples == 3
    _edit_header(path, rb'\\"macs_dense\\": [0-9]+', _bump_last_digit)
    with pytest.raises(TraceFormatError, match="no longer match its checksum") as e:
        load_trace(path)
    assert str(path) in str(e.value)
