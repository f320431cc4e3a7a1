"""The short report printed after a synth: what was made and what to run next."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from app.capacity import capacity_report
from app.config import StackConfig

# libyaml's parser when PyYAML has it: the same objects, about ten times sooner (the
# synth reads its output back for the review, and make apply reads dist/).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_objects(folder: Path) -> list[dict]:
    """Every object in a synthesized output folder, in file order."""
    return [
        doc
        for path in sorted(folder.glob("*.yaml"))
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER)  # a SafeLoader
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
        autoscaled = [
            f"{config.release}-{name}"
            for name, part in (("web", config.sentry.web), ("worker", config.sentry.worker))
            if part.autoscaling.enabled
        ]
        lines += [
            "  RESTORE MODE (docs/operations.md, restore runbook): with Sentry stopped,",
            "  make apply        # the database objects, then the restore Job; nothing of Sentry",
            f"  kubectl -n {ns} logs -f job/{config.release}-restore",
            "  then restore.enabled: false, make synth, make apply: Sentry and the CronJobs come back",
        ]
        if autoscaled:
            lines.append(
                f"  ({', '.join(autoscaled)}: make apply scales them to min_replicas, an autoscaler never "
                "scales up from 0; with plain kubectl, `kubectl scale` them yourself)"
            )
        return "\n".join(lines)
    lines.append("  make apply        # kubectl apply -f dist/, delete what left it, record it")
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
