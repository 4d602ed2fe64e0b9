"""The ``dynabit`` command line: a thin layer over the Python API.

Each command parses options, calls one public function and prints its result; the commands of
each stage live in their own module (``cli/train.py``, ``cli/engine.py``, ...) and are added
here with their ``register(app)``. Errors a user can fix print one ``error: ...`` line and exit
with status 2, without a traceback (``cli/errors.py``, the one place for exit statuses). Under
``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from dynabit.cli import demo, engine, report, rtl, simulate, sweep
from dynabit.cli import train as train_cli
from dynabit.cli.errors import OneLineErrors, is_main

app = typer.Typer(
    name="dynabit",
    help="Dynamic bit-width neural networks: train, evaluate and cost dual-precision models.",
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=(
                "Torch CPU threads per process (default: OMP_NUM_THREADS if set, else the "
                "cores other processes leave free, decided again at each stage)."
            ),
        ),
    ] = None,
) -> None:
    from dynabit.utils.threads import set_threads

    set_threads(threads)
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level if is_main() else logging.WARNING, format="%(message)s")


for _module in (train_cli, simulate, demo, report, sweep, rtl, engine):
    _module.register(app)


if __name__ == "__main__":  # `torchrun ... -m dynabit.cli.main train ...`
    app()
