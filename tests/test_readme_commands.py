"""The README's command line: its command block runs as written on a tiny demo, in order, each
command on the demo's own directory; every option the README shows exists on its command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from dynabit.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"

# What the test adds to `dynabit demo` so that it takes seconds (the tiny demo of tests/demo).
TINY_DEMO = [
    "--dataset",
    "digits",
    "--fp32-epochs",
    "1",
    "--qat-epochs",
    "1",
    "--max-steps",
    "4",
    "--sim-samples",
    "32",
    "--no-progress",
]
# The key line each command prints (on its stdout or its stderr).
KEY_LINES = {
    "demo": r"\| integer engine parity +\| pass \(360 images\)[\s\S]*run directory: runs/demo",
    "eval": r"top-1 +(\d+\.\d\d) %\nloss[\s\S]*B_avg +\d\.\d{3} bits",
    "export": r"program +runs/demo/program\.safetensors\nonnx +runs/demo/model\.onnx[\s\S]*"
    r"check +OK: onnxruntime top-1 (\d+\.\d\d) % vs engine",
    "run-int": r"program +runs/demo/program\.safetensors[\s\S]*top-1 +(\d+\.\d\d) %",
    "simulate": r"masks: 64 test images of digits[\s\S]*speedup",
    "report": r"report: runs/demo/report/report\.html",
    "rtl": r"dynamic / uniform: cells \d\.\d\dx",
}


def readme_commands() -> list[list[str]]:
    """The commands of the README's command block, as argument lists without ``dynabit``."""
    text = README.read_text()
    section = text[text.index("## Command line") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, "README's command line section has no bash block"
    out = []
    for line in block[1].splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "dynabit", line
            out.append(words[1:])
    return out


def test_readme_command_block_runs_on_the_demo_directory(tmp_path, monkeypatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)  # `runs/demo` as written, under a fresh folder
    commands = readme_commands()
    assert [c[0] for c in commands] == list(KEY_LINES)  # a new command needs its key line here
    runner = CliRunner()
    top1: dict[str, float] = {}
    for args in commands:
        argv = args + TINY_DEMO if args[0] == "demo" else args
        res = runner.invoke(app, argv)
        shown = "dynabit " + " ".join(argv)
        assert res.exit_code == 0, f"{shown}\n{res.output}\n{res.exception!r}"
        m = re.search(KEY_LINES[args[0]], res.output)
        assert m, f"{shown} did not print its key line:\n{res.output}"
        if m.groups():
            top1[args[0]] = float(m[1])
    # One story: eval shows the demo's QAT model, run-int and export's check its integer model.
    import json

    summary = json.loads((tmp_path / "runs/demo/summary.json").read_text())
    assert top1["eval"] == pytest.approx(summary["top1_dynamic"], abs=0.005)
    assert top1["run-int"] == pytest.approx(summary["top1_integer"], abs=0.005)
    assert top1["export"] == top1["run-int"]
    assert (tmp_path / "runs/demo/report/report.md").is_file()
    assert sorted(p.suffix for p in (tmp_path / "runs/demo/rtl").iterdir()) == [".v", ".v"]


def _snippets() -> list[list[str]]:
    """Every ``dynabit ...`` command the README shows: in code spans and in its code blocks."""
    text = README.read_text()
    spans = re.findall(r"`((?:dynabit|-m dynabit\.cli) [^`]+)`", text)
    found = [shlex.split(s.replace("-m dynabit.cli", "dynabit"))[1:] for s in spans]
    return [w for w in found + readme_commands() if w and w[0] not in ("...",)]


def test_every_option_the_readme_shows_exists() -> None:
    root = typer.main.get_command(app)  # the group (typer's own click: no isinstance check)
    snippets = _snippets()
    assert len(snippets) >= 15
    group = {o: getattr(p, "is_flag", False) for p in root.params for o in p.opts}
    for words in snippets:
        while words and words[0].startswith("-"):  # options of `dynabit` itself come first
            assert words[0] in group, f"README shows `dynabit {' '.join(words)}`: no such option"
            words = words[1:] if group[words[0]] else words[2:]
        cmd = root.commands.get(words[0])
        assert cmd is not None, f"README shows `dynabit {' '.join(words)}`: no such command"
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for w in words[1:]:
            flag = w.strip("[]").split("=")[0]
            if flag.startswith("-"):
                assert flag in known, f"`dynabit {' '.join(words)}`: {words[0]} has no {flag}"
