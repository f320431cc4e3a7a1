"""Reading a values file into a StackConfig, with errors that name the field.

A values file overrides only what it names; everything else keeps the model's
default. Every problem is reported as `<file>: <dotted.field>: <what is wrong>
(<what is allowed>)`, the way a user would fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from constructs.config import StackConfig


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that the (parent) location `loc` refers to, if any."""
    model: type[BaseModel] = StackConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        candidates = [field.annotation, *get_args(field.annotation)]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(sorted(parent.model_fields)) if parent else "see the README"
        return f"{where}: unknown key (allowed keys here: {allowed})"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "is required"
    return f"{where}: {message}"


def parse_config(data: object, source: str = "configuration") -> StackConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, not {type(data).__name__}")
    try:
        return StackConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems)) from None


def load_config(path: Path) -> StackConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_config(data, str(path))
