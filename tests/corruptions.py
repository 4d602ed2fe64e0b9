"""Shared test helper (not a test module): the ways the reliability tests and benchmark corrupt
a file a run reads back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

GARBAGE = b"\xff\xfe\x00\x9c" * 16  # not UTF-8; as float32 these bytes are NaN


def half(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def empty(p: Path) -> None:
    p.write_bytes(b"")


def garbage(p: Path) -> None:
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + len(GARBAGE)] = GARBAGE
    p.write_bytes(bytes(data))


def half_lines(p: Path) -> None:
    """Cut at the line end nearest the middle: for YAML, often still valid YAML."""
    lines = p.read_text().splitlines(keepends=True)
    p.write_text("".join(lines[: len(lines) // 2]))


def garbage_head(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[: len(GARBAGE)] = GARBAGE
    p.write_bytes(bytes(data))


def other_format(p: Path) -> None:
    """Text of another format: INI for YAML/JSON files, YAML for binary ones."""
    binary = p.suffix in (".safetensors", ".dbp", ".gz", "") and p.name != "latest"
    p.write_text("train:\n  epochs: 2\n" if binary else "[train]\nepochs = 2\n")


def json_list(p: Path) -> None:
    p.write_text("[1, 2, 3]\n")


def yaml_wrong_type(p: Path) -> None:
    p.write_text("train:\n  epochs: two\nquant: {}\npretrain: null\n")


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "half": half,
    "empty": empty,
    "garbage": garbage,
    "other_format": other_format,
}


def missing(p: Path) -> None:
    p.unlink()
