"""Reading a values file into a StackConfig, with errors that name the field.

A values file overrides only what it names, down to single leaves: it is merged
onto the model's defaults mapping by mapping, and the merged result is validated
as a whole, so cross-field rules (limits >= requests, ...) see the final values.
Every problem is reported as `<file>: <dotted.field>: <what is wrong> (<what is
allowed>)`, the way a user would fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from app.config import StackConfig
from app.ignored import findings


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


_TYPE_NAMES = {
    "int_type": "a valid integer (a whole number, not true/false or a decimal)",
    "string_type": "a valid string (quote it in YAML, e.g. '1.0' or 'yes')",
    "bool_type": "a valid boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of keys to values",
}


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind in _TYPE_NAMES:
        bounds = _bounds(loc) if kind == "int_type" else None
        allowed = f"; allowed: {bounds}" if bounds else ""
        return f"{where}: {error['input']!r} is not {_TYPE_NAMES[kind]}{allowed}"
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(sorted(parent.model_fields)) if parent else "see docs/configuration.md"
        return f"{where}: unknown key (allowed keys here: {allowed})"
    if kind == "missing":
        return f"{where}: is required"
    if kind in {"greater_than_equal", "less_than_equal"} and (allowed := _bounds(loc)):
        return f"{where}: {error['input']!r} is out of range (allowed: {allowed})"
    if kind == "string_pattern_mismatch":
        return f"{where}: {error['input']!r} does not match the required form {error['ctx']['pattern']}"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def merge_onto_defaults(model: type[BaseModel], defaults: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`data` laid over `defaults`: mappings of nested models merge key by key; every other
    value (scalars, lists, free-form mappings such as labels) replaces the default whole.
    Unknown keys are kept, so validation still names them."""
    merged = dict(defaults)
    for key, value in data.items():
        field = model.model_fields.get(str(key))
        nested = _nested_model(field.annotation) if field else None
        if nested is not None and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_onto_defaults(nested, merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Values:
    """A values file read: the configuration it makes, and the mapping it wrote (what the
    user set explicitly, which the merged configuration no longer tells)."""

    config: StackConfig
    given: Mapping[str, Any]
    source: str

    @property
    def warnings(self) -> list[str]:
        """Settings the stack ignores, and combinations that work only with help from outside it."""
        return [f"{self.source}: {f.render()}" for f in findings(self.given, self.config) if not f.refuse]


def parse_values(data: object, source: str = "configuration") -> Values:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, not {type(data).__name__}")
    merged = merge_onto_defaults(StackConfig, StackConfig().model_dump(), data)
    try:
        config = StackConfig.model_validate(merged)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems)) from None
    refused = [f for f in findings(data, config) if f.refuse]
    if refused:
        raise ConfigError("\n".join(f"{source}: {f.render()}" for f in refused))
    return Values(config, data, source)


def parse_config(data: object, source: str = "configuration") -> StackConfig:
    return parse_values(data, source).config


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


def read_values_text(path: Path) -> str:
    """The values file's text, or a ConfigError that says why it cannot be read."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a values file such as config/minikube.yaml")
    if not path.exists():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None


def load_config(path: Path) -> StackConfig:
    return load_values(path).config


def load_values(path: Path) -> Values:
    text = read_values_text(path)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_values(data, str(path))
