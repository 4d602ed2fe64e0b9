"""The main job end to end on digits with a tiny budget of steps."""

import json

from tiny_runs import tiny_demo_options
from typer.testing import CliRunner

from dynabit.cli.main import app
from dynabit.demo import pick_dataset, run_demo, summary_table

ARTEFACTS = (
    "summary.json",
    "parity.json",
    "baseline-w8a8.json",
    "simulation.json",
    "simulation.csv",
    "simulation.md",
)


def test_demo_produces_every_artefact_and_passes_parity(tmp_path) -> None:
    run = tmp_path / "demo"
    opts = tiny_demo_options(run, sim_samples=32)
    summary = run_demo(opts)
    for name in ARTEFACTS:
        assert (run / name).is_file(), name
    assert (run / "train" / "fp32").is_dir() and (run / "train" / "qat").is_dir()
    assert summary["parity"] is True and summary["parity_samples"] == 360
    parity = json.loads((run / "parity.json").read_text())
    assert parity["mismatches"] == 0 and parity["engine_top1"] == parity["model_top1"]
    assert 4.0 <= summary["b_avg"] <= 8.0
    assert summary["speedup_vs_uniform8"] > 1.0
    assert summary["speedup_per_element_gating"] < summary["speedup_vs_uniform8"]
    assert json.loads((run / "summary.json").read_text()) == summary
    assert "integer engine parity" in summary_table(summary)
    # A second run resumes: the trained stages are reused, not redone.
    again = run_demo(opts)
    assert again["top1_dynamic"] == summary["top1_dynamic"]


def test_missing_dataset_falls_back_to_digits(tmp_path, caplog) -> None:
    assert pick_dataset("idx", str(tmp_path / "nowhere")) == "digits"
    assert "digits" in caplog.text


def test_cli_demo_bad_hardware_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "hw.yaml"
    bad.write_text("rows: 0\n")
    res = CliRunner().invoke(app, ["demo", "--hardware", str(bad), "-o", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "rows" in res.output and "greater than or equal to 1" in res.output
