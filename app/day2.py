"""Day 2: what a change does to the running stack beyond the API server's frozen fields.

`apply_rules` finds what `kubectl apply` would be refused. This module finds what it
would accept and regret: where the data lives (PostgreSQL, Redis, Sentry's files),
versions that cannot follow each other, renames, secrets that change only in the
Secret, and the objects that leave dist/ but stay in the cluster.

It reads manifests, not values: the old side is the apply record (app/state.py), the
objects `make apply` applied and has not deleted, and the new side the output about to
be written. So what it judges is what was applied, whatever values file produced it.

Every refusal names a procedure that is a heading of docs/operations.md (PROCEDURES;
tests/test_day2_transitions.py checks that each exists), and the flag or value that
lets the change through once the procedure is followed: `--confirm TOKEN` for steps
the user takes around the apply, or `<part>.migrate_from` in the values for a move of
data, because the values then describe where the data came from.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.config import SentryConfig, StackConfig
from app.procedures import procedure_ref
from app.state import ObjectKey, Record, describe, object_key
from constructs.naming import image_tag


@dataclass(frozen=True)
class Finding:
    """One hazard of a change: refused unless confirmed, or a warning that names it."""

    text: str
    procedure: str | None = None
    confirm: str | None = None
    """The --confirm token that lets it through (None: a values change does, or nothing)."""
    refuse: bool = True

    def render(self) -> str:
        parts = [self.text.rstrip(".") + "."]
        if self.procedure:
            parts.append(f"Procedure: {procedure_ref(self.procedure)}.")
        if self.confirm and self.refuse:
            parts.append(f"Once you follow it, synthesize again with --confirm {self.confirm}.")
        return " ".join(parts)


# --- facts: what a set of manifests says about the stack ------------------------------


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels", {}) or {}


def _component(obj: Mapping[str, Any]) -> str:
    return _labels(obj).get("app.kubernetes.io/component", "")


def _pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {}) or {}


def _containers(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@dataclass(frozen=True)
class Facts:
    """Where a stack keeps its data and what it runs, as its manifests say."""

    postgres: str = ""
    """'in-cluster', or host:port of the external server; '' when there is no Sentry."""
    postgres_database: str = ""
    postgres_user: str = ""
    postgres_image: str = ""
    """The in-cluster server's image ('' with an external server)."""
    postgres_claim: str = ""
    redis: str = ""
    """'in-cluster', or host:port/db of the external server."""
    redis_image: str = ""
    files: str = ""
    """'filesystem', 's3://bucket' or 'gcs://bucket'."""
    sentry_image: str = ""
    url_prefix: str = ""
    node_ports: tuple[tuple[int, str], ...] = ()
    replicas: tuple[tuple[str, int | None], ...] = ()
    """Every Deployment and its spec.replicas (None: left to an autoscaler)."""

    @property
    def known(self) -> bool:
        return bool(self.postgres)


def facts(objects: Iterable[Mapping[str, Any]]) -> Facts:
    objects = list(objects)
    web = next((o for o in objects if o["kind"] == "Deployment" and _component(o) == "web"), None)
    if web is None:
        return Facts(node_ports=_node_ports(objects))
    container = next(c for c in _pod_spec(web).get("containers", []) if c["name"] == "web")
    env = _env(container)
    services = {o["metadata"]["name"]: _component(o) for o in objects if o["kind"] == "Service"}
    statefulsets = {_component(o): o for o in objects if o["kind"] == "StatefulSet"}

    pg_host = env.get("SENTRY_POSTGRES_HOST", "")
    pg_in_cluster = services.get(pg_host) == "postgresql"
    pg_image = pg_claim = ""
    if pg_in_cluster and "postgresql" in statefulsets:
        server = statefulsets["postgresql"]
        pg_image = _containers(server)[-1]["image"]
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in _pod_spec(server).get("volumes", [])
            if "persistentVolumeClaim" in v
        ]
        pg_claim = claims[0] if claims else ""
    redis_host = env.get("SENTRY_REDIS_HOST", "")
    redis_in_cluster = services.get(redis_host) == "redis"
    redis_image = (
        _containers(statefulsets["redis"])[-1]["image"] if redis_in_cluster and "redis" in statefulsets else ""
    )
    if env.get("SENTRY_S3_BUCKET"):
        files = f"s3://{env['SENTRY_S3_BUCKET']}"
    elif env.get("SENTRY_GCS_BUCKET"):
        files = f"gcs://{env['SENTRY_GCS_BUCKET']}"
    else:
        files = "filesystem"
    return Facts(
        postgres="in-cluster" if pg_in_cluster else f"{pg_host}:{env.get('SENTRY_POSTGRES_PORT', '5432')}",
        postgres_database=env.get("SENTRY_DB_NAME", ""),
        postgres_user=env.get("SENTRY_DB_USER", ""),
        postgres_image=pg_image,
        postgres_claim=pg_claim,
        redis="in-cluster"
        if redis_in_cluster
        else f"{redis_host}:{env.get('SENTRY_REDIS_PORT', '6379')}/{env.get('SENTRY_REDIS_DB', '0')}",
        redis_image=redis_image,
        files=files,
        sentry_image=container["image"],
        url_prefix=env.get("SENTRY_URL_PREFIX", ""),
        node_ports=_node_ports(objects),
        replicas=tuple(
            sorted(
                (o["metadata"]["name"], o.get("spec", {}).get("replicas")) for o in objects if o["kind"] == "Deployment"
            )
        ),
    )


