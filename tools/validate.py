#!/usr/bin/env python3
"""Validate synthesized manifests without a cluster: strict schemas, then checkov.

    .venv/bin/python tools/validate.py [DIR ...]     # default: dist/ (what `make validate` runs)
    .venv/bin/python tools/validate.py --skip-table  # the table of checkov skips (docs/security.md)
    .venv/bin/python tools/validate.py --skip-table --write  # replace it in docs/security.md

1. Every object against the Kubernetes OpenAPI schemas of each version in
   KUBERNETES_VERSIONS, strictly (an unknown field is an error), with the schemas
   shipped in kubernetes-validate (the library behind `kubernetes-validate --strict`).
2. checkov's Kubernetes checks, offline (`--skip-download`), from its own venv
   (.venv-checkov, made by tools/setup-test.sh): zero failed checks allowed. The checks the
   stack cannot meet are skipped by annotations on the objects, with their reasons
   (constructs/pod_security.py, CHECKOV_SKIPS).
Exit status 0 when both pass, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from jsonschema import Draft202012Validator

PROJECT = Path(__file__).resolve().parent.parent
CHECKOV = PROJECT / ".venv-checkov" / "bin" / "checkov"

# Version -> why it is validated.
KUBERNETES_VERSIONS = {
    "1.27.0": "the API level of the manifests (cdk8s-plus-27, imports/ from the 1.27 schema)",
    "1.35.0": "what the current minikube release starts by default (v1.38.1: DefaultKubernetesVersion v1.35.1)",
    "1.36.0": "minikube's next default (its main branch: DefaultKubernetesVersion v1.36.2)",
    "1.37.0": "the newest version kubernetes-validate ships",
}


_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
# Custom resources the stack can emit. Their CRDs are not in the Kubernetes schemas, so they
# are checked against the part of the operator's schema they use, strictly (the field names
# and types of prometheus-operator's monitoring.coreos.com/v1 ServiceMonitor).
CUSTOM_RESOURCE_SCHEMAS: dict[tuple[str, str], dict] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "labels": _LABELS,
                    "annotations": _LABELS,
                },
            },
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchLabels": _LABELS},
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            },
                        },
                    },
                },
            },
        },
    }
}


def schema_errors(directory: Path, versions: list[str] | None = None) -> list[str]:
    """One line per object that does not validate strictly against a version."""
    errors = []
    for file in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            if not doc:
                continue
            custom = CUSTOM_RESOURCE_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
            if custom is not None:
                where = f"{file.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                errors += [
                    f"{where}: {e.message} at {list(e.path)}" for e in Draft202012Validator(custom).iter_errors(doc)
                ]
                continue
            for version in versions or list(KUBERNETES_VERSIONS):
                where = f"{file.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    errors.append(f"{where} fails Kubernetes {version}: {exc.message} at {list(exc.path)}")
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(f"{where}: Kubernetes {version} has no {doc.get('apiVersion')} {doc.get('kind')}")
    return errors


class CheckovMissing(RuntimeError):
    pass


def run_checkov(path: Path) -> dict:
    """checkov's JSON report for a folder or a file (kubernetes framework, offline)."""
    if not CHECKOV.exists():
        raise CheckovMissing(f"{CHECKOV} is missing: run `make test-setup` (tools/setup-test.sh makes it)")
    target = ["-d", str(path)] if path.is_dir() else ["-f", str(path)]
    result = subprocess.run(
        [str(CHECKOV), *target, "--framework", "kubernetes", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    # Exit status 1 means failed checks; anything else but 0 is checkov itself failing.
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {result.returncode}: {result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one report per framework; only kubernetes here
        (report,) = report
    return report


def failed_checks(report: dict) -> list[str]:
    return [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for c in report.get("results", {}).get("failed_checks", [])
    ]


SKIP_TABLE_START = "<!-- checkov-skips:start (generated by tools/validate.py --skip-table; do not edit) -->"
SKIP_TABLE_END = "<!-- checkov-skips:end -->"
SKIP_TABLE_DOC = PROJECT / "docs" / "security.md"


def skip_table() -> str:
    """docs/security.md's table of checkov skips, from constructs/pod_security.py's CHECKOV_SKIPS."""
    # Imported here: it starts node (cdk8s), which validating does not need.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    from constructs.pod_security import checkov_skip_table

    return "\n".join([SKIP_TABLE_START, checkov_skip_table(), SKIP_TABLE_END])


def main(argv: list[str]) -> int:
    if argv == ["--skip-table"]:
        print(skip_table())
        return 0
    if argv == ["--skip-table", "--write"]:
        table = skip_table()  # puts the project on sys.path
        from tools.doc_blocks import write_block

        write_block(SKIP_TABLE_DOC, SKIP_TABLE_START, SKIP_TABLE_END, table)
        return 0
    directories = [Path(a) for a in argv] or [PROJECT / "dist"]
    ok = True
    for directory in directories:
        if not any(directory.glob("*.yaml")):
            print(f"validate: no manifests in {directory} (run `make synth` first)", file=sys.stderr)
            return 1
        errors = schema_errors(directory)
        for line in errors:
            print(f"schema: {line}", file=sys.stderr)
        versions = ", ".join(KUBERNETES_VERSIONS)
        print(f"schemas ({versions}, strict): {'FAILED' if errors else 'ok'} for {directory}")
        try:
            report = run_checkov(directory)
        except CheckovMissing as exc:
            print(f"checkov: {exc}", file=sys.stderr)
            return 1
        failed = failed_checks(report)
        for line in failed:
            print(f"checkov: FAILED {line}", file=sys.stderr)
        summary = report["summary"]
        print(
            f"checkov {summary['checkov_version']}: {summary['passed']} passed, {summary['failed']} failed, "
            f"{summary['skipped']} skipped (by annotation, reasons in constructs/pod_security.py) for {directory}"
        )
        ok = ok and not errors and not failed and summary["failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
