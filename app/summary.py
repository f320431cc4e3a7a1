"""The short report printed after a synth: what was made and what to run next."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from app.capacity import capacity_report
from app.config import StackConfig


def load_objects(folder: Path) -> list[dict]:
    """Every object in a synthesized output folder, in file order."""
    return [
        doc
        for path in sorted(folder.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]


def summary(config: StackConfig, outdir: Path) -> str:
    objects = load_objects(outdir)
    kinds = Counter(doc["kind"] for doc in objects)
    images = set().union(*(_images(doc) for doc in objects))
    ns, web = config.namespace, f"{config.release}-web"
    secret = config.secrets.existing_secret or f"{config.release}-secrets"
    lines = [f"synthesized {sum(kinds.values())} objects into {outdir}:"]
    lines += [f"  {count:3d} {kind}" for kind, count in sorted(kinds.items())]
    lines += [
        "images: " + ", ".join(sorted(images)),
        capacity_report(config, objects),
        "next:",
    ]
    if config.postgres.backup.enabled and config.postgres.backup.restore.enabled:
        lines += [
            "  RESTORE MODE: apply only the restore Job, with Sentry scaled to 0 (docs/operations.md, restore):",
            f"  kubectl apply -f {outdir.name}/90-restore.k8s.yaml",
            f"  (applying {outdir.name}/20-sentry.k8s.yaml now would scale Sentry back up)",
        ]
    else:
        lines.append(f"  kubectl apply -f {outdir.name}/")
    lines += [
        f"  kubectl -n {ns} get pods -w        # migrations take a few minutes on first start",
        f"  kubectl -n {ns} rollout status deployment/{web}",
    ]
    if config.sentry.web.service_type == "NodePort":
        lines.append(
            f"  open http://$(minikube ip):{config.sentry.web.node_port}/auth/login/sentry/"
            f"   (or: minikube service -n {ns} {web} --url)"
        )
    lines += [
        f"  login: {config.sentry.admin_email}, password:",
        f"  kubectl -n {ns} get secret {secret} -o jsonpath='{{.data.admin-password}}' | base64 -d; echo",
    ]
    return "\n".join(lines)


def _images(obj: object) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "image" and isinstance(value, str):
                found.add(value)
            else:
                found |= _images(value)
    elif isinstance(obj, list):
        for item in obj:
            found |= _images(item)
    return found
