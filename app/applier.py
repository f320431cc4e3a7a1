"""`make apply`: apply dist/ with kubectl, delete what left it, and record what was applied.

The documented way to apply the stack (tools/apply.py runs it). Around a plain
`kubectl apply -f dist/` it does what plain apply cannot:

1. refuses a dist/ synthesized against another record than the current one (someone
   applied in between), or for another kubectl context than the record's;
2. checks that the Secrets the pods read but dist/ does not hold (secrets.existing_secret,
   a CA certificate) exist, before any pod is changed to read them;
3. hands `replicas` to the autoscaler first, where autoscaling was just turned on
   (`kubectl apply set-last-applied`), so the Deployment keeps its pods;
4. `kubectl apply -f dist/`;
5. deletes the objects the record has and dist/ lacks (app/day2.prune_plan): never a
   PersistentVolumeClaim unless named with --delete-claim, never the Namespace, never a
   Secret or ConfigMap the new output still uses, never a Job that is still running;
6. scales an autoscaled Deployment left at 0 replicas (the restore runbook stops Sentry
   so; an autoscaler never scales up from 0) back to its autoscaler's minimum;
7. writes the record (app/state.py).

With postgres.backup.restore on (dist/90-restore.k8s.yaml), it applies only the database
objects and then the restore Job, and deletes nothing: Sentry stays stopped for the restore
runbook. `--only database` applies the database objects alone, for procedures that
replace the server while Sentry is stopped.

kubectl runs through `Kubectl` (an argv prefix), so tests drive the same code against
tests/fake_kubectl.py, a model of the API server's apply and delete.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.day2 import prune_plan, referenced_names
from app.state import (
    Record,
    StateError,
    SynthBase,
    describe,
    load_record,
    object_key,
    redact,
    save_record,
    stack_of,
)
from app.summary import load_objects

RESTORE_FILE = "90-restore.k8s.yaml"
# Kinds a pod can read from the namespace without dist/ holding them.
REFERENCED_KINDS = ("Secret", "ConfigMap")
# The API group of every kind the stack emits, for `kubectl delete <kind>.<group>/<name>`.
GROUPS = {
    "Deployment": "apps",
    "StatefulSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
    "Ingress": "networking.k8s.io",
    "NetworkPolicy": "networking.k8s.io",
    "PodDisruptionBudget": "policy",
    "HorizontalPodAutoscaler": "autoscaling",
    "ServiceMonitor": "monitoring.coreos.com",
}


class ApplyError(RuntimeError):
    """make apply stopped; the message says why and what to do."""


Runner = Callable[[Sequence[str], str | None], subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)


@dataclass
class Kubectl:
    """kubectl, as an argv prefix (["kubectl", "--context", "x"]); `runner` runs it."""

    prefix: Sequence[str] = ("kubectl",)
    context: str | None = None
    """The context the prefix names (`--context`); None: kubectl's current one."""
    runner: Runner = _run
    echo: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = self.runner([*self.prefix, *args], stdin)
        if check and done.returncode != 0:
            raise ApplyError(f"`kubectl {' '.join(args)}` failed:\n{done.stderr.strip() or done.stdout.strip()}")
        return done


def resource(key: tuple[str, str, str]) -> str:
    kind, _, name = key
    group = GROUPS.get(kind)
    return f"{kind.lower()}.{group}/{name}" if group else f"{kind.lower()}/{name}"


