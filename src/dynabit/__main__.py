"""``python -m dynabit``: the command line."""

from dynabit.cli.main import app

app()
