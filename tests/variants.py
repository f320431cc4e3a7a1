"""Variants of the values model, generated from the model itself: for every leaf field,
a different valid value.

Nothing here is hand-picked per field: the alternatives come from the field's type
(bool, int, Literal, list, mapping) and its validators (quantities, cron schedules,
image references, names), and each candidate is kept only if the whole configuration
still validates. A leaf that only matters when an optional feature is on (the offsite
copy, the restore Job, mail, GitHub login) gets its variant on the "full" base, where
those are on. Used by the apply-compatibility test (tests/test_day2.py) and the
every-leaf-reaches-the-YAML test.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import multiprocessing
import os
import re
import types
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import cdk8s
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from app.config import StackConfig
from app.secrets_store import required_keys
from app.values import ConfigError, merge_onto_defaults, parse_config
from constructs.quantities import parse_cpu, parse_memory
from tests.conftest import FULL_SECRETS, FULL_VALUES

# "external": managed PostgreSQL (verify-full, with a CA) and Redis, where the external
# settings take effect.
EXTERNAL_VALUES = """
postgres:
  external:
    host: db.example.com
    sslmode: verify-full
    ca: {secret: db-ca}
    cidrs: [10.0.8.0/24]
redis:
  external: {host: 10.0.9.15}
"""
# The full base adds what is on only by choice and was not in FULL_VALUES: metrics with a
# ServiceMonitor, autoscaling (on a real cluster: no capacity target, a shared filestore).
# The external base keeps Sentry's files in S3; the gcs base in Google Cloud Storage.
FULL_EXTRA = """
capacity: {target: none}
sentry:
  filestore: {access_mode: ReadWriteMany}
  metrics: {enabled: true, service_monitor: true}
  web: {autoscaling: {enabled: true}}
  worker: {autoscaling: {enabled: true}}
"""
EXTERNAL_EXTRA = """
sentry:
  filestore: {backend: s3, s3: {bucket: sentry-files, access_key_id: AKIAFILES}}
"""
GCS_VALUES = """
sentry:
  filestore: {backend: gcs, gcs: {bucket: sentry-files}}
"""
BASES: dict[str, dict[str, Any]] = {
    "default": {},
    "full": merge_onto_defaults(StackConfig, yaml.safe_load(FULL_VALUES), yaml.safe_load(FULL_EXTRA)),
    "external": merge_onto_defaults(StackConfig, yaml.safe_load(EXTERNAL_VALUES), yaml.safe_load(EXTERNAL_EXTRA)),
    "gcs": yaml.safe_load(GCS_VALUES),
}


SECRETS = {**FULL_SECRETS, "filestore-s3-secret-access-key": "files-test-secret", "gcs-credentials": "{}"}


@dataclass(frozen=True)
class Leaf:
    """One settable value of the model: its dotted path and its pydantic field."""

    path: tuple[str, ...]
    field: FieldInfo

    @property
    def name(self) -> str:
        return ".".join(self.path)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _optional(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def leaves(model: type[BaseModel] = StackConfig, prefix: tuple[str, ...] = ()) -> list[Leaf]:
    """Every settable value; an optional nested model (`ca: {...} | null`) is one leaf, as
    setting it means giving the whole mapping."""
    found: list[Leaf] = []
    for name, field in model.model_fields.items():
        nested = _nested_model(field.annotation)
        if nested is not None and not _optional(field.annotation):
            found += leaves(nested, (*prefix, name))
        else:
            found.append(Leaf((*prefix, name), field))
    return found


def _validator_names(field: FieldInfo) -> set[str]:
    """Names of the functions validating a field, wherever its Annotated metadata sits."""
    names: set[str] = set()

    def visit(item: Any) -> None:
        func = getattr(item, "func", None)
        if func is not None:
            names.add(getattr(func, "__name__", ""))
        if get_origin(item) is Annotated:
            for extra in get_args(item)[1:]:
                visit(extra)
        for arg in get_args(item):
            visit(arg)

    for item in field.metadata:
        visit(item)
    visit(field.annotation)
    return names


def _literal_options(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) is Union:
        return tuple(o for a in get_args(annotation) for o in _literal_options(a))
    return ()


def _bump_tag(image: str) -> str:
    """The next patch release: the tag's last number plus one (postgres:9.6.24 -> 9.6.25)."""
    name, _, tag = image.partition(":")
    bumped = re.sub(r"([0-9]+)(?!.*[0-9])", lambda m: str(int(m.group(1)) + 1), tag or "1")
    return f"{name}:{bumped}"


