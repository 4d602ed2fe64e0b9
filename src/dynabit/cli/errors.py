"""The command line's one place for exit statuses and error messages.

Errors a user can fix (bad config, missing dataset or checkpoint, a path that cannot be read or
written, a bad option) print one ``error: ...`` line on stderr and exit with status 2, without a
traceback; usage errors of the option parser take the same form (:class:`OneLineErrors`). A run
stopped by SIGINT/SIGTERM exits with ``128 + signal`` after saying how to continue.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x parses with its own copy of click; older releases with click itself
    from typer._click import exceptions as click_errors
    from typer.exceptions import Abort
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors
    from click.exceptions import Abort

EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and failed (parity, ONNX agreement)
EXIT_USAGE = 2  # bad input: one ``error:`` line


def is_main() -> bool:
    """Rank 0 under torchrun (or a plain process)."""
    return int(os.environ.get("RANK", "0")) == 0


def _user_error_types() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    from dynabit.config.io import ConfigError
    from dynabit.data import DatasetError
    from dynabit.engine import EngineError, ProgramFormatError, UnsupportedLayerError
    from dynabit.engine.trace import TraceFormatError
    from dynabit.export import OnnxExportError
    from dynabit.train import CheckpointError, RunDirError, TrainingDivergedError

    return (
        ConfigError,
        DatasetError,
        CheckpointError,
        RunDirError,
        TrainingDivergedError,
        EngineError,
        ProgramFormatError,
        TraceFormatError,
        UnsupportedLayerError,
        OnnxExportError,
        SafetensorError,
    )


def describe_os_error(e: OSError) -> str:
    """``OSError`` as one line naming the path and the cause (disk full, read-only, ...)."""
    cause = e.strerror or type(e).__name__
    paths = [p for p in (e.filename, e.filename2) if p is not None]
    if paths:
        return f"{' -> '.join(repr(os.fspath(p)) for p in paths)}: {cause}"
    return str(e) or cause


def fail(msg: str) -> NoReturn:
    """Print ``error: msg`` on stderr and exit with the usage status."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(EXIT_USAGE)


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn the errors a user can fix (and ``extra``) into ``error: ...`` and exit status 2."""
    try:
        yield
    except OSError as e:
        fail(describe_os_error(e))
    except (*_user_error_types(), *extra) as e:
        fail(str(e).strip() or type(e).__name__)


@contextmanager
def stopped_cleanly(resume_hint: str) -> Iterator[None]:
    """A run stopped by SIGINT/SIGTERM (checkpointed) says how to resume and exits 128 + signal."""
    from dynabit.train import TrainingInterrupted

    try:
        yield
    except TrainingInterrupted as e:
        if is_main():
            typer.echo(f"{e}\n{resume_hint}", err=True)
        raise typer.Exit(e.exit_code) from None


class OneLineErrors(TyperGroup):
    """The app's command group: the parser's usage errors as one ``error:`` line, status 2.

    (typer would draw them in a box.) ``--help`` and a bare ``dynabit`` still print the help.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except click_errors.NoArgsIsHelpError as e:
            typer.echo(e.format_message())
            code = EXIT_OK
        except click_errors.ClickException as e:
            hint = ""
            if isinstance(e, click_errors.UsageError) and e.ctx is not None:
                hint = f" (see: {e.ctx.command_path} --help)"
            typer.echo(f"error: {_one_line(e.format_message())}{hint}", err=True)
            code = e.exit_code
        except Abort:
            typer.echo("aborted", err=True)
            code = EXIT_FAILED
        code = code if isinstance(code, int) else EXIT_OK
        if standalone_mode:
            sys.exit(code)
        return code


def _one_line(msg: str) -> str:
    return " ".join(part.strip() for part in msg.strip().splitlines() if part.strip())
