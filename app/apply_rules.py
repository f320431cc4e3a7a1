"""Which changes `kubectl apply` cannot make to objects that already exist.

The API server freezes parts of some objects after creation (kubernetes
`pkg/apis/{apps,batch,core}/validation`). A new dist/ that changes a frozen field
of an object with the same name fails to apply, often halfway through the
folder. `apply_conflicts(old, new)` finds those changes by comparing two
synthesized outputs the way `kubectl apply` would send them:

- StatefulSet: only replicas, ordinals, template, updateStrategy,
  persistentVolumeClaimRetentionPolicy and minReadySeconds may change;
- Deployment: spec.selector is frozen;
- Job: spec.template, spec.selector and spec.completions are frozen;
- PersistentVolumeClaim: the spec is frozen except resources.requests.storage,
  which may only grow (and only where the StorageClass allows expansion);
- Service: spec.clusterIP(s) is frozen;
- Secret, ConfigMap: with `immutable: true`, the data is frozen.

main.py runs this against the dist/ it is about to replace, so a values change
that could not be applied is refused at synth time, with the procedure, instead
of failing in the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.procedures import procedure_ref
from constructs.quantities import parse_memory
from constructs.workload import JOB_FROZEN_FIELDS  # one list: the rule and the Jobs' names agree

STATEFULSET_MUTABLE = frozenset(
    {"replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"}
)


@dataclass(frozen=True)
class Conflict:
    """One change the API server would reject, and what to do instead."""

    kind: str
    namespace: str
    name: str
    field: str
    problem: str
    procedure: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}: {self.field}: {self.problem}. {self.procedure}"


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _statefulset(old: dict, new: dict) -> list[tuple[str, str, str]]:
    old_spec, new_spec = old.get("spec", {}), new.get("spec", {})
    return [
        (
            f"spec.{field}",
            "cannot change after the StatefulSet was created",
            "Delete the StatefulSet but keep its pods' volumes: `kubectl -n {ns} delete statefulset {name} "
            "--cascade=orphan`, then apply again (the pod is replaced; its PersistentVolumeClaim and data stay)",
        )
        for field in sorted(set(old_spec) | set(new_spec))
        if field not in STATEFULSET_MUTABLE and old_spec.get(field) != new_spec.get(field)
    ]


def _deployment(old: dict, new: dict) -> list[tuple[str, str, str]]:
    if old.get("spec", {}).get("selector") == new.get("spec", {}).get("selector"):
        return []
    return [
        (
            "spec.selector",
            "cannot change after the Deployment was created",
            "Delete the Deployment (`kubectl -n {ns} delete deployment {name}`) and apply again; "
            "its pods are down until the new ones are ready",
        )
    ]


def _job(old: dict, new: dict) -> list[tuple[str, str, str]]:
    old_spec, new_spec = old.get("spec", {}), new.get("spec", {})
    return [
        (
            f"spec.{field}",
            "a Job's pod template, selector and completions cannot change under the same name",
            "Delete the finished Job (`kubectl -n {ns} delete job {name}`) and apply again",
        )
        for field in JOB_FROZEN_FIELDS
        if old_spec.get(field) != new_spec.get(field)
    ]


def _storage(spec: dict) -> str | None:
    return spec.get("resources", {}).get("requests", {}).get("storage")


def _without_storage(spec: dict) -> dict:
    copy = {**spec, "resources": {**spec.get("resources", {})}}
    requests = {k: v for k, v in copy["resources"].get("requests", {}).items() if k != "storage"}
    copy["resources"]["requests"] = requests
    return copy


# How the data of each of the stack's volumes moves to a new one: a PostgreSQL or filestore
# volume through a backup and a restore, Redis's by draining its queue, the backups by a copy
# (the generic "back up, delete, restore" would delete the backups themselves).
CLAIM_PROCEDURES = {
    "postgresql": "rebuild-postgres",
    "redis": "replace-redis",
    "filestore": "move-filestore-volume",
    "backup": "move-backups",
}


def _claim(old: dict, new: dict) -> list[tuple[str, str, str]]:
    old_spec, new_spec = old.get("spec", {}), new.get("spec", {})
    component = old.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component", "")
    move = (
        f"follow {procedure_ref(CLAIM_PROCEDURES[component])}"
        if component in CLAIM_PROCEDURES
        else ("move its data to a new volume yourself")
    )
    found = []
    before, after = _storage(old_spec), _storage(new_spec)
    if before and after and parse_memory(str(after)) < parse_memory(str(before)):
        found.append(
            (
                "spec.resources.requests.storage",
                f"a volume cannot shrink from {before} to {after}",
                f"Keep the size at {before} or more; for a smaller volume, {move}",
            )
        )
    old_rest, new_rest = _without_storage(old_spec), _without_storage(new_spec)
    for field in sorted(set(old_rest) | set(new_rest)):
        if old_rest.get(field) != new_rest.get(field):
            found.append(
                (
                    f"spec.{field}",
                    "only the size of an existing volume can change (its storage class and access mode "
                    "are fixed when it is created)",
                    f"Keep the old value, or {move}",
                )
            )
    return found


def _service(old: dict, new: dict) -> list[tuple[str, str, str]]:
    old_spec, new_spec = old.get("spec", {}), new.get("spec", {})
    return [
        (
            f"spec.{field}",
            "a Service's cluster IP cannot change",
            "Delete the Service (`kubectl -n {ns} delete service {name}`) and apply again",
        )
        for field in ("clusterIP", "clusterIPs")
        if field in old_spec and field in new_spec and old_spec[field] != new_spec[field]
    ]


def _immutable_data(old: dict, new: dict) -> list[tuple[str, str, str]]:
    if not old.get("immutable"):
        return []
    return [
        (
            field,
            f"the {old['kind']} is marked immutable",
            "Delete it (`kubectl -n {ns} delete " + old["kind"].lower() + " {name}`) and apply again",
        )
        for field in ("immutable", "data", "stringData", "binaryData")
        if old.get(field) != new.get(field)
    ]


_RULES = {
    "StatefulSet": _statefulset,
    "Deployment": _deployment,
    "Job": _job,
    "PersistentVolumeClaim": _claim,
    "Service": _service,
    "Secret": _immutable_data,
    "ConfigMap": _immutable_data,
}


def apply_conflicts(old: Iterable[dict], new: Iterable[dict]) -> list[Conflict]:
    """Every change from `old` to `new` that `kubectl apply` would be refused, object by object.

    Objects only in one of the two are fine for apply (created; or left behind, which
    app/day2.prune_plan reports and make apply deletes or keeps)."""
    before = {_key(o): o for o in old}
    conflicts = []
    for obj in new:
        key = _key(obj)
        if key not in before or obj["kind"] not in _RULES:
            continue
        kind, ns, name = key
        for field, problem, procedure in _RULES[kind](before[key], obj):
            conflicts.append(Conflict(kind, ns, name, field, problem, procedure.format(ns=ns, name=name)))
    return conflicts
