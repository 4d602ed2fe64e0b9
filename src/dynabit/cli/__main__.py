"""``python -m dynabit.cli ...`` (also works under ``torchrun -m dynabit.cli``)."""

from dynabit.cli.main import app

app()