def _node_ports(objects: Iterable[Mapping[str, Any]]) -> tuple[tuple[int, str], ...]:
    return tuple(
        sorted(
            (port["nodePort"], f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}")
            for o in objects
            if o["kind"] == "Service"
            for port in o.get("spec", {}).get("ports", [])
            if port.get("nodePort")
        )
    )


# --- versions --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageVersion:
    numbers: tuple[int, ...]
    variant: str
    """What follows the version in the tag: '' (the default Debian), 'alpine3.19', 'bookworm'."""

    @property
    def libc(self) -> str:
        return "musl" if self.variant.startswith("alpine") else "glibc"


def image_version(image: str) -> ImageVersion | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)*)(?:-(.+))?", image_tag(image))
    if not match:
        return None
    return ImageVersion(tuple(int(n) for n in match[1].split(".")), match[2] or "")


def postgres_major(version: ImageVersion) -> tuple[int, ...]:
    """9.6 and 9.5 are majors; from 10 on, the first number is."""
    return version.numbers[:2] if version.numbers[0] < 10 else version.numbers[:1]


# --- the review ------------------------------------------------------------------------


def _migrated_from(declared: str, old: str) -> bool:
    """Whether `<part>.migrate_from` names the old location (an external server by its host,
    with or without the port)."""
    if not declared:
        return False
    return declared == old or old.startswith(f"{declared}:") or old.split("/", 1)[0] == declared


def location_findings(old: Facts, new: Facts, config: StackConfig, old_claims: Collection[str]) -> list[Finding]:
    found: list[Finding] = []
    moves = (
        (
            "postgres",
            "Sentry's database",
            old.postgres,
            new.postgres,
            config.postgres.migrate_from,
            "move-postgres",
            "the migration Job then migrates an empty database and creates a new admin: Sentry "
            "comes up empty, while the old database stays where it was",
        ),
        (
            "redis",
            "Sentry's queue (events not yet processed) and caches",
            old.redis,
            new.redis,
            config.redis.migrate_from,
            "replace-redis",
            "the events still queued in the old Redis are never processed",
        ),
        (
            "sentry.filestore",
            "Sentry's files (release files, source maps, debug files)",
            old.files,
            new.files,
            config.sentry.filestore.migrate_from,
            "move-files-bucket",
            "the files the database points at stay behind and Sentry cannot find them",
        ),
    )
    for field_name, what, before, after, declared, procedure, hazard in moves:
        if not before or before == after:
            if declared and before:
                found.append(
                    Finding(
                        f"{field_name}.migrate_from is {declared!r}, but nothing moves ({what} stay at "
                        f"{before}): remove it, so that a later move is not taken as done",
                        refuse=False,
                    )
                )
            continue
        if _migrated_from(declared, before):
            found.append(
                Finding(
                    f"{what}: moved from {before} to {after}, as {field_name}.migrate_from says (the synth "
                    "copies nothing; the procedure does). make apply deletes the old objects and keeps their "
                    "volumes until you delete them",
                    procedure=procedure,
                    refuse=False,
                )
            )
            continue
        token = before if before in ("in-cluster", "filesystem") or "://" in before else before.rsplit(":", 1)[0]
        found.append(
            Finding(
                f"{what} would move from {before} to {after}, and nothing copies the data: {hazard}. Move it "
                f"first, then say so in the values: `{field_name}.migrate_from: {token}`",
                procedure=procedure,
            )
        )
    if new.postgres == "in-cluster" and old.postgres not in ("", "in-cluster") and new.postgres_claim in old_claims:
        found.append(
            Finding(
                f"the in-cluster PostgreSQL starts on the kept volume {new.postgres_claim}, which still holds "
                "the database from before it moved out of the cluster, not an empty one; the procedure's "
                "restore replaces it",
                procedure="move-postgres",
                refuse=False,
            )
        )
    return found


