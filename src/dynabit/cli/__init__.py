"""The ``dynabit`` command line: ``dynabit.cli.main:app`` (run ``python -m dynabit.cli``)."""
