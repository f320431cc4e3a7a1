#!/usr/bin/env python3
"""A Job that copies one PersistentVolumeClaim's files into another and proves the copy.

    .venv/bin/python tools/volume_copy.py --config FILE --from sentry-backup --to sentry-backup-move \\
        --create-size 8Gi [--storage-class CLASS] | kubectl apply -f -
    kubectl -n sentry wait --for=condition=complete job/copy-sentry-backup-to-sentry-backup-move --timeout=6h
    kubectl -n sentry logs job/copy-sentry-backup-to-sentry-backup-move

For the volume moves of docs/operations.md (the backups' volume, which no backup can
move). The Job runs constructs/scripts/copy-volume.sh in the stack's PostgreSQL image
(bash, coreutils), as the same unprivileged user as the stack's pods, with the source
mounted read-only; it refuses a target that is not empty and fails unless every file's
checksum matches. With --create-size it also makes the target claim. It prints YAML for
`kubectl apply -f -`; nothing here talks to the cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from app.values import ConfigError, load_config  # noqa: E402

SCRIPT = PROJECT_DIR / "constructs" / "scripts" / "copy-volume.sh"
UID = 999  # the postgres image's user, and the stack's pods' (constructs/images.py)
LABELS = {"app.kubernetes.io/name": "volume-copy", "app.kubernetes.io/part-of": "sentry"}


def job_name(source: str, target: str) -> str:
    return f"copy-{source}-to-{target}"[:63].rstrip("-")


def manifests(
    namespace: str,
    image: str,
    source: str,
    target: str,
    create_size: str | None = None,
    storage_class: str | None = None,
    access_mode: str = "ReadWriteOnce",
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if create_size:
        spec: dict[str, Any] = {"accessModes": [access_mode], "resources": {"requests": {"storage": create_size}}}
        if storage_class:
            spec["storageClassName"] = storage_class
        found.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": target, "namespace": namespace, "labels": LABELS},
                "spec": spec,
            }
        )
    found.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job_name(source, target), "namespace": namespace, "labels": LABELS},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": 6 * 3600,
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": {
                            "runAsUser": UID,
                            "runAsGroup": UID,
                            "runAsNonRoot": True,
                            "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "copy",
                                "image": image,
                                "command": ["/bin/bash", "-c", SCRIPT.read_text(encoding="utf-8")],
                                "env": [{"name": "FROM_DIR", "value": "/from"}, {"name": "TO_DIR", "value": "/to"}],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "1", "memory": "256Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [
                                    {"name": "from", "mountPath": "/from", "readOnly": True},
                                    {"name": "to", "mountPath": "/to"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "from", "persistentVolumeClaim": {"claimName": source, "readOnly": True}},
                            {"name": "to", "persistentVolumeClaim": {"claimName": target}},
                        ],
                    },
                },
            },
        }
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PROJECT_DIR / "config" / "minikube.yaml")
    parser.add_argument("--from", dest="source", required=True, help="the claim to copy from (mounted read-only)")
    parser.add_argument("--to", dest="target", required=True, help="the claim to copy into (must be empty)")
    parser.add_argument("--create-size", help="also create the target claim, this size (e.g. 8Gi)")
    parser.add_argument("--storage-class", help="the created claim's StorageClass (default: the cluster's)")
    parser.add_argument("--access-mode", default="ReadWriteOnce")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.source == args.target:
        print("error: --from and --to name the same claim", file=sys.stderr)
        return 2
    objects = manifests(
        config.namespace,
        config.postgres.image,
        args.source,
        args.target,
        args.create_size,
        args.storage_class,
        args.access_mode,
    )
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
