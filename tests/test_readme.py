"""The README's Python example runs as written and prints what the README shows under it."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _shown(text: str) -> dict[str, float]:
    fp32 = re.search(r"FP32 +top-1 (\d+\.\d) %", text)
    dyn = re.search(r"dynamic +top-1 (\d+\.\d) %, B_avg (\d\.\d\d) bits", text)
    speed = re.search(r"array: (\d+\.\d\d)x faster", text)
    assert fp32 and dyn and speed, text
    return {
        "fp32": float(fp32[1]),
        "top1": float(dyn[1]),
        "b_avg": float(dyn[2]),
        "speedup": float(speed[1]),
    }


def test_readme_python_example_runs_and_prints_its_figures(capsys) -> None:
    torch.manual_seed(0)
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    printed = re.search(r"```python\n.*?```.*?```text\n(.*?)```", text, flags=re.S)
    assert printed, "README shows no output under its python example"
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    got, want = _shown(capsys.readouterr().out), _shown(printed[1])
    # The method works: QAT keeps the FP32 accuracy and meets the 5-bit budget.
    assert got["top1"] >= got["fp32"] - 2.0 and got["top1"] > 90.0, got
    assert abs(got["b_avg"] - 5.0) <= 0.15 and got["speedup"] > 1.3, got
    # ... and prints what the README says (seeded; thread counts may move a digit).
    assert abs(got["top1"] - want["top1"]) <= 1.5, (got, want)
    assert abs(got["b_avg"] - want["b_avg"]) <= 0.1, (got, want)