def database_objects(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """What the database needs, and nothing of Sentry: the namespace, the Secret, the
    ServiceAccount, the NetworkPolicies, the volumes, and the PostgreSQL server itself."""
    keep = {"Namespace", "Secret", "ServiceAccount", "NetworkPolicy", "PersistentVolumeClaim"}
    return [
        o
        for o in objects
        if o["kind"] in keep
        or o.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component") == "postgresql"
    ]


def _write(objects: Iterable[Mapping[str, Any]], folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump_all(list(objects), sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Outcome:
    applied: list[tuple[str, str, str]] = field(default_factory=list)
    deleted: list[tuple[str, str, str]] = field(default_factory=list)
    kept: list[tuple[tuple[str, str, str], str]] = field(default_factory=list)
    skipped: list[tuple[tuple[str, str, str], str]] = field(default_factory=list)
    scaled: list[tuple[str, int]] = field(default_factory=list)
    mode: str = "all"


def apply(
    dist: Path,
    state_folder: Path,
    kubectl: Kubectl,
    *,
    delete_claims: Sequence[str] = (),
    only: str | None = None,
) -> Outcome:
    echo = kubectl.echo
    objects = load_objects(dist)
    stack = stack_of(objects)
    if stack is None:
        raise ApplyError(f"{dist} holds no stack (no Namespace object): run `make synth` first")
    namespace, release = stack
    base = SynthBase.read(dist)
    record = load_record(state_folder, namespace, release)
    current = record.digest if record is not None else None
    if base.record != current:
        raise ApplyError(
            f"{dist.name}/ was synthesized against "
            + (f"another apply record ({base.record[:12]})" if base.record else "no apply record")
            + f", and the record of stack {namespace}/{release} is now "
            + (f"{current[:12]} ({record.applied_at})" if record is not None and current else "gone")
            + ": something was applied (or the record moved) since. Run `make synth` again, then `make apply`."
        )
    context = kubectl.context or kubectl("config", "current-context").stdout.strip()
    if record is not None and record.context and record.context != context:
        raise ApplyError(
            f"stack {namespace}/{release} was applied to kubectl context {record.context!r}, and kubectl now "
            f"points at {context!r}. One state folder per cluster: for another cluster, set "
            "SENTRY_K8S_STATE_DIR (e.g. .state/<cluster>) for both make synth and make apply; or switch back "
            f"with `kubectl config use-context {record.context}`."
        )

    restore = (dist / RESTORE_FILE).exists()
    outcome = Outcome(mode="restore" if restore else (only or "all"))
    if only not in (None, "database"):
        raise ApplyError(f"--only {only}: only 'database' is known")
    _check_referenced(objects, kubectl, namespace)

    with tempfile.TemporaryDirectory(prefix="sentry-apply-") as tmp:
        folder = Path(tmp)
        if restore or only == "database":
            restore_objects = load_objects_of(dist / RESTORE_FILE) if restore else []
            database = [o for o in database_objects(objects) if o not in restore_objects]
            echo(f"applying the database objects of {namespace}/{release} only (Sentry stays as it is)")
            kubectl("apply", "-f", str(_write(database, folder, "database.yaml")))
            outcome.applied += [object_key(o) for o in database]
            servers = [o for o in database if o["kind"] == "StatefulSet"]
            for server in servers:
                kubectl(
                    "-n", namespace, "rollout", "status", f"statefulset/{server['metadata']['name']}", "--timeout=600s"
                )
            if restore:
                kubectl("apply", "-f", str(dist / RESTORE_FILE))
                outcome.applied += [object_key(o) for o in restore_objects]
            _record(state_folder, record, namespace, release, context, objects_applied=[*database, *restore_objects])
            return outcome

        plan = prune_plan(record.objects if record else [], objects, delete_claims)
        unknown = set(delete_claims) - {name for kind, _, name in plan.delete if kind == "PersistentVolumeClaim"}
        if unknown:
            raise ApplyError(
                f"--delete-claim {', '.join(sorted(unknown))}: no such claim among those that left {dist.name}/ "
                f"(make apply deletes only volumes that the record has and {dist.name}/ lacks)"
            )
        handed = _autoscaler_takes_over(record, objects)
        if handed:
            echo("handing replicas to the autoscaler first: " + ", ".join(o["metadata"]["name"] for o in handed))
            kubectl(
                "apply",
                "set-last-applied",
                "--create-annotation=true",
                "-f",
                str(_write(handed, folder, "handed.yaml")),
            )
        applied = kubectl("apply", "-f", str(dist), check=False)
        if applied.stdout:
            echo(applied.stdout.rstrip())
        if applied.returncode != 0:
            # Some objects may have been applied: record the union, so nothing is forgotten.
            _record(state_folder, record, namespace, release, context, objects_applied=objects)
            raise ApplyError(
                f"`kubectl apply -f {dist}` failed (the record keeps everything it may have applied):\n"
                + applied.stderr.strip()
            )
        outcome.applied = [object_key(o) for o in objects]
        deleted, skipped = _delete(plan.delete, kubectl, namespace)
        outcome.deleted, outcome.skipped, outcome.kept = deleted, skipped, list(plan.keep)
        outcome.scaled = _scale_up_from_zero(objects, kubectl, namespace)
        _record(state_folder, record, namespace, release, context, objects_applied=objects, gone=set(deleted))
    return outcome


def load_objects_of(path: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader) if d]


def _check_referenced(objects: Sequence[Mapping[str, Any]], kubectl: Kubectl, namespace: str) -> None:
    """Secrets and ConfigMaps the pods read that dist/ does not hold must exist already: a pod
    that reads a missing one never starts, and make apply would delete the generated Secret
    it replaces. (An Ingress's TLS Secret may come later, from cert-manager: not checked.)"""
    present = {(o["kind"], o["metadata"]["name"]) for o in objects}
    pods = [o for o in objects if o["kind"] != "Ingress"]
    missing = []
    for kind, name in sorted(referenced_names(pods)):
        if kind in REFERENCED_KINDS and (kind, name) not in present:
            done = kubectl("-n", namespace, "get", kind.lower(), name, "-o", "name", check=False)
            if done.returncode != 0:
                missing.append(f"{kind} {namespace}/{name}")
    if missing:
        raise ApplyError(
            f"the pods read {', '.join(missing)}, which {'does' if len(missing) == 1 else 'do'} not exist: "
            "create it first (docs/configuration.md, Secrets, lists the keys of secrets.existing_secret); "
            "nothing was applied"
        )


def _autoscaler_takes_over(record: Record | None, objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Deployments whose applied version set replicas and whose new one leaves them to an
    autoscaler: applying them as they are would reset the count to 1 (the field leaves the
    last-applied configuration), so their last-applied configuration is set first."""
    if record is None:
        return []
    before = record.by_key()
    return [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and "replicas" not in o.get("spec", {})
        and "replicas" in before.get(object_key(o), {}).get("spec", {})
    ]


def _delete(
    keys: Sequence[tuple[str, str, str]], kubectl: Kubectl, namespace: str
) -> tuple[list[tuple[str, str, str]], list[tuple[tuple[str, str, str], str]]]:
    if not keys:
        return [], []
    skipped = []
    jobs = [k for k in keys if k[0] == "Job"]
    if jobs:
        listed = json.loads(kubectl("-n", namespace, "get", "jobs", "-o", "json").stdout or "{}")
        running = {j["metadata"]["name"] for j in listed.get("items", []) if (j.get("status") or {}).get("active")}
        skipped = [(k, "still running: make apply deletes it once it has finished") for k in jobs if k[2] in running]
    go = [k for k in keys if k not in {s for s, _ in skipped}]
    if go:
        kubectl("-n", namespace, "delete", "--ignore-not-found", "--wait=false", *map(resource, go))
    return go, skipped


def _scale_up_from_zero(
    objects: Sequence[Mapping[str, Any]], kubectl: Kubectl, namespace: str
) -> list[tuple[str, int]]:
    autoscalers = {
        o["spec"]["scaleTargetRef"]["name"]: o["spec"].get("minReplicas", 1)
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    scaled = []
    for name, minimum in sorted(autoscalers.items()):
        live = kubectl("-n", namespace, "get", "deployment", name, "-o", "jsonpath={.spec.replicas}", check=False)
        if live.returncode == 0 and live.stdout.strip() == "0":
            kubectl("-n", namespace, "scale", "deployment", name, f"--replicas={minimum}")
            scaled.append((name, minimum))
    return scaled


def _record(
    folder: Path,
    record: Record | None,
    namespace: str,
    release: str,
    context: str,
    *,
    objects_applied: Sequence[Mapping[str, Any]],
    gone: set[tuple[str, str, str]] | None = None,
) -> None:
    """The record after this apply: the applied objects replace their old versions, the
    deleted ones go, and every other object of the old record stays (it is still in the
    cluster: a kept volume, or what a partial apply did not touch)."""
    if record is None:
        record = Record(namespace=namespace, release=release, objects=[])
    redacted, digests = redact([dict(o) for o in objects_applied], record.salt)
    by_key = record.by_key()
    for obj in redacted:
        by_key[object_key(obj)] = obj
    for key in gone or set():
        by_key.pop(key, None)
    record.objects = list(by_key.values())
    for name, values in digests.items():
        record.secret_digests[name] = values
    present = {o["metadata"]["name"] for o in record.objects if o["kind"] == "Secret"}
    record.secret_digests = {k: v for k, v in record.secret_digests.items() if k in present}
    record.context = context
    record.applied_at = ""
    save_record(folder, record)


def report(outcome: Outcome, dist: Path) -> str:
    lines = []
    if outcome.mode == "restore":
        lines.append(
            f"restore mode ({dist.name}/{RESTORE_FILE}): applied the database objects and the restore Job; "
            "Sentry stays stopped and nothing was deleted. Follow the restore: "
            "kubectl -n <namespace> logs -f job/<release>-restore"
        )
    elif outcome.mode == "database":
        lines.append("applied the database objects only; Sentry stays as it is and nothing was deleted")
    else:
        lines.append(f"applied {len(outcome.applied)} objects from {dist.name}/")
    lines += [f"deleted {describe(key)} (it left {dist.name}/)" for key in outcome.deleted]
    lines += [f"kept {describe(key)}: {why}" for key, why in outcome.skipped]
    lines += [f"kept {describe(key)}: {why}" for key, why in outcome.kept]
    lines += [f"scaled {name} from 0 to {n} replicas (its autoscaler's minimum)" for name, n in outcome.scaled]
    if outcome.kept:
        lines.append(
            'kept objects stay in the record until deleted: `make apply ARGS="--delete-claim NAME"` deletes a '
            "volume that left dist/ (docs/operations.md, “Deleting what make apply keeps”)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, project_dir: Path | None = None) -> int:
    import argparse

    from app.state import state_dir

    root = project_dir or Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description="Apply dist/, delete what left it, record what was applied.")
    parser.add_argument("dist", nargs="?", type=Path, default=root / "dist")
    parser.add_argument("--context", help="kubectl context (default: kubectl's current one)")
    parser.add_argument(
        "--delete-claim",
        action="append",
        default=[],
        metavar="NAME",
        help="also delete this PersistentVolumeClaim, which left dist/, with its data (repeat for several)",
    )
    parser.add_argument("--only", choices=["database"], help="apply only the database objects; Sentry stays as it is")
    args = parser.parse_args(argv)
    prefix = ["kubectl", *(["--context", args.context] if args.context else [])]
    try:
        outcome = apply(
            args.dist,
            state_dir(root),
            Kubectl(prefix, context=args.context),
            delete_claims=args.delete_claim,
            only=args.only,
        )
    except (ApplyError, StateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(outcome, args.dist), file=sys.stderr)
    return 0
