"""The frontier's ``mixed`` method: planned at the dynamic budgets, its config from mixed.json."""

import json
from pathlib import Path

import pytest
from bench_scripts import load_benchmark


@pytest.fixture(scope="module")
def frontier():
    return load_benchmark("frontier")


def test_mixed_points_use_the_kept_assignment(frontier, tmp_path: Path) -> None:
    argv = ["--methods", "mixed", "--variants", "--run-root", str(tmp_path)]
    args = frontier.resolve(frontier.build_parser().parse_args(argv))
    points = [p for p in frontier.plan(args) if p.method == "mixed"]
    assert {p.budget for p in points} == {4.5, 5.0, 6.0}
    assert {p.key.split("/")[1] for p in points} == {"mixed-b4.5", "mixed-b5", "mixed-b6"}
    p = next(p for p in points if p.budget == 5.0)
    kept = {
        "bits": {"features.block2.conv": 8, "features.block3.conv": 4},
        "macs": {"features.block2.conv": 1.0, "features.block3.conv": 3.0},
        "sensitivity": {"features.block2.conv": 0.2, "features.block3.conv": 0.1},
        "budget": 5.0,
        "low_bits": 4,
        "high_bits": 8,
    }
    path = frontier.run_dir(args, p) / "mixed.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(kept))
    cfg = frontier.run_config(args, p)  # no FP32 parent needed: the kept assignment is used
    q = cfg.quant
    assert q.method == "uniform" and q.uniform_bits == 4 and cfg.train.init_from.endswith("fp32")
    assert q.for_layer("features.block2.conv").uniform_bits == 8
    assert q.for_layer("features.block3.conv").uniform_bits == 4
    what = frontier.describe_mixed(frontier.mixed_assignment(args, p))
    assert "1 of 2" in what and "5.000" in what


def test_mixed_budget_outside_the_widths_is_refused(frontier) -> None:
    with pytest.raises(SystemExit, match="budget 9"):
        frontier.resolve(
            frontier.build_parser().parse_args(["--methods", "mixed", "--budgets", "9"])
        )