def version_findings(old: Facts, new: Facts) -> list[Finding]:
    found: list[Finding] = []
    if old.postgres_image and new.postgres_image and old.postgres_image != new.postgres_image:
        before, after = image_version(old.postgres_image), image_version(new.postgres_image)
        if before is None or after is None:
            found.append(
                Finding(
                    f"cannot tell the PostgreSQL versions of {old.postgres_image} and {new.postgres_image}: "
                    "a new major version cannot read the old data directory, and another C library changes "
                    "how text sorts (indexes then need rebuilding); check both before you apply",
                    procedure="rebuild-postgres",
                    refuse=False,
                )
            )
        elif postgres_major(before) != postgres_major(after):
            found.append(
                Finding(
                    f"PostgreSQL {'.'.join(map(str, postgres_major(before)))} -> "
                    f"{'.'.join(map(str, postgres_major(after)))} ({old.postgres_image} -> {new.postgres_image}): "
                    "a new major version refuses the old data directory, so the server would crash-loop and "
                    "Sentry stop; the data moves through a backup and a restore into a new server",
                    procedure="rebuild-postgres",
                    confirm="rebuild-postgres",
                )
            )
        elif before.libc != after.libc:
            found.append(
                Finding(
                    f"{old.postgres_image} -> {new.postgres_image} changes the C library ({before.libc} -> "
                    f"{after.libc}), and with it how text sorts: every text index would silently need "
                    "rebuilding; the data moves through a backup and a restore (which rebuilds them)",
                    procedure="rebuild-postgres",
                    confirm="rebuild-postgres",
                )
            )
        elif before.variant != after.variant:
            found.append(
                Finding(
                    f"{old.postgres_image} -> {new.postgres_image} changes the image's operating system "
                    f"({before.variant or 'the default'} -> {after.variant or 'the default'}); a new glibc "
                    "can sort text differently: run REINDEX DATABASE afterwards, as the procedure says",
                    procedure="rebuild-postgres",
                    refuse=False,
                )
            )
    if old.redis_image and new.redis_image and old.redis_image != new.redis_image:
        before, after = image_version(old.redis_image), image_version(new.redis_image)
        if before is None or after is None:
            found.append(
                Finding(
                    f"cannot tell the Redis versions of {old.redis_image} and {new.redis_image}: an older "
                    "Redis cannot read a newer one's data files",
                    procedure="replace-redis",
                    refuse=False,
                )
            )
        elif after.numbers[:2] < before.numbers[:2]:
            found.append(
                Finding(
                    f"Redis {'.'.join(map(str, before.numbers[:2]))} -> {'.'.join(map(str, after.numbers[:2]))} "
                    f"({old.redis_image} -> {new.redis_image}) is a downgrade: the older Redis cannot read "
                    "the newer one's data files and would start empty, losing the queue",
                    procedure="replace-redis",
                    confirm="redis-downgrade",
                )
            )
    return found


def identity_findings(old: Facts, new: Facts) -> list[Finding]:
    found: list[Finding] = []
    if old.postgres and old.postgres == new.postgres:
        if old.postgres_user and old.postgres_user != new.postgres_user:
            found.append(
                Finding(
                    f"postgres.user {old.postgres_user} -> {new.postgres_user}: the server has no role "
                    f"{new.postgres_user} (the image creates its role only when the volume is first "
                    "initialised), so every pod would fail to log in",
                    procedure="rename-database",
                    confirm="rename-database-user",
                )
            )
        if old.postgres_database and old.postgres_database != new.postgres_database:
            found.append(
                Finding(
                    f"postgres.database {old.postgres_database} -> {new.postgres_database}: Sentry's data "
                    f"is in {old.postgres_database}; a new name points it at a database that does not exist",
                    procedure="rename-database",
                    confirm="rename-database",
                )
            )
    return found


