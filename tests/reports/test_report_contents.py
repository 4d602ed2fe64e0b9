"""The report's sections, figures and files, without a browser."""

import base64
import re

from typer.testing import CliRunner

from dynabit.reports.report import threshold_history

SECTIONS = ("summary", "accuracy", "ratios", "decisions", "hardware", "thresholds")
FIGURES = SECTIONS[1:]
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


def test_thresholds_read_from_checkpoints(report_run) -> None:
    run, _ = report_run
    steps, thr = threshold_history(run / "train" / "qat")
    assert steps and thr
    assert all(len(v) == len(steps) and all(len(p) >= 1 for p in v) for v in thr.values())


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
