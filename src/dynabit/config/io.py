"""Reading and writing configs as YAML or JSON, with errors that name the file and the field."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says where and what is allowed."""


def _takes_bool(annotation: Any) -> bool:
    """Whether a field of this type may hold ``True``/``False`` (``Any`` may)."""
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_takes_bool(a) for a in get_args(annotation))
    return False


def _element_type(annotation: Any) -> Any:
    """The element type of a ``tuple[X, X]`` field (``None`` for anything else)."""
    for a in get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ():
        if get_origin(a) is tuple:
            return get_args(a)[0]
    return get_args(annotation)[0] if get_origin(annotation) is tuple else None


class StrictConfig(BaseModel):
    """Base of the config models: no unknown fields, no NaN or Inf in a number, and no
    ``true``/``false`` where a number is expected (pydantic would read ``epochs: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, info in cls.model_fields.items():
            v = data.get(name)
            if isinstance(v, bool) and not _takes_bool(info.annotation):
                raise ValueError(f"{name}: expected a number, got the boolean {v!r}")
            elem = _element_type(info.annotation)
            listed = isinstance(v, list | tuple) and elem is not None and not _takes_bool(elem)
            if listed and any(isinstance(x, bool) for x in v):
                raise ValueError(f"{name}: expected numbers, got {list(v)!r}")
        return data


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