def autoscaling_findings(old: Facts, new: Facts) -> list[Finding]:
    before = dict(old.replicas)
    handed = [name for name, replicas in new.replicas if replicas is None and before.get(name) is not None]
    if not handed:
        return []
    return [
        Finding(
            f"autoscaling takes over {', '.join(handed)}: make apply hands their replica count to the "
            "autoscaler first, so they keep their pods; a plain `kubectl apply -f dist/` would drop each to 1 "
            "pod until the autoscaler's next sync raises it to min_replicas",
            refuse=False,
        )
    ]


def image_findings(old: Facts, new: Facts, config: StackConfig) -> list[Finding]:
    sentry = config.sentry
    if old.sentry_image == new.sentry_image or new.sentry_image != sentry.auth_image:
        return []
    why = []
    if sentry.filestore.backend == "gcs":
        why.append("the gcs filestore needs google-cloud-storage")
    if sentry.github.login_enabled or sentry.gitlab.login_enabled:
        why.append("the GitHub/GitLab login needs its plugin")
    default = SentryConfig.model_fields["auth_image"].default
    where = (
        f"{new.sentry_image} is the name the project's image gets when built locally "
        "(images/sentry-auth): no registry has it, so push it and set sentry.auth_image to the pushed "
        "name, or on minikube build it into the node (`minikube image build`)"
        if new.sentry_image == default
        else f"make sure {new.sentry_image} is in a registry the nodes can pull from"
    )
    return [
        Finding(
            f"Sentry's image changes from {old.sentry_image} to {new.sentry_image} ({'; '.join(why)}): {where}",
            refuse=False,
        )
    ]


# --- secrets ---------------------------------------------------------------------------

POSTGRES_PASSWORD, REDIS_PASSWORD = "postgres-password", "redis-password"


def secret_findings(changed: Sequence[str], config: StackConfig) -> list[Finding]:
    found = []
    pg_external, redis_external = bool(config.postgres.external.host), bool(config.redis.external.host)
    for key in changed:
        if key == POSTGRES_PASSWORD:
            where = (
                "the managed server keeps its own password"
                if pg_external
                else ("PostgreSQL keeps the password it was initialised with")
            )
            found.append(
                Finding(
                    f"{key} differs from the value last applied, and {where}: changing only the Secret "
                    "locks Sentry out of its database at the pods' next start. Change it on the server first",
                    procedure="rotate-postgres-password",
                    confirm="rotate-postgres-password",
                )
            )
        elif key == REDIS_PASSWORD and redis_external:
            found.append(
                Finding(
                    f"{key} differs from the value last applied, and the managed Redis keeps its own "
                    "password: changing only the Secret locks Sentry out of Redis. Change it on the server first",
                    procedure="rotate-redis-password",
                    confirm="rotate-redis-password",
                )
            )
        elif key == REDIS_PASSWORD:
            found.append(
                Finding(
                    f"{key} changes: the in-cluster Redis restarts with it and every pod that uses it rolls "
                    "(their checksum/secrets annotation changes); until they have, pods still on the old "
                    "password cannot reach Redis, and events sent meanwhile may be refused",
                    procedure="rotate-redis-password",
                    refuse=False,
                )
            )
        elif key == "sentry-secret-key":
            found.append(
                Finding(
                    f"{key} changes: Sentry's pods roll, everyone signed in must sign in again, and links "
                    "Sentry signed with the old key stop working; the in-cluster Redis restarts too (its "
                    "rollout checksum is keyed by this value)",
                    refuse=False,
                )
            )
        elif key == "admin-password":
            found.append(
                Finding(
                    f"{key} changes, but it is used only when the migration Job creates the superuser: once "
                    "that exists, this changes nothing in Sentry. Change the password in Sentry itself "
                    "(User settings, Password)",
                    refuse=False,
                )
            )
        else:
            found.append(Finding(f"{key} changes: the pods that read it roll", refuse=False))
    return found


def existing_secret_findings(old_secret: str, new_secret: str, generated: str) -> list[Finding]:
    if old_secret == new_secret or not old_secret:
        return []
    if new_secret != generated:
        return [
            Finding(
                f"the pods now read the Secret {new_secret} (secrets.existing_secret) instead of {old_secret}: "
                "its postgres-password and redis-password must be the ones the servers have (an in-cluster "
                "PostgreSQL keeps the password it was initialised with). make apply checks that it exists, "
                f"then deletes {old_secret}; .secrets/ keeps the values",
                procedure="rotate-postgres-password",
                refuse=False,
            )
        ]
    return [
        Finding(
            f"the pods now read the generated Secret {new_secret} instead of {old_secret}: its values come "
            "from .secrets/ or SENTRY_K8S_* variables, and postgres-password and redis-password must be the "
            "ones the servers have",
            procedure="recover-secrets",
            refuse=False,
        )
    ]


