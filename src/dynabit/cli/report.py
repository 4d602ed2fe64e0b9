"""``dynabit report RUN_DIR``: a self-contained HTML (plus Markdown) report of a demo run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dynabit.cli.errors import fail, user_errors


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `dynabit demo`.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default RUN_DIR/report).")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Images in the decision maps.")] = 6,
    eval_subset: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Re-evaluate the refine ratios on the first N test images (default: the "
            "demo's own evaluation on all of them).",
        ),
    ] = None,
) -> None:
    """Write report.html (figures embedded), report.md and its PNGs."""
    from dynabit.reports import write_report

    if not (run_dir / "train" / "qat").is_dir():
        fail(f"{str(run_dir)!r} is not a `dynabit demo` run directory (no train/qat inside)")
    with user_errors():
        path = write_report(run_dir, out, samples=samples, eval_subset=eval_subset)
    typer.echo(f"report: {path}  (and {path.with_suffix('.md').name} beside it)")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report_command)
