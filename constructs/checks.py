"""The checks every props class carries, whoever builds it: a values file or your own cdk8s app.

A props class is a frozen, keyword-only dataclass made with `@props`. On construction every
field is checked against its annotation (type, and the markers of `Annotated[...]`: `Check`,
`Range`, `Pattern`), then the class's own `__post_init__` checks what involves several
fields. A bad value raises `PropsError` naming the class, the prop and what is allowed, at
the line that built the props, not deep inside a construct or at `kubectl apply` time.

The values model (app/config.py) reads the same annotations and markers, so a values file
gets the same checks with its own field-named messages.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import ipaddress
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, dataclass_transform

from constructs.quantities import MEMORY_FORMAT, parse_cpu, parse_memory


class PropsError(ValueError):
    """A prop's value cannot be used; the message names the props class, the prop and what is allowed."""


class ConfigurationConflict(ValueError):
    """Settings that each validate but cannot be built together; the message names the field."""


@dataclass(frozen=True)
class Check:
    """`Annotated` marker: `function(value)` raises ValueError saying what is wrong and allowed."""

    function: Callable[[Any], object]


@dataclass(frozen=True)
class Range:
    """`Annotated` marker: a whole number from `low` to `high` (either may be open)."""

    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {self.low} to {self.high}"
        return f"{self.low} or more" if self.low is not None else f"at most {self.high}"


@dataclass(frozen=True)
class Pattern:
    """`Annotated` marker: the whole string matches `regex`; `form` says it in words."""

    regex: str
    form: str


# --- the checks themselves ------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def memory_quantity(value: str) -> None:
    parse_memory(value)


def cpu_quantity(value: str) -> None:
    parse_cpu(value)


def positive_memory_quantity(value: str) -> None:
    """A volume size: a memory quantity above zero (a claim of size 0 never binds)."""
    if parse_memory(value) <= 0:
        raise ValueError(f"{value!r} is not a size above zero: use {MEMORY_FORMAT}")


def dns_label(value: str) -> None:
    """A name that becomes part of object names (a release, a namespace): RFC 1123 label, at
    most 40 characters, so `<release>-<component>` and the hashed Job names stay within 63."""
    if len(value) > 40 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a name the stack can use: lower-case letters, digits and '-', starting "
            "and ending with a letter or digit, at most 40 characters"
        )


def kube_name(value: str) -> None:
    """A Kubernetes object name (Secret, StorageClass, IngressClass): RFC 1123 subdomain."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes name: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )


def host_name(value: str) -> None:
    """A DNS host name (RFC 1123), as an Ingress rule or a client connection names it."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value) or any(len(p) > 63 for p in value.split(".")):
        raise ValueError(
            f"{value!r} is not a host name: use lower-case letters, digits, '-' and '.', "
            "labels of at most 63 characters (e.g. sentry.example.com)"
        )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def host_or_ip(value: str) -> None:
    if value and not _is_ip(value):
        host_name(value)


def ingress_host(value: str) -> None:
    """An Ingress host: a DNS name (an IP address is not allowed there), optionally with a
    leading '*.' wildcard label."""
    if _is_ip(value):
        raise ValueError(f"{value!r} is an IP address: an Ingress host must be a DNS name (e.g. sentry.example.com)")
    host_name(value.removeprefix("*."))


