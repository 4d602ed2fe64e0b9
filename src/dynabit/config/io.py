"""Reading and writing configs as YAML or JSON, with errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says where and what is allowed."""


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per problem: ``where: field.path: message (got value)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "value_error" else f" (got {got!r})"
        lines.append(f"{where}: {loc + ': ' if loc else ''}{msg}{shown}")
    return "\n".join(lines)


def validate(cls: type[T], data: Any, where: str = "config") -> T:
    """Build ``cls`` from ``data``, turning pydantic errors into a readable ``ConfigError``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where)) from None


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Parse a ``.yaml``/``.yml``/``.json`` file into a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(p)!r}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (binary or corrupt at byte {e.start}); "
            "expected YAML or JSON"
        ) from None
    if not text.strip():
        raise ConfigError(
            f"config file {str(p)!r} is empty; expected a mapping of sections or fields "
            "(write {} for all defaults)"
        )
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(
                f"config file {str(p)!r}: unknown extension; use .yaml, .yml or .json"
            )
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(
            f"config file {str(p)!r} is not valid {p.suffix[1:].upper()}: {e}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r}: top level must be a mapping")
    return data


def load(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Load ``cls`` from a file; ``section`` picks one top-level key (e.g. ``quant``)."""
    data = read_mapping(path)
    if section is not None:
        data = data.get(section, {})
    where = f"{path}" + (f" [{section}]" if section else "")
    return validate(cls, data, where)


def save(obj: BaseModel, path: str | Path) -> None:
    """Write a config as YAML or JSON (by extension), atomically."""
    from dynabit.utils.files import atomic_write_text

    p = Path(path)
    data = obj.model_dump(mode="json")
    text = (
        json.dumps(data, indent=2) if p.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    )
    atomic_write_text(p, text)
