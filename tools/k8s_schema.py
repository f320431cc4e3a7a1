#!/usr/bin/env python3
"""Convert kubernetes-validate's bundled Kubernetes schema for ``cdk8s import``.

``cdk8s import k8s@<version>`` downloads a single ``_definitions.json`` from
GitHub and feeds it to json2jsii.  GitHub is not reachable from our build
machines, but the PyPI package ``kubernetes-validate`` ships the same
OpenAPI-derived definitions for each Kubernetes release, rewritten as a
JSON Schema 2020-12 document.  This script turns that document back into the
draft-04 style that cdk8s-cli 2.x understands and writes it to ``output``.
``tools/offline-schema.cjs`` then hands the file to the CLI instead of the
download.

Usage::

    python tools/k8s_schema.py OUTPUT [--k8s-version 1.27.0] [--source FILE]

The conversion is a pure function of the input file, and the output is
written with a fixed layout, so the same input always gives the same bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import TypeAlias

# A parsed JSON value. Schemas are JSON objects.
Json: TypeAlias = "str | int | float | bool | list[Json] | dict[str, Json] | None"
JsonObject: TypeAlias = dict[str, Json]

# 2020-12 spelling (kubernetes-validate) -> draft-04 spelling (cdk8s-cli).
SOURCE_DEFS_KEY = "$defs"
SOURCE_REF_PREFIX = "#/$defs/"
TARGET_DEFS_KEY = "definitions"
TARGET_REF_PREFIX = "#/definitions/"

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

# The only union types the importer has to turn into classes with
# ``from_string()``/``from_number()`` factories, and the shape it needs for
# that.  json2jsii builds such a class only when every ``oneOf`` entry has a
# single primitive ``type`` string; otherwise the type becomes ``Any``.  The
# order of the entries is the order of the TypeScript union, so it is fixed
# here too (string first, as in the schema cdk8s publishes).
UNION_SHAPES: dict[str, list[str]] = {
    INT_OR_STRING: ["string", "integer"],
    QUANTITY: ["string", "number"],
}

# Keywords whose value is one schema.
SCHEMA_KEYWORDS = frozenset({"items", "additionalProperties", "not"})
# Keywords whose value is a list of schemas.
SCHEMA_LIST_KEYWORDS = frozenset({"oneOf", "anyOf", "allOf"})
# Keywords whose value maps arbitrary names (not keywords) to schemas.
SCHEMA_MAP_KEYWORDS = frozenset({"properties", "patternProperties"})


class ConversionError(Exception):
    """The input does not look like the document this converter was written for."""


def default_source(k8s_version: str) -> Path:
    """Locate ``_definitions.json`` inside the installed kubernetes-validate.

    ``find_spec`` finds the package directory without importing it (importing
    it would load jsonschema, yaml, and more for no benefit).
    """
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("kubernetes-validate is not installed; activate the project venv or pass --source")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return package_dir / "kubernetes-json-schema" / f"v{k8s_version}-local" / "_definitions.json"


def collapse_nullable_type(schema_type: Json) -> Json:
    """Turn ``["string", "null"]`` into ``"string"``.

    kubernetes-validate marks every optional field as nullable with a type
    array.  json2jsii does have a transformer for type arrays, but it also
    sets ``required: false`` on the schema it rewrites.  For a struct with
    ``"type": ["object", "null"]`` that replaces the struct's list of required
    fields, so every field would become optional (for example
    ``containers`` in PodSpec).  It also makes the ``oneOf`` entries of
    IntOrString/Quantity non-primitive, so they would become ``Any``.
    The published cdk8s schema uses plain type strings, so we do the same.
    """
    if not isinstance(schema_type, list):
        return schema_type
    non_null = [t for t in schema_type if t != "null"]
    if len(non_null) != 1:
        raise ConversionError(f"unsupported type union {schema_type!r}")
    return non_null[0]


def convert_ref(ref: Json) -> str:
    r"""Rewrite ``#/$defs/X`` to ``#/definitions/X``.

    The CLI passes only ``schema.definitions`` to json2jsii and links API
    objects to their props types with ``#/definitions/...`` refs.  It also
    runs every string value through a sanitizer that allows only
    ``[\w./#,-]``, so a ``$`` inside a ref would turn it into
    ``__stripped_by_cdk8s__`` and break every reference.
    """
    if not isinstance(ref, str) or not ref.startswith(SOURCE_REF_PREFIX):
        raise ConversionError(f"unexpected $ref {ref!r}")
    return TARGET_REF_PREFIX + ref[len(SOURCE_REF_PREFIX) :]


def convert_schema(schema: Json, where: str) -> Json:
    """Recursively convert one (sub)schema.

    This code knows which keywords hold schemas, so it never rewrites a
    property that happens to be called ``type``, ``format``, or ``$ref``
    (JSONSchemaProps has all three).
    """
    if isinstance(schema, bool):
        return schema  # e.g. additionalProperties: false
    if not isinstance(schema, dict):
        raise ConversionError(f"{where}: expected a schema object, got {schema!r}")

    out: JsonObject = {}
    for key, value in schema.items():
        if key == "$ref":
            out[key] = convert_ref(value)
        elif key.startswith("$"):
            # The CLI rejects any key other than $ref/$schema, so fail here
            # with a clear message instead of in the middle of the import.
            raise ConversionError(f"{where}: unsupported keyword {key!r}")
        elif key == "type":
            out[key] = collapse_nullable_type(value)
        elif key in SCHEMA_KEYWORDS:
            out[key] = convert_schema(value, f"{where}.{key}")
        elif key in SCHEMA_LIST_KEYWORDS:
            if not isinstance(value, list):
                raise ConversionError(f"{where}.{key}: expected a list")
            out[key] = [convert_schema(item, f"{where}.{key}[{i}]") for i, item in enumerate(value)]
        elif key in SCHEMA_MAP_KEYWORDS:
            if not isinstance(value, dict):
                raise ConversionError(f"{where}.{key}: expected an object")
            out[key] = {name: convert_schema(sub, f"{where}.{key}.{name}") for name, sub in value.items()}
        else:
            # description, format, enum, required, x-kubernetes-* and the
            # like carry no nested schemas; copy them unchanged.
            out[key] = value
    return out


def drop_api_version_enum(name: str, definition: JsonObject) -> None:
    """Remove the single-value ``enum`` that pins ``apiVersion``.

    kubernetes-validate adds ``enum: ["<group>/<version>"]`` to apiVersion
    for strict validation; the cdk8s schema has no enum there.  For API
    objects the importer deletes ``apiVersion`` from the props anyway, but
    types that keep the field (DeleteOptions, WatchEvent, ...) would get an
    extra generated enum class that the published bindings do not have.
    ``kind`` keeps its enum because the cdk8s schema has one as well.
    """
    properties = definition.get("properties")
    if not isinstance(properties, dict):
        return
    api_version = properties.get("apiVersion")
    if isinstance(api_version, dict) and "enum" in api_version:
        if api_version.get("type") != "string":
            raise ConversionError(f"{name}: apiVersion is not a string")
        del api_version["enum"]


def normalize_union(name: str, definition: JsonObject) -> JsonObject:
    """Make sure IntOrString and Quantity are primitive ``oneOf`` unions.

    This is what makes the importer generate ``IntOrString.from_number()`` and
    ``Quantity.from_string()``.  The converted input should already have this
    form; if the source has changed shape (for example to ``format:
    int-or-string`` or an ``anyOf``), this fails instead of quietly emitting
    ``Any``.
    """
    wanted = UNION_SHAPES[name]
    options = definition.get("oneOf")
    if not isinstance(options, list):
        raise ConversionError(f"{name}: expected a oneOf union, got {definition!r}")
    found = sorted(str(option.get("type")) if isinstance(option, dict) else repr(option) for option in options)
    plain = all(isinstance(option, dict) and set(option) == {"type"} for option in options)
    if found != sorted(wanted) or not plain:
        raise ConversionError(f"{name}: unexpected union {options!r}")
    result: JsonObject = {k: v for k, v in definition.items() if k != "oneOf"}
    result["oneOf"] = [{"type": t} for t in wanted]
    return result


def convert_document(document: JsonObject) -> dict[str, dict[str, JsonObject]]:
    """Convert the whole kubernetes-validate document.

    Only ``definitions`` is written.  ``$schema`` (2020-12) and ``$id`` are
    left out because the CLI compiles the document with a default Ajv
    instance, which knows only draft-07 and fails on a 2020-12 meta-schema.
    Also, ``$id`` is not on the key allowlist of the CLI's JSON sanitizer.
    """
    defs = document.get(SOURCE_DEFS_KEY)
    if not isinstance(defs, dict) or not defs:
        raise ConversionError(f"input has no {SOURCE_DEFS_KEY!r} section")
    unexpected = set(document) - {SOURCE_DEFS_KEY, "$schema", "$id"}
    if unexpected:
        raise ConversionError(f"unexpected top-level keys {sorted(unexpected)}")

    definitions: dict[str, JsonObject] = {}
    for name, definition in defs.items():
        converted = convert_schema(definition, name)
        if not isinstance(converted, dict):
            raise ConversionError(f"{name}: definition is not an object")
        drop_api_version_enum(name, converted)
        if name in UNION_SHAPES:
            converted = normalize_union(name, converted)
        definitions[name] = converted

    missing = [name for name in UNION_SHAPES if name not in definitions]
    if missing:
        raise ConversionError(f"missing definitions {missing}")
    gvk_count = sum(1 for d in definitions.values() if "x-kubernetes-group-version-kind" in d)
    if gvk_count == 0:
        # The importer finds API objects only through this annotation; without
        # it there would be no Kube* constructs at all.
        raise ConversionError("no definition has x-kubernetes-group-version-kind")
    return {TARGET_DEFS_KEY: definitions}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the converted schema")
    parser.add_argument(
        "--k8s-version",
        default="1.27.0",
        help="Kubernetes version to read from kubernetes-validate (default: %(default)s)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        help="explicit path to a kubernetes-validate _definitions.json",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; return the process exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        source: Path = args.source or default_source(args.k8s_version)
        if not source.is_file():
            raise ConversionError(f"schema not found: {source}")
        document: Json = json.loads(source.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ConversionError(f"{source}: top level is not an object")
        converted = convert_document(document)
    except ConversionError as err:
        print(f"k8s_schema.py: error: {err}", file=sys.stderr)
        return 1
    # Fixed formatting (key order as in the source, 2-space indent, ASCII
    # escapes, trailing newline), so the output is byte-for-byte reproducible.
    text = json.dumps(converted, indent=2, ensure_ascii=True) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(
        f"wrote {len(converted[TARGET_DEFS_KEY])} definitions from {source} to {args.output}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