def cidr(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block such as 0.0.0.0/0 or 10.0.0.0/8: {exc}") from None


# [registry[:port]/]path[:tag][@sha256:digest]: the only colon before the tag is a registry's port.
_IMAGE = re.compile(r"^([^\s/:@]+:[0-9]+/)?[^\s:@]+(:[A-Za-z0-9_.-]+)?(@sha256:[0-9a-f]{64})?$")


def image_reference(value: str) -> None:
    """An image pinned by a tag or a digest: a bare name or `:latest` would change under a
    running stack with every pull."""
    if not value or not _IMAGE.match(value):
        raise ValueError(f"{value!r} is not an image reference such as sentry:9.1.2 or name@sha256:<64 hex digits>")
    name = value.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    if "@sha256:" not in value and tag in (None, "latest"):
        raise ValueError(
            f"{value!r} is not pinned: give a tag other than latest (e.g. sentry:9.1.2), or a digest "
            "(name@sha256:...), so that every node runs the same image"
        )


CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_CRON_ATOM = re.compile(r"^(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?$")


def cron_fields(value: str) -> tuple[str, str, str, str, str]:
    """The five fields of a schedule (a macro expanded), as the CronJob controller reads them;
    ValueError naming the field otherwise."""
    text = value.strip()
    fields = CRON_MACROS.get(text, text).split()
    if len(fields) != 5:
        raise ValueError(
            f"{value!r} is not a cron schedule: use five fields 'minute hour day-of-month month "
            f"day-of-week' (e.g. '0 3 * * *') or one of {', '.join(sorted(CRON_MACROS))}"
        )
    for field, (low, high), name in zip(fields, _CRON_FIELD_RANGES, _CRON_NAMES, strict=True):
        for atom in field.split(","):
            match = _CRON_ATOM.match(atom)
            base = atom.split("/")[0]
            numbers = [int(n) for n in re.findall(r"[0-9]+", base)] if match else []
            step = int(atom.split("/")[1]) if match and "/" in atom else 1
            bad = match is None or any(n < low or n > high for n in numbers) or step == 0
            if not bad and "-" in base and numbers[0] > numbers[1]:
                bad = True
            if bad:
                raise ValueError(
                    f"{value!r} is not a cron schedule: the {name} field {field!r} must use numbers "
                    f"{low}-{high}, '*', ranges a-b (a <= b), lists a,b and steps /n (n >= 1)"
                )
    return fields[0], fields[1], fields[2], fields[3], fields[4]


def cron_schedule(value: str) -> None:
    cron_fields(value)


# Checked strings, shared by props and the values model.
MemoryQuantity = typing.Annotated[str, Check(memory_quantity)]
CpuQuantity = typing.Annotated[str, Check(cpu_quantity)]
VolumeSize = typing.Annotated[str, Check(positive_memory_quantity)]
CronSchedule = typing.Annotated[str, Check(cron_schedule)]
DnsLabel = typing.Annotated[str, Check(dns_label)]
KubeName = typing.Annotated[str, Check(kube_name)]
HostName = typing.Annotated[str, Check(host_name)]
HostOrIp = typing.Annotated[str, Check(host_or_ip)]
IngressHost = typing.Annotated[str, Check(ingress_host)]
Cidr = typing.Annotated[str, Check(cidr)]
Image = typing.Annotated[str, Check(image_reference)]
Port = typing.Annotated[int, Range(1, 65535)]
PullPolicy = typing.Literal["IfNotPresent", "Always", "Never"]


# --- checking a props instance against its annotations ---------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _type_words(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_words(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_words(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))


def _problem(value: Any, annotation: Any) -> str | None:
    """Why `value` does not fit `annotation` (None: it fits). Types the check cannot test
    (jsii interfaces, Any) are accepted."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        inner, *markers = args
        problem = _problem(value, inner)
        if problem is not None:
            return problem
        for marker in markers:
            try:
                _apply_marker(marker, value)
            except ValueError as exc:
                return str(exc)
        return None
    if annotation is Any or isinstance(annotation, TypeVar):
        return None
    if origin is typing.Literal:
        fits = value in args and type(value) in {type(a) for a in args}
        return None if fits else f"must be {_type_words(annotation)}"
    if origin in (typing.Union, types.UnionType):
        problems = [_problem(value, member) for member in args]
        if any(p is None for p in problems):
            return None
        # One member of the right kind: its own problem says more than the list of types.
        kinds = [m for m in args if _accepts_kind(value, m)]
        if len(kinds) == 1:
            return problems[args.index(kinds[0])]
        return f"must be {_type_words(annotation)}, not {type(value).__name__}"
    if annotation is type(None):
        return None if value is None else "must be None"
    if value is None:
        return f"is required ({_type_words(annotation)}), not None"
    if annotation is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if annotation is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
        return None if fits else f"must be a whole number, not {value!r}"
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"must be a number, not {value!r}"
    if annotation is str:
        return None if isinstance(value, str) else f"must be a string, not {type(value).__name__}"
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, collections.abc.Mapping):
            return f"must be a mapping, not {type(value).__name__}"
        key_type, value_type = args or (Any, Any)
        for key, item in value.items():
            problem = _problem(key, key_type) or _problem(item, value_type)
            if problem is not None:
                return f"[{key!r}]: {problem}"
        return None
    if origin in (list, tuple, collections.abc.Sequence):
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            return f"must be a list, not {type(value).__name__}"
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return f"must have {len(args)} items, not {len(value)}"
            items = list(zip(args, value, strict=True))
        else:
            items = [(args[0] if args else Any, item) for item in value]
        for index, (item_type, item) in enumerate(items):
            problem = _problem(item, item_type)
            if problem is not None:
                return f"[{index}]: {problem}"
        return None
    if isinstance(annotation, type):
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            return f"must be a {annotation.__name__}(...), not a dict: build it with {annotation.__name__}(**...)"
        try:
            fits = isinstance(value, annotation)
        except TypeError:  # a jsii interface or a protocol that cannot be checked at run time
            return None
        return None if fits else f"must be a {annotation.__name__}, not {type(value).__name__}"
    return None


def _accepts_kind(value: Any, annotation: Any) -> bool:
    """Whether `value` is of the annotation's outer kind (a str for Annotated[str, ...])."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepts_kind(value, typing.get_args(annotation)[0])
    if origin is not None or not isinstance(annotation, type):
        return False
    try:
        return isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    except TypeError:
        return False


def _apply_marker(marker: object, value: Any) -> None:
    if isinstance(marker, Check):
        marker.function(value)
    elif isinstance(marker, Range):
        low, high = marker.low, marker.high
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{value!r} is out of range (allowed: {marker.describe()})")
    elif isinstance(marker, Pattern) and not re.fullmatch(marker.regex, value):
        raise ValueError(f"{value!r} is not {marker.form}")


def check_props(instance: object) -> None:
    """Check every field of a props dataclass against its annotation; PropsError names the first
    bad one."""
    cls = type(instance)
    hints = _hints(cls)
    for field in dataclasses.fields(instance):  # type: ignore[arg-type]
        problem = _problem(getattr(instance, field.name), hints[field.name])
        if problem is not None:
            raise PropsError(f"{cls.__name__}.{field.name}: {problem}")


def fail(instance: object, prop: str, message: str) -> typing.NoReturn:
    """Raise the PropsError of a rule on several fields, named after `prop`."""
    raise PropsError(f"{type(instance).__name__}.{prop}: {message}")


C = TypeVar("C", bound=type)


@dataclass_transform(frozen_default=True, kw_only_default=True)
def props(cls: C) -> C:
    """A props class: a frozen, keyword-only dataclass whose fields are checked on construction
    (check_props), then by the `__post_init__` of the class and of each props class it extends,
    base classes first (the rules of an options class hold for the props that extend it)."""
    own = cls.__dict__.get("__post_init__")
    if own is not None:
        cls._own_checks = own  # type: ignore[attr-defined]

    def __post_init__(self: object) -> None:
        check_props(self)
        for klass in reversed(type(self).__mro__):
            rule = klass.__dict__.get("_own_checks")
            if rule is not None:
                rule(self)

    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


def options_of(options_type: type, value: object) -> dict[str, Any]:
    """The fields of `options_type` read from `value` (an instance of it, or of props that
    extend it): what a higher-level construct passes on when it builds those props."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(options_type)}


P = TypeVar("P")


def extend(props_type: type[P], options: object, **given: Any) -> P:
    """`props_type` (props that extend an options class) built from `options`' fields, with
    `given` on top: how a higher-level construct turns a user's options into a part's props."""
    fields = {f.name for f in dataclasses.fields(props_type)}  # type: ignore[arg-type]
    taken = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name in fields}  # type: ignore[arg-type]
    return props_type(**{**taken, **given})
