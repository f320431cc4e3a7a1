"""The short report printed after a synth: what was made, what must exist first, and what
to run next.

Names come from the synthesized objects (the web Service and Deployment, the Secret holding
the admin password, what the pods refer to), not rebuilt by hand: whatever the constructs
name, the summary names too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.capacity import capacity_report
from app.config import StackConfig
from constructs.pod_security import pod_specs

LOGIN_PATH = "/auth/login/sentry/"
# The folder `make apply` applies (tools/apply.py's default).
PROJECT_DIST = Path(__file__).resolve().parents[1] / "dist"

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


@dataclass(frozen=True)
class Reference:
    """A Secret or ConfigMap the objects refer to, and what they read from it."""

    kind: str
    name: str
    keys: frozenset[str]
    why: str = ""

    def line(self, namespace: str) -> str:
        what = f"key{'s' if len(self.keys) > 1 else ''} {', '.join(sorted(self.keys))}" if self.keys else ""
        detail = "; ".join(d for d in (what, self.why) if d)
        return f"  {self.kind} {self.name} in {namespace}" + (f": {detail}" if detail else "")


def _component(objects: list[dict], kind: str, component: str) -> dict | None:
    return next(
        (
            o
            for o in objects
            if o["kind"] == kind and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ),
        None,
    )


def external_references(objects: list[dict]) -> list[Reference]:
    """The Secrets and ConfigMaps the objects read that are not among them: they must exist
    before `kubectl apply`, or the pods that read them never start."""
    made = {(o["kind"], o["metadata"]["name"]) for o in objects}
    found: dict[tuple[str, str], set[str]] = {}
    why: dict[tuple[str, str], str] = {}

    def refer(kind: str, name: str, key: str | None = None, reason: str = "") -> None:
        keys = found.setdefault((kind, name), set())
        if key:
            keys.add(key)
        if reason:
            why[(kind, name)] = reason

    for obj in objects:
        if obj["kind"] == "Ingress":
            for tls in obj["spec"].get("tls", []):
                refer("Secret", tls["secretName"], reason="the Ingress's TLS certificate (tls.crt, tls.key)")
        for spec in pod_specs(obj):
            for pull in spec.get("imagePullSecrets", []):
                refer("Secret", pull["name"], reason="to pull images")
            mounted = {}
            for volume in spec.get("volumes", []):
                if "secret" in volume:
                    mounted[volume["name"]] = ("Secret", volume["secret"]["secretName"])
                elif "configMap" in volume:
                    mounted[volume["name"]] = ("ConfigMap", volume["configMap"]["name"])
            for container in spec.get("initContainers", []) + spec.get("containers", []):
                for env in container.get("env", []):
                    source = env.get("valueFrom", {})
                    for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                        if ref in source:
                            refer(kind, source[ref]["name"], source[ref]["key"])
                # A mounted file is read by the path an env value names (PGSSLROOTCERT=.../ca.crt).
                paths = [e["value"] for e in container.get("env", []) if isinstance(e.get("value"), str)]
                for mount in container.get("volumeMounts", []):
                    if mount["name"] not in mounted:
                        continue
                    kind, name = mounted[mount["name"]]
                    refer(kind, name, mount.get("subPath"))
                    for path in paths:
                        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
                            refer(kind, name, path[len(mount["mountPath"].rstrip("/")) + 1 :])
    return [
        Reference(kind, name, frozenset(keys), why.get((kind, name), ""))
        for (kind, name), keys in sorted(found.items())
        if (kind, name) not in made
    ]


def login_url(config: StackConfig, objects: list[dict]) -> str:
    """Where the login page is, as well as the synth can know it."""
    if config.sentry.url_prefix:
        return config.sentry.url_prefix + LOGIN_PATH
    ingress = _component(objects, "Ingress", "web")
    if ingress is not None:
        scheme = "https" if ingress["spec"].get("tls") else "http"
        return f"{scheme}://{ingress['spec']['rules'][0]['host']}{LOGIN_PATH}"
    service = _component(objects, "Service", "web")
    if service is None:
        return ""
    port = service["spec"]["ports"][0]
    name, ns = service["metadata"]["name"], service["metadata"].get("namespace", config.namespace)
    kind = service["spec"].get("type", "ClusterIP")
    if kind == "NodePort" and config.capacity.target == "minikube":
        return f"http://<minikube ip>:{port['nodePort']}{LOGIN_PATH}   (`minikube ip` prints the address)"
    if kind == "NodePort":
        return f"http://<a node's address>:{port['nodePort']}{LOGIN_PATH}"
    if kind == "LoadBalancer":
        return f"http://<its address>:{port['port']}{LOGIN_PATH}   (`kubectl -n {ns} get service {name}` shows it)"
    forward = f"kubectl -n {ns} port-forward service/{name} {port['port']}"
    return f"http://localhost:{port['port']}{LOGIN_PATH}   after `{forward}`"


def _admin_password(objects: list[dict]) -> tuple[str, str] | None:
    """The Secret and key the migration Job reads the admin's password from."""
    job = _component(objects, "Job", "migrations")
    for spec in pod_specs(job) if job else []:
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef", {})
                if env["name"] == "SENTRY_ADMIN_PASSWORD" and ref:
                    return ref["name"], ref["key"]
    return None


