"""A tiny demo run shared by the report tests (digits, one epoch each, four steps)."""

from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_demo_options

from dynabit.demo import run_demo
from dynabit.reports import write_report


@pytest.fixture(scope="session")
def report_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(run_dir, report.html)`` of a tiny demo run."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("report") / "demo"
    run_demo(tiny_demo_options(run, sim_samples=16))
    return run, write_report(run, samples=4, eval_subset=128)