def secret_name(objects: Iterable[Mapping[str, Any]]) -> str:
    """The Secret Sentry's pods read (ours, or the user's existing_secret)."""
    for obj in objects:
        if obj["kind"] == "Deployment" and _component(obj) == "web":
            for container in _containers(obj):
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref and ref["key"] == POSTGRES_PASSWORD:
                        return ref["name"]
    return ""


# --- stacks side by side ----------------------------------------------------------------


def stack_findings(
    config: StackConfig, new_objects: Sequence[Mapping[str, Any]], own: Record | None, others: Sequence[Record]
) -> list[Finding]:
    found: list[Finding] = []
    if own is None and others:
        names = ", ".join(f"{r.stack} (applied {r.applied_at})" for r in others)
        fit = " On one minikube node, two stacks do not fit." if config.capacity.target == "minikube" else ""
        found.append(
            Finding(
                f"stack {config.namespace}/{config.release} was never applied, but {names} was, from this "
                "state folder: changing namespace or release does not rename a stack, it starts a second, "
                "empty Sentry beside the first, whose data stays where it was. To rename, follow "
                f"{procedure_ref('rename-stack')}; to run a second stack, confirm it with --confirm "
                f"second-stack.{fit}",
                procedure="second-stack",
                confirm="second-stack",
            )
        )
    taken = {port: f"{service} of stack {r.stack}" for r in others for port, service in facts(r.objects).node_ports}
    for port, service in facts(new_objects).node_ports:
        if port in taken:
            free = next(p for p in range(30000, 32768) if p not in taken and p != port)
            found.append(
                Finding(
                    f"NodePort {port} of {service} is taken by {taken[port]}: the API server refuses a second "
                    f'Service on it ("provided port is already allocated"). Choose another '
                    f"sentry.web.node_port, e.g. {free}",
                    procedure="second-stack",
                )
            )
    return found


# --- objects that leave dist/ ---------------------------------------------------------


@dataclass(frozen=True)
class PrunePlan:
    """What make apply does with the objects the record has and the new output lacks."""

    delete: tuple[ObjectKey, ...] = ()
    keep: tuple[tuple[ObjectKey, str], ...] = ()

    def lines(self) -> list[str]:
        lines = []
        if self.delete:
            lines.append("make apply deletes what left dist/ since the last apply:")
            lines += [f"  - {describe(key)}" for key in self.delete]
        if self.keep:
            lines.append(
                f"make apply keeps, although they left dist/ ({procedure_ref('delete-kept')} says how to delete them):"
            )
            lines += [f"  - {describe(key)}: {why}" for key, why in self.keep]
        return lines


def referenced_names(objects: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret, ConfigMap and claim the objects' pods or Ingresses use."""
    found: set[tuple[str, str]] = set()
    for obj in objects:
        spec = _pod_spec(obj)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                found.add(("Secret", volume["secret"]["secretName"]))
            if "configMap" in volume:
                found.add(("ConfigMap", volume["configMap"]["name"]))
            if "persistentVolumeClaim" in volume:
                found.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        for container in _containers(obj):
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    found.add(("Secret", source["secretKeyRef"]["name"]))
                if "configMapKeyRef" in source:
                    found.add(("ConfigMap", source["configMapKeyRef"]["name"]))
        for pull in spec.get("imagePullSecrets", []):
            found.add(("Secret", pull["name"]))
        if obj["kind"] == "Ingress":
            for tls in obj.get("spec", {}).get("tls", []):
                found.add(("Secret", tls.get("secretName", "")))
    return found


KEEP_REASONS = {
    "Namespace": "a namespace: deleting it deletes everything in it, volumes included",
    "PersistentVolumeClaim": "a volume: its data would go with it",
}


def prune_plan(
    old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]], delete_claims: Collection[str] = ()
) -> PrunePlan:
    new = list(new)
    present = {object_key(o) for o in new}
    used = referenced_names(new)
    delete: list[ObjectKey] = []
    keep: list[tuple[ObjectKey, str]] = []
    for obj in old:
        key = object_key(obj)
        kind, _, name = key
        if key in present:
            continue
        if kind == "PersistentVolumeClaim" and name in delete_claims:
            delete.append(key)
        elif kind in KEEP_REASONS:
            keep.append((key, KEEP_REASONS[kind]))
        elif (kind, name) in used:
            keep.append((key, "still used by the new output (e.g. as secrets.existing_secret)"))
        else:
            delete.append(key)
    return PrunePlan(tuple(sorted(delete)), tuple(sorted(keep)))