def candidates(leaf: Leaf, current: Any) -> Iterator[Any]:
    """Different values of the leaf's type, most natural first; validation picks the first
    that the whole configuration accepts."""
    validators = _validator_names(leaf.field)
    options = _literal_options(leaf.field.annotation)
    nested = _nested_model(leaf.field.annotation)
    # A free-form field (a pod spec's tolerations, say) documents an example in the model.
    yield from (e for e in leaf.field.examples or [] if e != current)
    if nested is not None:
        # An optional mapping: give one with a single key set (the model's validators pick
        # which combinations are valid), or take it away.
        if current is not None:
            yield None
        for name, field in nested.model_fields.items():
            for value in candidates(Leaf((*leaf.path, name), field), field.get_default(call_default_factory=True)):
                yield {name: value}
    elif options:
        yield from (o for o in options if o != current)
    elif isinstance(current, bool):
        yield not current
    elif isinstance(current, int):
        yield current + 1
        yield current - 1
    elif isinstance(current, list):
        if "cidr" in validators:
            yield ["10.20.0.0/16"]
        yield [*current, 8443]
        yield []
    elif isinstance(current, dict):
        yield {"k8s-app": "coredns"}
    elif validators & {"memory_quantity", "positive_memory_quantity"}:
        mebibytes = parse_memory(current) // 2**20
        yield f"{mebibytes * 2}Mi"
        yield f"{max(mebibytes // 2, 1)}Mi"
    elif "cpu_quantity" in validators:
        millis = parse_cpu(current)
        yield f"{millis * 2}m"
        yield f"{max(millis // 2, 1)}m"
    elif "cron_schedule" in validators:
        yield "17 5 * * *"
    elif leaf.path[-1] == "image" or leaf.path[-1].endswith("_image"):
        yield _bump_tag(current)
    else:
        # Free-form and name-like strings; the validators decide which of these fit.
        if current:
            yield f"{current}x" if not current.startswith("http") else current.replace("://", "://x.")
        yield from ("x", "example-x", "x.example.org", "https://sentry.example.org", "x@example.org", "x/", "1")
        yield "10.1.2.3"  # for fields that take a host: an address needs no other settings
        # A backup's name, for fields that pick one.
        yield from ("sentry-20240101T030000Z.sql.gz", "sentry-20240101T030000Z")


def _at(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for part in path:
        value = value[part]
    return value


def with_leaf(base: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(dict(base))
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return data


@dataclass(frozen=True)
class Variant:
    leaf: Leaf
    base: str
    value: Any
    values: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.leaf.name}@{self.base}"


def variant(leaf: Leaf, base: str) -> Variant | None:
    """The first candidate value that the model accepts on `base`, or None."""
    base_values = BASES[base]
    current = _at(parse_config(base_values).model_dump(), leaf.path)
    for value in candidates(leaf, current):
        values = with_leaf(base_values, leaf.path, value)
        try:
            parse_config(values)
        except ConfigError:
            continue
        return Variant(leaf, base, value, values)
    return None


def synth_objects(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stack's objects for a configuration, in-process and without files (the same
    objects `python main.py` writes; the test secrets stand in for the real ones)."""
    from app.stack import SentryStack

    config = parse_config(dict(values))
    secrets = {} if config.secrets.existing_secret else {k.key: SECRETS[k.key] for k in required_keys(config)}
    app = cdk8s.App()
    SentryStack(app, config, secrets)
    return [obj for chart in app.charts for obj in chart.to_json()]


def _digest(objects: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()


@functools.cache
def _base_digest(base: str) -> str:
    return _digest(synth_objects(BASES[base]))


def outcome(leaf_name: str) -> tuple[str, Any, list[dict[str, Any]], bool] | None:
    """(base, value, objects, changed) of the leaf's variant: on the first base where it
    changes the output, else on the last where it is valid; None where it is valid nowhere.
    Module-level, so that worker processes can run it."""
    leaf = next(leaf for leaf in leaves() if leaf.name == leaf_name)
    found = None
    for base in BASES:
        var = variant(leaf, base)
        if var is None:
            continue
        objects = synth_objects(var.values)
        found = (base, var.value, objects, _digest(objects) != _base_digest(base))
        if found[3]:
            break
    return found


def all_outcomes(names: list[str]) -> dict[str, tuple[str, Any, list[dict[str, Any]], bool] | None]:
    """`outcome` of every leaf, on every core: each synth is a few hundred round trips to
    the jsii node process, so the matrix is CPU-bound and splits evenly."""
    workers = max(1, min(os.cpu_count() or 1, 4))
    if workers == 1:
        return {name: outcome(name) for name in names}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip(names, pool.map(outcome, names, chunksize=4), strict=True))
