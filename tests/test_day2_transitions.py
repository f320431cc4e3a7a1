"""Day 2 as a user lives it: changes combined, one after another, judged against the cluster.

Issue 19 tried 32 realistic transitions by hand, each synthesized over the previous output
with the cluster modelled as everything applied so far, and found 24 unsafe. This test
generates such transitions (the issue's own, then seeded combinations of two or three
moves at once), runs each as a user would (`make synth`, then `make apply` against
tests/fake_kubectl.py: the cluster is the union of everything applied and not deleted),
and judges the outcome with its own reading of the manifests and a model of where the
data is, independent of app/day2.py:

- **applied**: kubectl accepted every object; nothing that left dist/ still runs (only
  volumes, the Namespace, and Secrets still read may stay, and the synth named each);
  Sentry's database, queue and files are where the data is; no PostgreSQL or Redis starts
  on a volume it cannot read; every server's password is the one the Secret now holds; a
  changed secret rolled every pod that reads it; no autoscaler fights a replica count, and
  no Deployment dipped to one pod; node ports are unique across the cluster; a url_prefix
  that misses the Ingress was warned about.
- **refused**: exit 2 and dist/ untouched, every refusal names a procedure that is a heading
  of docs/operations.md, and following it works: the test takes the steps the procedure
  takes to the model (a volume deleted, the data copied, a password set in the server) and
  the flag or value the refusal names, synthesizes again, and that must be applied and
  pass every check above.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.applier import ApplyError
from app.procedures import PROCEDURES
from app.summary import load_objects
from tests.conftest import PROJECT_DIR, TEST_SECRETS, make_apply, synth
from tests.fake_kubectl import FakeCluster

OPERATIONS = (PROJECT_DIR / "docs" / "operations.md").read_text(encoding="utf-8")
HEADINGS = {h.strip() for h in re.findall(r"^#+ (.+)$", OPERATIONS, flags=re.M)}

# --- values and moves -----------------------------------------------------------------------

BASE = {"capacity": {"target": "none"}, "sentry": {"filestore": {"access_mode": "ReadWriteMany"}}}
# The buckets' keys too: a move to a bucket needs them (the synth asks for the ones it reads).
SECRETS = {**TEST_SECRETS, "filestore-s3-secret-access-key": "files-s3-key", "gcs-credentials": "{}"}


def _get(values: dict, path: str, default: Any = None) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _set(values: dict, path: str, value: Any) -> dict:
    out = copy.deepcopy(values)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def _unset(values: dict, path: str) -> dict:
    out = copy.deepcopy(values)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node.get(part, {})
    node.pop(last, None)
    return out


@dataclass(frozen=True)
class Move:
    """One change a user makes: to the values, or to the secrets file (None: the file is lost)."""

    name: str
    values: Callable[[dict], dict] = lambda v: v
    secrets: Callable[[dict], dict | None] | None = None
    when: Callable[[dict], bool] = lambda v: True


def _setter(*pairs: tuple[str, Any]) -> Callable[[dict], dict]:
    def change(values: dict) -> dict:
        for path, value in pairs:
            values = _unset(values, path) if value is _UNSET else _set(values, path, value)
        return values

    return change


_UNSET = object()
INGRESS = {"enabled": True, "host": "sentry.example.com", "tls_secret": "sentry-tls"}


def _in_cluster(part: str) -> Callable[[dict], bool]:
    return lambda v: not _get(v, f"{part}.external.host")


MOVES = [
    Move("cleanup off", _setter(("sentry.cleanup.enabled", False))),
    Move("cleanup on", _setter(("sentry.cleanup.enabled", True))),
    Move(
        "ingress on",
        _setter(
            ("sentry.web.ingress", INGRESS),
            ("sentry.web.service_type", "ClusterIP"),
            ("sentry.url_prefix", "https://sentry.example.com"),
        ),
    ),
    Move(
        "ingress off",
        _setter(
            ("sentry.web.ingress.enabled", False), ("sentry.web.service_type", "NodePort"), ("sentry.url_prefix", "")
        ),
    ),
    Move(
        "ingress host changed, url_prefix kept",
        _setter(("sentry.web.ingress.host", "sentry.example.org")),
        when=lambda v: bool(_get(v, "sentry.web.ingress.enabled")),
    ),
    Move(
        "TLS removed, url_prefix kept",
        _setter(("sentry.web.ingress.tls_secret", None)),
        when=lambda v: bool(_get(v, "sentry.web.ingress.enabled")),
    ),
    Move("metrics on", _setter(("sentry.metrics", {"enabled": True, "service_monitor": True}))),
    Move("metrics off", _setter(("sentry.metrics.enabled", False), ("sentry.metrics.service_monitor", False))),
    Move("backups off", _setter(("postgres.backup.enabled", False))),
    Move("backups on", _setter(("postgres.backup.enabled", True))),
    Move("network policies off", _setter(("network.policies", False))),
    Move("network policies on", _setter(("network.policies", True))),
    Move(
        "autoscaling on",
        _setter(("sentry.web.autoscaling.enabled", True), ("sentry.worker.autoscaling.enabled", True)),
    ),
    Move(
        "autoscaling off",
        _setter(("sentry.web.autoscaling.enabled", False), ("sentry.worker.autoscaling.enabled", False)),
    ),
    Move("existing_secret on", _setter(("secrets.existing_secret", "my-secrets"))),
    Move("existing_secret off", _setter(("secrets.existing_secret", None))),
    Move(
        "PostgreSQL to a managed server",
        _setter(("postgres.external", {"host": "10.0.8.5", "sslmode": "require"})),
        when=_in_cluster("postgres"),
    ),
    Move(
        "PostgreSQL back into the cluster",
        _setter(("postgres.external", _UNSET)),
        when=lambda v: bool(_get(v, "postgres.external.host")),
    ),
    Move("Redis to a managed server", _setter(("redis.external", {"host": "10.0.9.5"})), when=_in_cluster("redis")),
    Move(
        "Redis back into the cluster",
        _setter(("redis.external", _UNSET)),
        when=lambda v: bool(_get(v, "redis.external.host")),
    ),
    Move(
        "files to S3",
        _setter(
            ("sentry.filestore.backend", "s3"),
            ("sentry.filestore.s3", {"bucket": "files-a", "access_key_id": "AKIAFILES"}),
        ),
    ),
    Move("files to GCS", _setter(("sentry.filestore.backend", "gcs"), ("sentry.filestore.gcs", {"bucket": "files-b"}))),
    Move("files to the volume", _setter(("sentry.filestore.backend", "filesystem"))),
    Move("PostgreSQL 15", _setter(("postgres.image", "postgres:15.8")), when=_in_cluster("postgres")),
    Move("PostgreSQL on alpine", _setter(("postgres.image", "postgres:9.6.24-alpine")), when=_in_cluster("postgres")),
    Move("PostgreSQL patch release", _setter(("postgres.image", "postgres:9.6.25")), when=_in_cluster("postgres")),
    Move(
        "PostgreSQL on bullseye", _setter(("postgres.image", "postgres:9.6.24-bullseye")), when=_in_cluster("postgres")
    ),
    Move("Redis 7.2", _setter(("redis.image", "redis:7.2.4-alpine")), when=_in_cluster("redis")),
    Move("Redis back to 6.2", _setter(("redis.image", "redis:6.2.14-alpine")), when=_in_cluster("redis")),
    Move("Redis patch release", _setter(("redis.image", "redis:6.2.15-alpine")), when=_in_cluster("redis")),
    Move("postgres.user renamed", _setter(("postgres.user", "sentry_app"))),
    Move("postgres.database renamed", _setter(("postgres.database", "events"))),
    Move("PostgreSQL password rotated", secrets=lambda s: {**s, "postgres-password": s["postgres-password"] + "-r"}),
    Move("Redis password rotated", secrets=lambda s: {**s, "redis-password": s["redis-password"] + "-r"}),
    Move("Sentry secret key rotated", secrets=lambda s: {**s, "sentry-secret-key": s["sentry-secret-key"] + "-r"}),
    Move("secrets file lost", secrets=lambda s: None),
    Move("backup volume on another class", _setter(("postgres.backup.storage.storage_class", "fast"))),
    Move("database volume on another class", _setter(("postgres.storage.storage_class", "fast"))),
    Move("database volume smaller", _setter(("postgres.storage.size", "4Gi"))),
    Move(
        "restore on",
        _setter(("postgres.backup.restore.enabled", True)),
        when=lambda v: _get(v, "postgres.backup.enabled", True),
    ),
    Move("restore off", _setter(("postgres.backup.restore.enabled", False))),
    Move("node port changed", _setter(("sentry.web.node_port", 30007))),
    Move("namespace renamed", _setter(("namespace", "sentry2"))),
    Move("release renamed", _setter(("release", "sentry2"))),
]
BY_NAME = {move.name: move for move in MOVES}
# Moves that open a new stack: the walk does them last (the model follows one stack).
RENAMES = {"namespace renamed", "release renamed"}

# Issue 19's transitions, in its order (item numbers), each from a fresh default stack that
# the earlier moves set up.
ISSUE = [
    ("1", ["PostgreSQL password rotated"]),
    ("1", ["secrets file lost"]),
    ("2", ["PostgreSQL to a managed server"]),
    ("2", ["PostgreSQL to a managed server"], ["PostgreSQL back into the cluster"]),
    ("3", ["cleanup off"]),
    ("3", ["ingress on"], ["ingress off"]),
    ("3", ["metrics on"], ["metrics off"]),
    ("3", ["backups off"]),
    ("3", ["network policies off"]),
    ("3", ["autoscaling on"], ["autoscaling off"]),
    ("3", ["existing_secret on"]),
    ("4", ["PostgreSQL 15"]),
    ("4", ["PostgreSQL on alpine"]),
    ("4", ["PostgreSQL patch release"]),
    ("4", ["PostgreSQL on bullseye"]),
    ("5", ["Redis 7.2"], ["Redis back to 6.2"]),
    ("5", ["Redis to a managed server"]),
    ("6", ["files to S3"]),
    ("6", ["files to GCS"]),
    ("7", ["namespace renamed"]),
    ("7", ["release renamed"]),
    ("8", ["postgres.user renamed"]),
    ("8", ["postgres.database renamed"]),
    ("9", ["ingress on"], ["ingress host changed, url_prefix kept"]),
    ("9", ["ingress on"], ["TLS removed, url_prefix kept"]),
    ("10", ["autoscaling on"], ["restore on"], ["restore off"]),
    ("11", ["backup volume on another class"]),
    ("11", ["database volume on another class"]),
    ("11", ["database volume smaller"]),
    ("-", ["Redis password rotated"]),
    ("-", ["Sentry secret key rotated"]),
    ("-", ["autoscaling on", "metrics on", "cleanup off"], ["autoscaling off", "metrics off", "network policies off"]),
    ("-", ["files to S3", "PostgreSQL to a managed server"], ["Redis to a managed server", "backups off"]),
]


# --- the model: where the data is, and what each server can read -----------------------------


@dataclass
class Truth:
    """What the cluster's data really is, which manifests do not say."""

    db_at: str = ""
    queue_at: str = ""
    files_at: str = ""
    pg_formats: dict[str, tuple[str, str]] = field(default_factory=dict)
    """data claim -> (major version, C library) of the server that initialised it."""
    redis_formats: dict[str, tuple[int, int]] = field(default_factory=dict)
    server_passwords: dict[str, str] = field(default_factory=dict)
    """location -> the password the server has (PostgreSQL: its role's; Redis: requirepass)."""
    pg_roles: dict[str, tuple[str, str]] = field(default_factory=dict)
    """location -> (role, database) the server has."""


