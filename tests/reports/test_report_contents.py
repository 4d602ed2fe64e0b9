"""The report's sections, figures and files, without a browser."""

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dynabit.reports.report import threshold_history

SECTIONS = ("summary", "accuracy", "ratios", "decisions", "hardware", "per_area", "thresholds")
FIGURES = tuple(k for k in SECTIONS[1:] if k != "per_area")
PNG = b"\x89PNG\r\n\x1a\n"


def test_html_has_every_section_and_embedded_png(report_run) -> None:
    _, html_path = report_run
    text = html_path.read_text()
    assert "<title>dynabit report" in text
    for key in SECTIONS:
        assert f'<section id="{key}">' in text, key
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == len(FIGURES)
    assert all(base64.b64decode(d).startswith(PNG) for d in images)
    assert "http://" not in text and "https://" not in text  # self-contained


def test_markdown_links_pngs_written_beside_it(report_run) -> None:
    _, html_path = report_run
    out = html_path.parent
    md = (out / "report.md").read_text()
    for key in FIGURES:
        assert f"({key}.png)" in md, key
        assert (out / f"{key}.png").read_bytes().startswith(PNG)
    assert "## Refine ratios" in md and "## Threshold trajectories" in md


def test_thresholds_logged_from_calibration_through_qat(report_run, tmp_path) -> None:
    run, _ = report_run
    qat = run / "train" / "qat"
    steps, thr = threshold_history(qat)
    # One point after calibration and one per logged step (the tiny demo logs every step).
    assert steps == list(range(5)), steps
    assert all(len(v) == len(steps) and all(len(p) >= 1 for p in v) for v in thr.values())
    # The last logged point is what the final checkpoint holds.
    _, final = threshold_history(_without_metrics(qat, tmp_path))
    assert {n: v[-1] for n, v in thr.items()} == pytest.approx({n: v[-1] for n, v in final.items()})


def _without_metrics(stage: Path, tmp: Path) -> Path:
    """A copy of ``stage`` whose metrics log the thresholds of no step (an older run)."""
    copy = tmp / "stage"
    shutil.copytree(stage, copy)
    (copy / "metrics.jsonl").write_text("")
    return copy


def test_checkpoints_are_the_fallback_for_older_runs(report_run, tmp_path) -> None:
    run, _ = report_run
    steps, thr = threshold_history(_without_metrics(run / "train" / "qat", tmp_path))
    assert steps == [4] and thr


def test_report_reads_like_a_report(report_run) -> None:
    run, html_path = report_run
    text = html_path.read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert "drawn at" not in text and "parity details" not in text
    # FP32 at its real 32 bits, every accuracy on the demo's test images.
    assert "<td>32 (float)</td>" in text
    assert f"all {summary['parity_samples']} test images of scikit-learn digits" in text
    # The refine ratios were re-evaluated on a named subset, and say so.
    assert "the first 128 of the 360 test images" in text
    # Parity once, in words; the float-vs-integer difference explained.
    assert text.count("integer engine vs frozen integer model") == 1
    assert "rounded fixed-point requantisation" in text
    # The bit-parallel baseline in words, with the verdict its numbers give.
    sim = json.loads((run / "simulation.json").read_text())["runs"]
    faster = sim["bitparallel"]["summary"]["cycles"] < sim["dynamic"]["summary"]["cycles"]
    assert ("It is faster than the dynamic design here" in text) == faster
    assert "Per unit of PE area" in text
    # Throughput per area against INT8 and INT4 of the same organisation, the module's figures.
    per_area = json.loads((run / "simulation.json").read_text())["per_area"]
    assert f"{per_area['per_area_vs_int8']['dual']:.3f}x" in text
    assert f"{summary['throughput_per_area_vs_int8']:.3f}x" in text
    assert "Break-even refine ratio against INT8" in text


def test_cli_writes_report(report_run, tmp_path) -> None:
    import typer

    from dynabit.cli.report import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep typer in multi-command mode
    run, _ = report_run
    res = CliRunner().invoke(
        app, ["report", str(run), "-o", str(tmp_path), "--samples", "2", "--eval-subset", "32"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 2


def test_images_are_named_as_measured() -> None:
    from dynabit.reports.data import MeasuredImages

    full = MeasuredImages("fashion-mnist", 10000, subset=False)
    assert full.all() == "all 10000 test images of Fashion-MNIST"
    assert full.first(256) == "the first 256 of the 10000 test images of Fashion-MNIST"
    assert full.first(20000) == full.all()
    assert MeasuredImages("digits", 200, subset=True).all().startswith("the first 200 test")
    assert MeasuredImages("mnist", 0, subset=False).all() == "all test images of MNIST"