# --- everything together -------------------------------------------------------------------


@dataclass
class Review:
    """What the synth says about a new output, against what was applied."""

    base: str = ""
    """What the output was compared with, in words."""
    binding: bool = False
    """True against an apply record; False against a previous dist/ that may never have been applied."""
    conflicts: list[Any] = field(default_factory=list)
    """apply_rules.Conflict: changes the API server would refuse."""
    refusals: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    plan: PrunePlan | None = None
    confirmed: set[str] = field(default_factory=set)
    """The --confirm tokens some refusal used."""

    def add(self, findings: Iterable[Finding], confirmations: Collection[str], binding: bool | None = None) -> None:
        binding = self.binding if binding is None else binding
        for finding in findings:
            if finding.refuse and finding.confirm in confirmations:
                self.confirmed.add(finding.confirm or "")
                self.warnings.append(
                    Finding(f"confirmed (--confirm {finding.confirm}): {finding.text}", finding.procedure, refuse=False)
                )
            elif finding.refuse and binding:
                self.refusals.append(finding)
            elif finding.refuse:
                self.warnings.append(Finding(finding.text, finding.procedure, finding.confirm, refuse=False))
            else:
                self.warnings.append(finding)


def transition_findings(
    old_objects: Sequence[Mapping[str, Any]],
    new_objects: Sequence[Mapping[str, Any]],
    config: StackConfig,
    changed_secrets: Sequence[str] = (),
) -> list[Finding]:
    """Every hazard of going from `old_objects` (what was applied) to `new_objects`."""
    old, new = facts(old_objects), facts(new_objects)
    found: list[Finding] = []
    # A server that moves brings its own password: that change is part of the move.
    moved = {POSTGRES_PASSWORD: old.postgres != new.postgres, REDIS_PASSWORD: old.redis != new.redis}
    changed_secrets = [k for k in changed_secrets if not (old.known and new.known and moved.get(k))]
    if old.known and new.known:
        old_claims = {o["metadata"]["name"] for o in old_objects if o["kind"] == "PersistentVolumeClaim"}
        found += location_findings(old, new, config, old_claims)
        found += version_findings(old, new)
        found += identity_findings(old, new)
        found += autoscaling_findings(old, new)
        found += image_findings(old, new, config)
    found += secret_findings(changed_secrets, config)
    generated = f"{config.release}-secrets"
    found += existing_secret_findings(secret_name(old_objects), secret_name(new_objects), generated)
    return found


def review(
    config: StackConfig,
    new_objects: Sequence[Mapping[str, Any]],
    *,
    record: Record | None,
    others: Sequence[Record] = (),
    previous: Sequence[Mapping[str, Any]] = (),
    previous_name: str = "dist/",
    secret_values: Mapping[str, str] | None = None,
    confirmations: Collection[str] = (),
) -> Review:
    """Judge `new_objects` against the apply record (binding), else against the previous
    output (only warnings: it may never have been applied)."""
    from app.apply_rules import apply_conflicts
    from app.state import secret_values as decoded

    values = dict(secret_values or {})
    generated = f"{config.release}-secrets"
    result = Review()
    changed: list[str] = []
    if record is not None:
        result.base = f"the stack make apply applied ({record.path}, {record.applied_at})"
        result.binding = True
        base: Sequence[Mapping[str, Any]] = record.objects
        changed = record.changed_secrets(generated, values)
        result.plan = prune_plan(record.objects, new_objects)
    elif previous:
        result.base = f"the previous {previous_name}"
        base = previous
        old_secret = next((o for o in previous if o["kind"] == "Secret" and o["metadata"]["name"] == generated), None)
        if old_secret is not None:
            before = decoded(old_secret)
            changed = sorted(k for k, v in values.items() if k in before and before[k] != v)
    else:
        base = []
    if base:
        result.conflicts = apply_conflicts(base, new_objects)
        result.add(transition_findings(base, new_objects, config, changed), confirmations)
    # Other stacks' records are binding whatever this stack's base: they are in the cluster.
    result.add(stack_findings(config, new_objects, record, others), confirmations, binding=True)
    return result