def _env(obj: dict, container: str) -> dict[str, str]:
    spec = obj["spec"]["template"]["spec"]
    found = next(c for c in spec["containers"] if c["name"] == container)
    return {e["name"]: e.get("value", "") for e in found.get("env", [])}


def _web(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-web"))


def _server(objects: list[dict], service: str, namespace: str) -> dict | None:
    """The StatefulSet behind a Service of this output, if the host is one."""
    svc = next((o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == service), None)
    if svc is None:
        return None
    selector = svc["spec"]["selector"]
    return next(
        (
            o
            for o in objects
            if o["kind"] == "StatefulSet"
            and all(o["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
        ),
        None,
    )


def _claim(statefulset: dict) -> str:
    volumes = statefulset["spec"]["template"]["spec"].get("volumes", [])
    return next(v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v)


def locations(objects: list[dict]) -> dict[str, Any]:
    """Where Sentry's pods look for their data, read from the manifests."""
    web = _web(objects)
    namespace = web["metadata"]["namespace"]
    env = _env(web, "web")
    pg = _server(objects, env["SENTRY_POSTGRES_HOST"], namespace)
    redis = _server(objects, env["SENTRY_REDIS_HOST"], namespace)
    files = env.get("SENTRY_S3_BUCKET") and f"s3:{env['SENTRY_S3_BUCKET']}"
    files = files or (env.get("SENTRY_GCS_BUCKET") and f"gcs:{env['SENTRY_GCS_BUCKET']}")
    if not files:
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in web["spec"]["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        ]
        files = f"pvc:{namespace}/{claims[0]}"
    return {
        "db": f"pvc:{namespace}/{_claim(pg)}" if pg else f"ext:{env['SENTRY_POSTGRES_HOST']}",
        "pg_server": pg,
        "role": (env["SENTRY_DB_USER"], env["SENTRY_DB_NAME"]),
        "queue": f"pvc:{namespace}/{_claim(redis)}" if redis else f"ext:{env['SENTRY_REDIS_HOST']}",
        "redis_server": redis,
        "files": files,
        "url_prefix": env.get("SENTRY_URL_PREFIX", ""),
    }


def _image_version(image: str) -> tuple[tuple[int, ...], str]:
    tag = image.rsplit(":", 1)[1]
    numbers, _, variant = tag.partition("-")
    return tuple(int(n) for n in numbers.split(".")), variant


def pg_format(image: str) -> tuple[str, str]:
    numbers, variant = _image_version(image)
    major = ".".join(map(str, numbers[:2] if numbers[0] < 10 else numbers[:1]))
    return major, "musl" if variant.startswith("alpine") else "glibc"


# --- one stack over time ----------------------------------------------------------------------


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cluster = FakeCluster(tmp / "cluster.json")
        self.state = tmp / "state"
        self.dist = tmp / "dist"
        self.values: dict = copy.deepcopy(BASE)
        self.secrets: dict | None = dict(SECRETS)
        self.truth: dict[str, Truth] = {}
        self.journal: list[str] = []

    # the user's side --------------------------------------------------------------------------

    @property
    def stack(self) -> str:
        return f"{self.values.get('namespace', 'sentry')}/{self.values.get('release', 'sentry')}"

    def secrets_file(self, values: dict) -> Path:
        return self.tmp / f"secrets-{values.get('namespace', 'sentry')}-{values.get('release', 'sentry')}.yaml"

    def write_secrets(self, values: dict, secrets: dict | None) -> None:
        path = self.secrets_file(values)
        if secrets is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(yaml.safe_dump(secrets))

    def synth(self, values: dict, args: list[str]) -> tuple[int, str]:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code, _ = synth(
                self.tmp,
                yaml.safe_dump(values),
                secrets={},
                outdir=self.dist,
                state=self.state,
                extra_env={"SENTRY_K8S_SECRETS_FILE": str(self.secrets_file(values))},
                args=args,
            )
        return code, err.getvalue()

    def objects(self) -> list[dict]:
        return load_objects(self.dist)

    def secret_values(self, objects: list[dict]) -> dict[str, str]:
        """The values the pods read: the generated Secret, or the user's one in the cluster."""
        from app.state import secret_values

        web = _web(objects)
        names = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for c in web["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
            if "valueFrom" in e
        }
        (name,) = names
        namespace = web["metadata"]["namespace"]
        live = self.cluster.objects.get(f"Secret|{namespace}|{name}")
        source = next((o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name), live)
        return secret_values(source) if source else {}


def _dist_files(dist: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(dist.glob("*"))} if dist.exists() else {}


def _refusals(err: str) -> list[str]:
    """The refusals: one per listed line, or the error itself when it is a single one."""
    listed = [line.strip()[2:] for line in err.splitlines() if line.strip().startswith("- ")]
    return listed or [line[len("error: ") :] for line in err.splitlines() if line.startswith("error: ")]


# --- the judge -------------------------------------------------------------------------------


class Violation(AssertionError):
    pass


def judge_applied(
    world: World, values: dict, before: dict[str, dict], err: str, secrets_before: dict[str, str], mode: str
) -> None:
    """Everything the issue asks of an applied change, read from the model cluster."""
    objects = world.objects()
    cluster = world.cluster.objects
    in_dist = {f"{o['kind']}|{o['metadata'].get('namespace', '')}|{o['metadata']['name']}" for o in objects}
    namespace = _web(objects)["metadata"]["namespace"]
    release = _web(objects)["metadata"]["labels"]["app.kubernetes.io/instance"]
    where = locations(objects)
    truth = world.truth.setdefault(f"{namespace}/{release}", Truth())
    values_now = world.secret_values(objects)

    # Node ports are the cluster's: fake_kubectl refuses a taken one, so the apply failed then.
    if mode == "restore":
        return
    # 1. Nothing that left dist/ runs on, and what stays was named by the synth.
    for key, obj in cluster.items():
        kind, ns, name = key.split("|")
        mine = obj["metadata"].get("labels", {}).get("app.kubernetes.io/instance") in (release, None)
        if ns not in ("", namespace) or key in in_dist or not mine:
            continue  # another stack's (a second stack beside this one keeps running)
        if kind == "Secret" and name == _get(values, "secrets.existing_secret"):
            continue  # the user's own Secret
        if kind not in ("PersistentVolumeClaim", "Namespace"):
            raise Violation(f"{kind} {ns}/{name} left dist/ but still runs")
        if name not in err:
            raise Violation(f"{kind} {ns}/{name} was kept without a word from the synth")
    # 2. Sentry's data is where the data is.
    for part, at in (("db", "db_at"), ("queue", "queue_at"), ("files", "files_at")):
        if not getattr(truth, at):
            setattr(truth, at, where[part])
        elif getattr(truth, at) != where[part]:
            raise Violation(f"Sentry now looks for its {part} at {where[part]}, but it is at {getattr(truth, at)}")
    # 3. No server starts on a volume it cannot read.
    if where["pg_server"] is not None:
        claim, image = (
            _claim(where["pg_server"]),
            where["pg_server"]["spec"]["template"]["spec"]["containers"][0]["image"],
        )
        fmt = truth.pg_formats.setdefault(f"{namespace}/{claim}", pg_format(image))
        if fmt != pg_format(image):
            raise Violation(f"PostgreSQL {image} starts on {claim}, written by {fmt}")
    if where["redis_server"] is not None:
        claim, image = (
            _claim(where["redis_server"]),
            where["redis_server"]["spec"]["template"]["spec"]["containers"][0]["image"],
        )
        version = _image_version(image)[0][:2]
        seen = truth.redis_formats.setdefault(f"{namespace}/{claim}", version)
        if version < seen:
            raise Violation(f"Redis {image} starts on {claim}, written by Redis {seen}")
        truth.redis_formats[f"{namespace}/{claim}"] = max(seen, version)
    # 4. Every server has the password the Secret now holds, and the role and database.
    pg_key = where["db"]
    truth.server_passwords.setdefault(pg_key, values_now.get("postgres-password", ""))
    if truth.server_passwords[pg_key] != values_now.get("postgres-password"):
        raise Violation(f"the Secret's postgres-password is not the one PostgreSQL at {pg_key} has: locked out")
    roles = truth.pg_roles.setdefault(pg_key, where["role"])
    if roles != where["role"]:
        raise Violation(f"Sentry logs in as {where['role']}, the server at {pg_key} has {roles}")
    if where["queue"].startswith("ext:"):
        truth.server_passwords.setdefault(where["queue"], values_now.get("redis-password", ""))
        if truth.server_passwords[where["queue"]] != values_now.get("redis-password"):
            raise Violation("the Secret's redis-password is not the managed Redis's")
    # 5. A changed secret value rolled every pod that reads it.
    changed = {k for k, v in values_now.items() if secrets_before.get(k, v) != v}
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet") or obj["metadata"]["name"].endswith("-postgresql"):
            continue
        keys = {
            e["valueFrom"]["secretKeyRef"]["key"]
            for c in [
                *obj["spec"]["template"]["spec"].get("initContainers", []),
                *obj["spec"]["template"]["spec"]["containers"],
            ]
            for e in c.get("env", [])
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        }
        old = before.get(f"{obj['kind']}|{namespace}|{obj['metadata']['name']}")
        if keys & changed and old is not None and old["spec"]["template"] == obj["spec"]["template"]:
            raise Violation(
                f"{obj['metadata']['name']} reads {sorted(keys & changed)}, which changed, but does not roll"
            )
    # 6. No autoscaler fights a replica count; no Deployment dipped to one pod.
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]["name"]
            deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == target)
            if "replicas" in deployment["spec"]:
                raise Violation(f"{target} sets replicas while an autoscaler owns them")
        if obj["kind"] == "Deployment":
            live = world.cluster.live_replicas(namespace, obj["metadata"]["name"])
            existed = f"Deployment|{namespace}|{obj['metadata']['name']}" in before
            if "replicas" not in obj["spec"] and live is not None and live < 2 and existed:
                raise Violation(f"{obj['metadata']['name']} dropped to {live} pod(s)")
    # 7. What goes ahead with a hazard is named: the words a user re-applying reads.
    named = {
        "redis-password": "redis-password" in changed and where["queue"].startswith("pvc:"),
        "sentry-secret-key": "sentry-secret-key" in changed,
        "autoscaling takes over": any(
            "replicas" not in o["spec"]
            and "replicas" in before.get(f"Deployment|{namespace}|{o['metadata']['name']}", {}).get("spec", {})
            for o in objects
            if o["kind"] == "Deployment"
        ),
        "REINDEX": _variant_changed(before, where, namespace),
        "registry": _web(objects)["spec"]["template"]["spec"]["containers"][0]["image"].startswith("sentry-k8s/")
        and not _web_image(before, namespace).startswith("sentry-k8s/"),
    }
    for words, hazard in named.items():
        if hazard and words not in err:
            raise Violation(f"went ahead without naming the hazard ({words!r} not in the synth's output)")
    # 8. A url_prefix the Ingress does not serve is named.
    ingress = next((o for o in objects if o["kind"] == "Ingress"), None)
    if ingress is not None and where["url_prefix"]:
        host = ingress["spec"]["rules"][0]["host"]
        scheme = "https" if ingress["spec"].get("tls") else "http"
        if where["url_prefix"] != f"{scheme}://{host}" and "url_prefix" not in err:
            raise Violation(
                f"url_prefix {where['url_prefix']} misses the Ingress ({scheme}://{host}) without a warning"
            )


def _web_image(before: dict[str, dict], namespace: str) -> str:
    web = next((o for k, o in before.items() if k.startswith(f"Deployment|{namespace}|") and k.endswith("-web")), None)
    return web["spec"]["template"]["spec"]["containers"][0]["image"] if web else ""


def _variant_changed(before: dict[str, dict], where: dict, namespace: str) -> bool:
    """The in-cluster PostgreSQL's image changed its operating system but not its C library."""
    server = where["pg_server"]
    old = before.get(f"StatefulSet|{namespace}|{server['metadata']['name']}") if server else None
    if old is None:
        return False
    images = [o["spec"]["template"]["spec"]["containers"][0]["image"] for o in (old, server)]
    variants = [_image_version(i)[1] for i in images]
    return variants[0] != variants[1] and len({pg_format(i) for i in images}) == 1


# --- following a procedure, in the model -------------------------------------------------------


def follow(world: World, values: dict, refusals: list[str], err: str) -> tuple[dict, set[str]]:
    """What the user does after a refusal: the procedure's steps in the model, then the flag or
    value the refusal names. Returns the values and arguments to synthesize with."""
    args: set[str] = set()
    applied = world.objects()
    old = locations(applied)
    namespace = _web(applied)["metadata"]["namespace"]
    truth = world.truth.setdefault(world.stack, Truth())
    for line in refusals:
        names = re.findall(r"“([^”]+)”", line)
        for token in re.findall(r"--confirm ([a-z-]+)", line):
            if token != "new-secrets":  # the way out for a stack never applied; this one was
                args.add(f"--confirm={token}")
        if "--allow-apply-conflicts" in err:
            args.add("--allow-apply-conflicts")
        move = re.search(r"say so in the values: `([\w.]+)\.migrate_from: ([^`]+)`", line)
        if move:
            values = _set(values, f"{move[1]}.migrate_from", move[2])
        port = re.search(r"Choose another sentry\.web\.node_port, e\.g\. (\d+)", line)
        if port:
            values = _set(values, "sentry.web.node_port", int(port[1]))
        for title in names:
            assert title in HEADINGS, f"a refusal names “{title}”, which is no heading of docs/operations.md"
            _procedure(world, title, values, old, namespace, truth, line)
    return values, args


def _procedure(world: World, title: str, values: dict, old: dict, namespace: str, truth: Truth, line: str) -> None:
    """The steps of a procedure that change what the model knows."""
    claim = re.match(r"PersistentVolumeClaim [\w-]+/([\w-]+):", line)
    delete = lambda *targets: world.cluster.run(["kubectl", "-n", namespace, "delete", "--ignore-not-found", *targets])  # noqa: E731
    if title == PROCEDURES["rebuild-postgres"] and old["pg_server"] is not None:
        data = _claim(old["pg_server"])
        delete(f"statefulset.apps/{old['pg_server']['metadata']['name']}", f"persistentvolumeclaim/{data}")
        truth.pg_formats.pop(f"{namespace}/{data}", None)  # a new server initialises it; the restore refills it
        truth.server_passwords.pop(old["db"], None)
    elif title == PROCEDURES["replace-redis"] and old["redis_server"] is not None:
        data = _claim(old["redis_server"])
        delete(f"statefulset.apps/{old['redis_server']['metadata']['name']}", f"persistentvolumeclaim/{data}")
        truth.redis_formats.pop(f"{namespace}/{data}", None)
        truth.queue_at = ""  # drained: wherever Redis is next, the queue is
    elif title == PROCEDURES["move-postgres"]:
        truth.db_at = ""  # backed up and restored into the new server
        if old["pg_server"] is not None:
            truth.pg_formats.pop(f"{namespace}/{_claim(old['pg_server'])}", None)
    elif title == PROCEDURES["move-files-bucket"]:
        truth.files_at = ""
    elif title in (PROCEDURES["move-filestore-volume"], PROCEDURES["move-backups"]) and claim:
        delete(f"persistentvolumeclaim/{claim[1]}")  # copied away first; make apply makes the new one
    elif title == PROCEDURES["rotate-postgres-password"]:
        truth.server_passwords.pop(old["db"], None)  # set in the server: the Secret's next value is right
    elif title == PROCEDURES["rotate-redis-password"]:
        truth.server_passwords.pop(old["queue"], None)
    elif title == PROCEDURES["rename-database"]:
        truth.pg_roles.pop(old["db"], None)
    elif title == PROCEDURES["recover-secrets"]:
        from tools.recover_secrets import recover

        # The Secret the refusal names: the pods' (the generated one, or the user's own).
        read = re.search(r"get secret ([\w-]+) -o json", line)
        live = world.cluster.objects.get(f"Secret|{namespace}|{read[1] if read else ''}")
        assert live is not None, f"the refusal sends the user to a Secret that is not there: {line}"
        recover(yaml.safe_dump(live), world.secrets_file(values))


# --- a walk of transitions ----------------------------------------------------------------------


def step(world: World, moves: list[Move]) -> str:
    """One transition: the moves at once, synthesized and applied, or refused and followed."""
    values = copy.deepcopy(world.values)
    secrets = dict(world.secrets) if world.secrets is not None else None
    for move in moves:
        values = move.values(values)
        if move.secrets is not None and secrets is not None:
            secrets = move.secrets(secrets)
    label = " + ".join(m.name for m in moves)
    if _get(values, "secrets.existing_secret") and world.secrets is not None:
        # The procedure of secrets.existing_secret: the user's Secret, with the servers' values.
        ns = values.get("namespace", "sentry")
        world.cluster.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "my-secrets", "namespace": ns},
                "stringData": world.secrets,
            }
        )
    world.write_secrets(values, secrets)
    dist_before = _dist_files(world.dist)
    cluster_before = world.cluster.objects
    secrets_before = world.secret_values(world.objects()) if world.dist.exists() else {}
    code, err = world.synth(values, [])
    outcome = "applied"
    args: list[str] = []
    # A refusal that stops early (a lost secrets file) may hide the next: a user follows each.
    for _ in range(3):
        if code != 2:
            break
        refusals = _refusals(err)
        assert refusals, f"{label}: exit 2 without a refusal that names what to do:\n{err}"
        assert _dist_files(world.dist) == dist_before, f"{label}: a refusal changed dist/"
        for line in refusals:
            assert "“" in line or "--allow-apply-conflicts" in err, f"{label}: a refusal names no procedure: {line}"
        values, more = follow(world, values, refusals, err)
        args = sorted(set(args) | set(more))
        code, err = world.synth(values, args)
        outcome = "refused, then followed"
    assert code == 0, f"{label}: still refused after following the procedures ({args}):\n{err}"
    if secrets is None and world.secrets_file(values).exists():
        secrets = yaml.safe_load(world.secrets_file(values).read_text())
    restore = bool(_get(values, "postgres.backup.restore.enabled"))
    try:
        make_apply(world.dist, world.state, world.cluster)
    except ApplyError as exc:
        raise Violation(f"{label}: accepted by the synth, refused by the cluster: {exc}") from None
    try:
        judge_applied(world, values, cluster_before, err, secrets_before, "restore" if restore else "all")
    except Violation as exc:
        raise Violation(f"{label} ({outcome}): {exc}\n{err}") from None
    # Values that named a move are taken out again, as the procedure says.
    for part in ("postgres", "redis", "sentry.filestore"):
        values = _unset(values, f"{part}.migrate_from")
    world.values = values
    world.secrets = secrets
    world.journal.append(f"{label}: {outcome}")
    return outcome


