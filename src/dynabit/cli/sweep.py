"""``dynabit sweep``: train a grid of configs in parallel processes and collect one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dynabit.cli.errors import stopped_cleanly, user_errors


def sweep_command(
    config: Annotated[Path, typer.Argument(help="Sweep file: base config and grid.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep directory.")] = Path("runs/sweep"),
    workers: Annotated[int, typer.Option(min=1, help="Points trained at once.")] = 2,
) -> None:
    """Train every grid point (resuming finished ones) and print the table."""
    from dynabit.sweep import SweepPointError, load_sweep, run_sweep, to_markdown

    hint = f"continue with: dynabit sweep {config} --out {out} (finished points are kept)"
    with user_errors(SweepPointError), stopped_cleanly(hint):
        spec = load_sweep(config)

        def done(name: str, row: dict) -> None:
            typer.echo(f"done {name}: top-1 {row['top1']:.2f} %")

        rows = run_sweep(spec, out, workers, on_point=done)
    typer.echo("\n" + to_markdown(rows, list(spec.grid)))
    typer.echo(f"table: {out / 'sweep.json'}, {out / 'sweep.md'}")


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to ``app``."""
    app.command("sweep")(sweep_command)
