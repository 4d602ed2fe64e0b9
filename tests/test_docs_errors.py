"""docs/errors.md: every test the bad-input matrix links to exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_linked_test_exists() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    links = 0
    for line in text.splitlines():
        current = None
        for ref in re.findall(r"`((?:tests/[\w/]+\.py)?(?:::\w+)?)`", line):
            path, _, name = ref.partition("::")
            current = ROOT / path if path else current
            assert current is not None, f"{ref!r} has no file before it: {line}"
            assert current.is_file(), ref
            if name:
                assert re.search(rf"^def {name}\b", current.read_text(), re.M), ref
                links += 1
    assert links >= 40