def _fresh(tmp: Path) -> World:
    world = World(tmp)
    step(world, [])
    return world


@pytest.mark.parametrize(
    ("item", "steps"),
    [(case[0], case[1:]) for case in ISSUE],
    ids=lambda x: x if isinstance(x, str) else " > ".join(" + ".join(s) for s in x),
)
def test_the_issues_transitions_are_applied_safely_or_refused_with_a_working_procedure(
    tmp_path: Path, item: str, steps: list[list[str]]
) -> None:
    world = _fresh(tmp_path)
    for names in steps:
        step(world, [BY_NAME[n] for n in names])
    assert len(world.journal) == len(steps) + 1


def test_the_issues_refusals_are_refusals(tmp_path: Path) -> None:
    """The hazards the synth must not let through without a procedure, each on its own."""
    must_refuse = [
        "PostgreSQL password rotated",
        "secrets file lost",
        "PostgreSQL to a managed server",
        "PostgreSQL 15",
        "PostgreSQL on alpine",
        "Redis to a managed server",
        "files to S3",
        "postgres.user renamed",
        "postgres.database renamed",
        "backup volume on another class",
    ]
    outcomes = {}
    for name in must_refuse:
        world = _fresh(tmp_path / name.replace(" ", "-").replace(".", ""))
        outcomes[name] = step(world, [BY_NAME[name]])
    assert set(outcomes.values()) == {"refused, then followed"}, outcomes
    world = _fresh(tmp_path / "downgrade")
    step(world, [BY_NAME["Redis 7.2"]])
    assert step(world, [BY_NAME["Redis back to 6.2"]]) == "refused, then followed"
    world = _fresh(tmp_path / "second")
    step(world, [BY_NAME["namespace renamed"]])
    assert world.journal[-1].endswith("refused, then followed")


