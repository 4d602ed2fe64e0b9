"""The reliability benchmark: its plan covers every class with at least 150 cases, and the
first case of every group gives the documented outcome (the full run: benchmarks/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bench_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
CLASSES = (
    "run-directory lock (class 1)",
    "integrity (class 2)",
    "I/O errors (class 3)",
    "ranges (class 4)",
    "contradictions (class 5)",
    "non-finite inputs (class 6)",
)


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("reliability")


def test_plan_has_every_class_and_enough_cases(bench) -> None:
    cases = bench.all_cases()
    groups = {c.group for c in cases}
    assert len(cases) >= 150 and set(CLASSES) <= groups
    assert len({c.name for c in cases}) == len(cases)  # each case counted once


def test_representative_cases_are_good(bench, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    first: dict[str, object] = {}
    for c in bench.all_cases():
        first.setdefault(c.group, c)
    env = bench.Env(tmp_path)
    results = bench.run_cases(list(first.values()), env, workers=2)
    bad = [(c.name, o.verdict, o.detail) for c, o in results if o.verdict != "good"]
    assert not bad, bad
    assert len(results) == len(first)
