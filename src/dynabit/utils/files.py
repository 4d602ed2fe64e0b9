"""Atomic file writes (a reader never sees a half-written file) and checked JSON reads."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def read_json(path: str | Path, error: type[Exception], what: str, fix: str = "") -> Any:
    """Parse the JSON file ``path``; a missing, unreadable or damaged one raises ``error``
    naming ``what`` and the file (``fix`` appended: what the user can do about it)."""
    where = f"{what} {str(path)!r}"
    tail = f"; {fix}" if fix else ""
    try:
        return json.loads(Path(path).read_bytes().decode())
    except FileNotFoundError:
        raise error(f"{where} is missing{tail}") from None
    except OSError as e:
        raise error(f"cannot read {where}: {e}{tail}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{where} is not valid JSON (truncated or corrupt: {e}){tail}") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))