def summary(config: StackConfig, outdir: Path, *, values_file: str = "", shown_outdir: str | None = None) -> str:
    """The report; `values_file` and `shown_outdir` as the user gave them (or as the synth chose)."""
    objects = load_objects(outdir)
    kinds = Counter(doc["kind"] for doc in objects)
    images = set().union(*(_images(doc) for doc in objects))
    ns = config.namespace
    shown = (shown_outdir or outdir.name).rstrip("/") + "/"
    lines = [f"values: {values_file}"] if values_file else []
    lines += [f"synthesized {sum(kinds.values())} objects into {shown}:"]
    lines += [f"  {count:3d} {kind}" for kind, count in sorted(kinds.items())]
    lines += ["images: " + ", ".join(sorted(images)), capacity_report(config, objects)]
    needed = external_references(objects)
    if needed or "Namespace" not in kinds:
        lines.append(f"must exist before kubectl apply ({shown} refers to them and does not make them):")
        if "Namespace" not in kinds:
            lines.append(f"  namespace {ns} (namespace_shared: the stack neither creates nor labels it)")
        lines += [ref.line(ns) for ref in needed]
    lines.append("next:")
    restore = _component(objects, "Job", "restore")
    if restore is not None:
        # Only the database and the restore Job: the first-start steps would scale Sentry back
        # up mid-restore.
        autoscaled = [
            f"{config.release}-{name}"
            for name, part in (("web", config.sentry.web), ("worker", config.sentry.worker))
            if part.autoscaling.enabled
        ]
        lines += [
            "  RESTORE MODE (docs/operations.md, restore): with Sentry stopped,",
            "  make apply        # the database objects, then the restore Job; nothing of Sentry",
            f"  (by hand: kubectl apply -f {shown}90-restore.k8s.yaml, with Sentry scaled to 0)",
            f"  kubectl -n {ns} logs -f job/{restore['metadata']['name']}",
            f"  (applying {shown}20-sentry.k8s.yaml now would scale Sentry back up; afterwards set "
            "postgres.backup.restore.enabled: false, synthesize again and make apply)",
        ]
        if autoscaled:
            lines.append(
                f"  ({', '.join(autoscaled)}: make apply scales them to min_replicas, an autoscaler never "
                "scales up from 0; with plain kubectl, `kubectl scale` them yourself)"
            )
        return "\n".join(lines)
    if outdir.resolve() == PROJECT_DIST:
        lines.append("  make apply        # kubectl apply -f dist/, then delete what left it, and record it")
    else:
        lines.append(f"  kubectl apply -f {shown}")
    lines.append(f"  kubectl -n {ns} get pods -w        # migrations take a few minutes on first start")
    web = _component(objects, "Deployment", "web")
    if web is not None:
        lines.append(f"  kubectl -n {ns} rollout status deployment/{web['metadata']['name']}")
    if url := login_url(config, objects):
        lines.append(f"  login page: {url}")
    admin = _admin_password(objects)
    if config.sentry.create_admin and admin is not None:
        secret, key = admin
        lines += [
            f"  login: {config.sentry.admin_email}, password:",
            f"  kubectl -n {ns} get secret {secret} -o jsonpath='{{.data.{key}}}' | base64 -d; echo",
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
