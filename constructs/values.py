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


def _bounds(loc: tuple[int | str, ...]) -> str | None:
    """'from A to B' for a numeric field with both bounds, so a range error names both."""
    parent = _model_at(loc[:-1])
    field = parent.model_fields.get(str(loc[-1])) if parent and loc else None
    if field is None:
        return None
    low = next((m.ge for m in field.metadata if hasattr(m, "ge") and m.ge is not None), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le") and m.le is not None), None)
    if low is not None and high is not None:
        return f"from {low} to {high}"
    if low is not None:
        return f"{low} or more"
    return None


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(sorted(parent.model_fields)) if parent else "see the README"
        return f"{where}: unknown key (allowed keys here: {allowed})"
    if kind == "missing":
        return f"{where}: is required"
    if kind in {"greater_than_equal", "less_than_equal"} and (allowed := _bounds(loc)):
        return f"{where}: {error['input']!r} is out of range (allowed: {allowed})"
    if kind == "string_pattern_mismatch":
        return f"{where}: {error['input']!r} does not match the required form {error['ctx']['pattern']}"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


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


class _StrictLoader(yaml.SafeLoader):
    """YAML that rejects a key given twice (plain YAML silently keeps the last one)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}: give each key once", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_config(path: Path) -> StackConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_config(data, str(path))
