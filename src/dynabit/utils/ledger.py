"""An append-only ledger of finished results: one JSON line per result, keyed by a name and a
digest of the inputs it was computed from, committed beside a benchmark's figures so that a
fresh checkout continues a long run instead of repeating it.

A line cut short by a stop is skipped on reading, and the next line written starts on its own
line; for a key and digest recorded twice, the last line wins.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Ledger:
    """Results by ``(key, inputs digest)``, read from ``path`` once and appended to as they
    finish (``path`` None: an in-memory ledger that writes nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        if path is None or not path.is_file():
            return
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                row = json.loads(line)
                self.rows[(row["key"], row["inputs"])] = row["result"]
            except (ValueError, KeyError, TypeError):
                if line.strip():
                    log.warning("%s:%d: not a ledger line, skipped", path, n)

    def get(self, key: str, digest: str) -> dict[str, Any] | None:
        """The result recorded for ``key`` on these inputs, or None."""
        return self.rows.get((key, digest))

    def put(
        self, key: str, digest: str, result: dict[str, Any], recipe: dict[str, Any] | None = None
    ) -> bool:
        """Append ``result`` unless the same key and digest are recorded; True if appended.
        ``recipe`` is kept on the line for a reader (the digest is what is matched)."""
        if (key, digest) in self.rows:
            return False
        self.rows[(key, digest)] = result
        if self.path is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row: dict[str, Any] = {"key": key, "inputs": digest, "result": result}
        if recipe is not None:
            row["recipe"] = recipe
        line = json.dumps(row, sort_keys=True)
        with self.path.open("ab") as f:
            if f.tell() > 0:  # a line cut short by a stop: the new line starts on its own
                with self.path.open("rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        line = "\n" + line
            f.write((line + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        return True
