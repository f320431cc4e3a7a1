"""Pydantic types for the values model, made from the constructs' own types.

The value types the props share (Resources, Storage, PodSettings, ...) are frozen dataclasses
in constructs/props.py, and the checked strings (a memory quantity, a host name, ...) are
`Annotated` types with check markers in constructs/checks.py. The values model parses a
values file with pydantic, strictly, with errors that name the field. Rather than a second
copy of each type, this module makes the pydantic type from the constructs' one:

- `pydantic_type(annotation)`: the same annotation, with the markers (`Check`, `Range`,
  `Pattern`) turned into pydantic validators and constraints, and every props dataclass
  into the model below;
- `model_of(cls)`: a strict pydantic model with the dataclass's fields, defaults, examples
  (`field(metadata={"examples": ...})`) and descriptions (the fields' docstrings). A value
  validated by it becomes an instance of the dataclass itself, so the dataclass's own
  cross-field rules run too, and the values model holds the constructs' types.

So each field, default, description and check is written once: in constructs/.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, create_model

from constructs.checks import Check, Pattern, Range

STRICT = ConfigDict(frozen=True, extra="forbid", validate_default=True, strict=True)


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (and of the dataclasses it extends)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        (node,) = ast.parse(source).body
        assert isinstance(node, ast.ClassDef)
        body = node.body
        for item, following in zip(body, [*body[1:], None], strict=True):
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                is_doc = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                if is_doc and isinstance(following.value.value, str):
                    docs[item.target.id] = inspect.cleandoc(following.value.value)
    return docs


def description(doc: str) -> str:
    """A field's docstring as the values reference shows it: one line, without the
    "Default: ..." sentence (the reference has a column for the default)."""
    text = " ".join(doc.split())
    head, sep, _ = text.partition(" Default:")
    # A values file says null where Python says None.
    return re.sub(r"\bNone\b", "null", head if sep else text)


def _check_validator(marker: Check) -> AfterValidator:
    def run(value: Any) -> Any:
        marker.function(value)
        return value

    # The check's own name, so that tools reading the model (tests/variants.py) see which it is.
    run.__name__ = run.__qualname__ = getattr(marker.function, "__name__", "check")
    return AfterValidator(run)


def _markers(markers: tuple[object, ...]) -> list[object]:
    converted: list[object] = []
    for marker in markers:
        if isinstance(marker, Check):
            converted.append(_check_validator(marker))
        elif isinstance(marker, Range):
            converted.append(Field(ge=marker.low, le=marker.high))
        elif isinstance(marker, Pattern):
            converted.append(Field(pattern=f"^(?:{marker.regex})$"))
        else:
            converted.append(marker)
    return converted


def pydantic_type(annotation: Any) -> Any:
    """`annotation` with the constructs' markers and dataclasses made pydantic's."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        inner, *markers = args
        return Annotated[(pydantic_type(inner), *_markers(tuple(markers)))]  # type: ignore[return-value]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(pydantic_type(a) for a in args)]  # noqa: UP007
    if origin in (dict, collections.abc.Mapping):
        key, value = args or (Any, Any)
        return dict[pydantic_type(key), pydantic_type(value)]  # type: ignore[misc]
    if origin in (list, collections.abc.Sequence) or (origin is tuple and args and args[-1] is Ellipsis):
        return list[pydantic_type(args[0]) if args else Any]  # type: ignore[misc]
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return values_type(annotation)
    return annotation


def _as_mapping(cls: type) -> AfterValidator | BeforeValidator:
    """Let a default given as the dataclass (the props' own default) validate like a mapping."""

    def convert(value: Any) -> Any:
        if isinstance(value, cls):
            return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}  # type: ignore[arg-type]
        return value

    return BeforeValidator(convert)


def _to_dataclass(cls: type) -> AfterValidator:
    def convert(model: BaseModel) -> Any:
        values = {name: getattr(model, name) for name in type(model).model_fields}
        hints = typing.get_type_hints(cls, include_extras=True)
        for name, value in values.items():
            # YAML gives lists; a props field typed as a tuple keeps a tuple.
            if isinstance(value, list) and typing.get_origin(_bare(hints[name])) is tuple:
                values[name] = tuple(value)
        return cls(**values)

    return AfterValidator(convert)


def _bare(annotation: Any) -> Any:
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation


@functools.cache
def model_of(cls: type) -> type[BaseModel]:
    """The strict pydantic model of a props dataclass (see the module docstring)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = attribute_docs(cls)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        info: dict[str, Any] = {"description": description(docs.get(field.name, ""))}
        if "examples" in field.metadata:
            info["examples"] = field.metadata["examples"]
        if field.default is not dataclasses.MISSING:
            info["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            info["default_factory"] = field.default_factory
        fields[field.name] = (pydantic_type(hints[field.name]), Field(**info))
    doc = inspect.cleandoc(cls.__doc__ or "")
    return create_model(cls.__name__, __config__=STRICT, __doc__=doc, **fields)


@functools.cache
def values_type(cls: type) -> Any:
    """The type a values-model field uses for a props dataclass: parsed by `model_of(cls)`,
    held as `cls`."""
    return Annotated[model_of(cls), _as_mapping(cls), _to_dataclass(cls), PlainSerializer(_dump)]


def _dump(value: Any) -> Any:
    """A held dataclass as plain data (model_dump: the values model's defaults as a mapping)."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
