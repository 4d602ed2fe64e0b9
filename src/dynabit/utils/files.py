"""Atomic file writes (a reader never sees a half-written file) and checked JSON reads."""

from __future__ import annotations

import errno
import json
import os
import re
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


def as_os_error(e: Exception, path: str | Path) -> OSError:
    """An I/O failure reported as text (safetensors' ``SafetensorError``: "... (os error 28)")
    as an ``OSError`` naming ``path`` and the cause, as the command line reports it."""
    m = re.search(r"os error (\d+)", str(e))
    code = int(m.group(1)) if m else errno.EIO
    return OSError(code, os.strerror(code), str(path))


def check_writable_file(path: str | Path) -> None:
    """Refuse an output path that is an existing directory, or whose existing folder cannot be
    written (read-only file system, no permission), before anything is written."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, "is a directory; give the name of a file to write", str(path)
        )
    folder = p.parent
    if folder.is_dir() and not os.access(folder, os.W_OK):
        code = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
        raise OSError(code, os.strerror(code), str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    p = Path(path)
    check_writable_file(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:  # read-only folder, disk full: name the file asked for
        raise OSError(e.errno, e.strerror, str(p)) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(p)) from None
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