def _walk(seed: int, length: int) -> list[list[str]]:
    """Combinations of two or three moves at a time, each applicable to where the walk is."""
    rng = random.Random(seed)
    values = copy.deepcopy(BASE)
    walk = []
    for _ in range(length):
        candidates = [m for m in MOVES if m.name not in RENAMES and m.when(values)]
        if _get(values, "postgres.backup.restore.enabled"):
            chosen = [BY_NAME["restore off"], *rng.sample([m for m in candidates if m.name != "restore on"], 1)]
        else:
            chosen = rng.sample(candidates, rng.choice([2, 3]))
        names = [m.name for m in chosen]
        if "restore on" in names and not any(n.startswith("backups") for n in names):
            names = ["restore on"]  # restore mode applies the database only: alone
        elif "restore on" in names:
            names.remove("restore on")
        for name in names:
            values = BY_NAME[name].values(values)
        walk.append(names)
    return walk


@pytest.mark.parametrize("seed", [19, 22, 32])
def test_generated_combinations_are_applied_safely_or_refused_with_a_working_procedure(
    tmp_path: Path, seed: int
) -> None:
    world = _fresh(tmp_path)
    for names in _walk(seed, 10):
        step(world, [BY_NAME[n] for n in names])
    # And after the walk, a rename: a second stack beside this one.
    step(world, [BY_NAME["release renamed"]])
    assert len(world.journal) == 12, world.journal


def test_the_judge_catches_what_the_issue_found(tmp_path: Path) -> None:
    """The judge fails the unsafe outcomes of plain `kubectl apply -f dist/` with the synth
    told to let everything through: it is what would catch a regression."""
    world = _fresh(tmp_path)
    values = BY_NAME["cleanup off"].values(world.values)
    before = world.cluster.objects
    assert world.synth(values, [])[0] == 0
    world.cluster.run(["kubectl", "apply", "-f", str(world.dist)])  # a plain apply: nothing deleted
    with pytest.raises(Violation, match="CronJob sentry/sentry-cleanup left dist/ but still runs"):
        judge_applied(world, values, before, "", world.secret_values(world.objects()), "all")

    world = _fresh(tmp_path / "moved")
    values = BY_NAME["PostgreSQL to a managed server"].values(world.values)
    values = _set(values, "postgres.migrate_from", "in-cluster")  # said, but not done
    code, err = world.synth(values, [])
    assert code == 0
    make_apply(world.dist, world.state, world.cluster)
    with pytest.raises(Violation, match=r"looks for its db at ext:10\.0\.8\.5"):
        judge_applied(world, values, {}, err, {}, "all")


def test_patch_and_minor_bumps_and_features_stay_a_plain_apply(tmp_path: Path) -> None:
    """What is safe must not be refused: a procedure for every change would teach users to
    pass --confirm without reading."""
    plain = [
        ["PostgreSQL patch release"],
        ["Redis patch release"],
        ["Redis 7.2"],  # an upgrade reads the older files
        ["Redis password rotated"],  # in the cluster: Redis restarts with it, its clients roll
        ["Sentry secret key rotated"],
        ["PostgreSQL on bullseye"],  # the same C library: warned (REINDEX), not refused
        ["cleanup off", "metrics on", "network policies off", "autoscaling on"],
        ["existing_secret on"],
        ["node port changed"],
    ]
    for names in plain:
        world = _fresh(tmp_path / "-".join(names).replace(" ", "_").replace(".", ""))
        assert step(world, [BY_NAME[n] for n in names]) == "applied", names
