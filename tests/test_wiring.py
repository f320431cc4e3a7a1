"""Wiring: the objects in dist/ point at each other correctly, checked as properties.

No expectation is copied from the output, and no object is looked up by name. Each
property is derived from the output itself (a host variable names a Service, the
Service selects pods, the pods serve the port), from the settings file's source (what
sentry.conf.py reads) or from the configuration (a changed value arrives). They run on three
configurations: the default one, the one with every option on, and a "tuned" one
where every name, credential source and number these properties follow differs from
the defaults (another release and namespace, an existing Secret, other replicas and
schedules), so a value that is hard-coded instead of wired shows up.

Small explicit tables (EXTERNAL_HOSTS, TOOL_VARIABLES, PATH_EXEMPTIONS, ...) hold
the only exceptions, each with its reason.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import yaml

from app.capacity import pod_specs
from app.config import StackConfig
from app.secrets_store import required_keys
from app.values import load_config, parse_config
from constructs.props import Resources
from constructs.quantities import parse_cpu, parse_memory
from constructs.workload import WAIT_RESOURCES
from tests.conftest import DEFAULT_CONFIG, FULL_VALUES, PROJECT_DIR, Dist, synth
from tests.test_sentry_conf import CONTRACT

SENTRY_CONF_PY = PROJECT_DIR / "constructs" / "sentry_files" / "sentry.conf.py"

# Every name, credential source and number the properties follow, changed from its
# default: another release and namespace (so every object and host name differs), an
# existing Secret, another database and role, other replicas and schedules, and the
# optional features (mail, logins, offsite copy, restore) on.
TUNED_VALUES = """
namespace: errors
release: acme
capacity: {target: none}
secrets: {existing_secret: acme-sentry-credentials}
sentry:
  url_prefix: https://errors.acme.example
  web: {replicas: 3, service_type: ClusterIP}
  worker:
    replicas: 5
    concurrency: 3
    resources: {requests: {cpu: 150m, memory: 200Mi}, limits: {cpu: 400m, memory: 2Gi}}
  cleanup: {schedule: "17 5 * * 1", days: 30}
  filestore: {access_mode: ReadWriteMany}
  smtp: {host: smtp.acme.example, port: 2525, user: mailer, use_tls: true}
  github: {login_enabled: true, client_id: Iv1.tuned, app_id: "777", app_name: acme-sentry}
  gitlab: {login_enabled: true, application_id: gl-tuned, base_domain: gitlab.acme.example}
redis:
  resources: {requests: {cpu: 60m, memory: 80Mi}, limits: {cpu: 300m, memory: 300Mi}}
postgres:
  database: events
  user: sentry_app
  resources: {requests: {cpu: 200m, memory: 300Mi}, limits: {cpu: "1", memory: 1Gi}}
  backup:
    schedule: "45 1 * * *"
    offsite: {enabled: true, bucket: acme-backups, access_key_id: AKIATUNED, endpoint_url: "https://s3.acme.example"}
    restore: {enabled: true}
"""


@dataclass(frozen=True)
class Case:
    """One synthesized configuration and the model it was made from."""

    name: str
    dist: Dist
    config: StackConfig

    @property
    def objects(self) -> list[dict]:
        return self.dist.objects


@pytest.fixture(scope="session")
def tuned_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    code, dist = synth(tmp_path_factory.mktemp("tuned"), TUNED_VALUES, secrets={})
    assert code == 0
    return Case("tuned", dist, parse_config(yaml.safe_load(TUNED_VALUES)))


@pytest.fixture(params=["default", "full", "tuned"])
def case(request: pytest.FixtureRequest, default_dist: Dist, full_dist: Dist, tuned_case: Case) -> Case:
    if request.param == "default":
        return Case("default", default_dist, load_config(DEFAULT_CONFIG))
    if request.param == "full":
        return Case("full", full_dist, parse_config(yaml.safe_load(FULL_VALUES)))
    return tuned_case


# --- reading the output -----------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """A pod template: the object it belongs to, its labels and its spec."""

    owner: dict
    labels: dict[str, str]
    spec: dict

    @property
    def where(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}"

    @property
    def namespace(self) -> str:
        return self.owner["metadata"].get("namespace", "default")

    @property
    def containers(self) -> list[dict]:
        return self.spec.get("initContainers", []) + self.spec.get("containers", [])


def pods(objects: list[dict]) -> list[Pod]:
    found = []
    for obj in objects:
        for spec in pod_specs(obj):
            template = (
                obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]
            )
            found.append(Pod(obj, template.get("metadata", {}).get("labels", {}), spec))
    return found


def env_items(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def env_values(container: dict) -> dict[str, str]:
    """The plain (non-secret) values of a container's environment."""
    return {name: item["value"] for name, item in env_items(container).items() if "value" in item}


def secret_ref(item: dict | None) -> tuple[str, str] | None:
    if item is None or "secretKeyRef" not in item.get("valueFrom", {}):
        return None
    ref = item["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def image_name(image: str) -> str:
    """`registry/path/name:tag@digest` -> `name`."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


# The Sentry image and the image that adds the login plugins on top of it
# (images/sentry-auth); containers of either run Sentry with sentry.conf.py.
SENTRY_IMAGES = {"sentry", "sentry-auth"}
# What each Sentry pod's Sentry container is called; every one must honour the contract.
SENTRY_ROLES = {"web", "worker", "cron", "migrate", "cleanup"}


def sentry_containers(case: Case) -> list[tuple[Pod, dict]]:
    found = [(pod, c) for pod in pods(case.objects) for c in pod.containers if image_name(c["image"]) in SENTRY_IMAGES]
    roles = {c["name"] for _, c in found}
    # Guards against a vacuous pass: the properties below must see all five.
    expected = SENTRY_ROLES if case.config.sentry.cleanup.enabled else SENTRY_ROLES - {"cleanup"}
    assert roles == expected, f"Sentry containers found: {sorted(roles)}"
    return found


def find_pod_by_component(case: Case, kind: str, component: str) -> dict:
    matches = [
        o
        for o in case.objects
        if o["kind"] == kind and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(matches) == 1, f"{len(matches)} {kind} objects of component {component}"
    return matches[0]


# --- hosts --------------------------------------------------------------------------

# What a host variable connects to follows from its name: the kind of server, and the
# variables that go with it (port, role, password, database). The server side: the
# variables through which each image takes its credentials.
SERVER_IMAGES = {"postgresql": "postgres", "redis": "redis"}
DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379}  # what libpq and sentry.conf.py assume
SERVER_CREDENTIALS = {
    # the postgres image's entrypoint creates this role, password and database
    "postgresql": {"user": "POSTGRES_USER", "password": "POSTGRES_PASSWORD", "database": "POSTGRES_DB"},
    # constructs/scripts/redis-server.sh writes it into requirepass
    "redis": {"password": "REDIS_PASSWORD"},
}


def host_kind(variable: str) -> str | None:
    """The kind of server a *HOST variable names, from its name alone."""
    if "REDIS" in variable:
        return "redis"
    if "POSTGRES" in variable or variable.startswith("PG") or "_DB_" in variable:
        return "postgresql"
    return None


def companions(host_variable: str) -> dict[str, str]:
    """The variables that go with a host variable: SENTRY_REDIS_HOST -> SENTRY_REDIS_PORT,
    PGHOST -> PGPORT/PGUSER/..., SENTRY_POSTGRES_HOST -> SENTRY_POSTGRES_PORT and the
    SENTRY_DB_* names sentry.conf.py reads with it."""
    if host_variable == "PGHOST":
        return {"port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "database": "PGDATABASE"}
    if host_variable == "REDIS_HOST":  # redis-cli's clients: the password in REDISCLI_AUTH
        return {"port": "REDIS_PORT", "password": "REDISCLI_AUTH"}
    prefix = host_variable.removesuffix("HOST")
    names = {"port": prefix + "PORT", "password": prefix + "PASSWORD"}
    if host_kind(host_variable) == "postgresql":
        db = prefix.replace("POSTGRES_", "DB_")
        names |= {"user": db + "USER", "password": db + "PASSWORD", "database": db + "NAME"}
    return names


# Hosts outside the cluster: not a Service, but exactly the configured value.
EXTERNAL_HOSTS = {
    "SENTRY_STATSD_HOST": (
        "the stack's own statsd exporter (a Service, checked in test_cluster_features.py)",
        lambda config: f"{config.release}-metrics",
    ),
    "SENTRY_EMAIL_HOST": (
        "the SMTP relay is the operator's, outside the cluster",
        lambda config: config.sentry.smtp.host,
    ),
}
# Host variables that are listen addresses, not servers to reach. (None is set today.)
LISTEN_ADDRESSES = {"SENTRY_WEB_HOST": "uWSGI's bind address in the web container"}


@dataclass(frozen=True)
class Connection:
    """A container's environment names a server: which, and what serves it."""

    pod: Pod
    container: dict
    variable: str
    kind: str
    service: dict
    server_pod: Pod
    server: dict


def _service_for_host(case: Case, host: str, namespace: str) -> dict:
    """The Service a cluster DNS name resolves to from `namespace`."""
    parts = host.split(".")
    name, ns = parts[0], parts[1] if len(parts) > 1 else namespace
    assert len(parts) in (1, 2, 3, 5), f"{host!r} is not a Service name"
    if len(parts) >= 3:
        assert parts[2:] in (["svc"], ["svc", "cluster", "local"]), f"{host!r} is not a Service name"
    services = [
        o
        for o in case.objects
        if o["kind"] == "Service" and (o["metadata"]["name"], o["metadata"]["namespace"]) == (name, ns)
    ]
    assert len(services) == 1, f"no Service {name} in namespace {ns} for host {host!r}"
    return services[0]


def _serving(case: Case, service: dict, port: int, kind: str) -> tuple[Pod, dict]:
    """The pods the Service selects, and the container that serves `port` there."""
    selector = service["spec"].get("selector") or {}
    assert selector, f"Service {service['metadata']['name']} selects no pods"
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == port] or [None]
    assert service_port, f"Service {service['metadata']['name']} has no port {port}"
    target = service_port.get("targetPort", port)
    selected = [
        pod
        for pod in pods(case.objects)
        if pod.owner["kind"] in {"Deployment", "StatefulSet"}
        and pod.namespace == service["metadata"]["namespace"]
        and selector.items() <= pod.labels.items()
    ]
    assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} workloads"
    (pod,) = selected
    serving = [
        c
        for c in pod.spec["containers"]
        if any(target in (p["containerPort"], p.get("name")) for p in c.get("ports", []))
    ]
    assert len(serving) == 1, f"no container of {pod.where} listens on {target}"
    (server,) = serving
    assert image_name(server["image"]) == SERVER_IMAGES[kind], (
        f"{service['metadata']['name']}:{port} reaches {server['image']} in {pod.where}, not {kind}"
    )
    return pod, server


def connections(case: Case) -> list[Connection]:
    """Every in-cluster server a container's environment names, resolved and checked."""
    found = []
    for pod in pods(case.objects):
        for container in pod.containers:
            values = env_values(container)
            for variable, item in env_items(container).items():
                if not variable.endswith("HOST") or variable in LISTEN_ADDRESSES:
                    continue
                where = f"{pod.where} {container['name']} {variable}"
                if variable in EXTERNAL_HOSTS:
                    _, configured = EXTERNAL_HOSTS[variable]
                    assert item.get("value") == configured(case.config), where
                    continue
                kind = host_kind(variable)
                assert kind, f"{where}: a host of unknown kind; classify it in host_kind() or EXTERNAL_HOSTS"
                assert "value" in item, f"{where}: a host must be a plain value"
                port = int(values.get(companions(variable)["port"], DEFAULT_PORTS[kind]))
                service = _service_for_host(case, item["value"], pod.namespace)
                server_pod, server = _serving(case, service, port, kind)
                found.append(Connection(pod, container, variable, kind, service, server_pod, server))
    return found


def test_every_host_is_a_service_selecting_the_server_of_its_kind(case: Case) -> None:
    found = connections(case)
    # Every Sentry container reaches both servers; the waits and backups reach PostgreSQL.
    for pod, container in sentry_containers(case):
        kinds = {c.kind for c in found if (c.pod.where, c.container["name"]) == (pod.where, container["name"])}
        assert kinds == {"postgresql", "redis"}, f"{container['name']} reaches {sorted(kinds)}"


def test_every_server_a_host_names_is_a_single_instance(case: Case) -> None:
    """Neither PostgreSQL nor Redis is set up for replication here: a second pod behind
    the same Service would be a second, separate database that clients hop between."""
    for conn in connections(case):
        owner = conn.server_pod.owner
        assert owner["spec"].get("replicas", 1) == 1, f"{conn.server_pod.where} has {owner['spec']['replicas']}"


def test_clients_use_the_servers_own_credentials(case: Case) -> None:
    """A client logs in as the role, with the password and into a database the server was given."""
    for conn in connections(case):
        names = companions(conn.variable)
        client, client_values = env_items(conn.container), env_values(conn.container)
        server, server_values = env_items(conn.server), env_values(conn.server)
        creds = SERVER_CREDENTIALS[conn.kind]
        where = f"{conn.pod.where} {conn.container['name']} ({conn.variable})"
        server_password = secret_ref(server.get(creds["password"]))
        assert server_password, f"{conn.server_pod.where}: the server takes no password from a Secret"
        assert secret_ref(client.get(names["password"])) == server_password, f"{where}: password"
        if "user" in creds:
            assert client_values.get(names["user"]) == server_values[creds["user"]], f"{where}: role"
            # The maintenance database `postgres` always exists; it is where the backup
            # and restore start. Everything else must use the database the server created.
            database = client_values.get(names["database"])
            assert database in {server_values[creds["database"]], "postgres"}, f"{where}: database {database}"
            if conn.variable.startswith("SENTRY_"):
                assert database == server_values[creds["database"]], f"{where}: Sentry's database"


def test_waits_check_the_server_and_database_their_pod_will_use(case: Case) -> None:
    """The init containers that wait (for PostgreSQL, for migrations) and the Job that marks
    migrations done talk to the very database the pod's Sentry container uses."""
    checked = 0
    for pod in pods(case.objects):
        sentry = [c for c in pod.containers if image_name(c["image"]) in SENTRY_IMAGES]
        if not sentry:
            continue
        (main,) = sentry
        uses = env_values(main)
        expected = (
            uses["SENTRY_POSTGRES_HOST"],
            uses.get("SENTRY_POSTGRES_PORT", "5432"),
            uses["SENTRY_DB_USER"],
            uses["SENTRY_DB_NAME"],
            secret_ref(env_items(main).get("SENTRY_DB_PASSWORD")),
        )
        clients = [c for c in pod.containers if "PGHOST" in env_items(c)]
        if pod.owner["kind"] == "Deployment":
            assert clients and clients[0] is pod.spec["initContainers"][0], f"{pod.where} starts without a wait"
        for client in clients:
            values = env_values(client)
            actual = (
                values["PGHOST"],
                values.get("PGPORT", "5432"),
                values.get("PGUSER"),
                values.get("PGDATABASE"),
                secret_ref(env_items(client).get("PGPASSWORD")),
            )
            assert actual == expected, f"{pod.where} {client['name']} checks {actual}, Sentry uses {expected}"
            checked += 1
    assert checked >= 4  # web, worker, cron, migrations each have at least one


def test_pods_wait_for_the_version_the_migration_job_marks(case: Case) -> None:
    versions: dict[str, set[str]] = {"waits": set(), "marks": set(), "images": set()}
    for pod in pods(case.objects):
        for container in pod.containers:
            version = env_values(container).get("SENTRY_MIGRATION_VERSION")
            if version is None:
                continue
            script = " ".join(container.get("command", []))
            versions["marks" if "INSERT" in script.upper() else "waits"].add(version)
        versions["images"] |= {c["image"] for c in pod.containers if image_name(c["image"]) in SENTRY_IMAGES}
    assert versions["waits"] and versions["marks"]
    assert versions["waits"] == versions["marks"] == versions["images"]


# --- NetworkPolicies ----------------------------------------------------------------------


def _selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a pod's labels."""
    selector = selector or {}
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict, pod: Pod, policy_namespace: str) -> bool:
    """A policy peer against a pod. An ipBlock never counts: pod addresses are not known
    here, and the stack's ipBlocks exclude the cluster's private ranges on purpose."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": pod.namespace}
        if not _selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector"), pod.labels)


def _port_matches(ports: list[dict] | None, port: int, names: set[str]) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == "TCP" and p.get("port", port) in {port, *names} for p in ports)


def allowed(case: Case, direction: str, pod: Pod, peer: Pod, port: int, names: set[str]) -> bool:
    """Whether the NetworkPolicies in dist/ let `pod` send to (Egress) or receive from
    (Ingress) `peer` on TCP `port`: allowed when no policy of that type selects the
    pod, otherwise when a rule of one of them matches the peer and the port."""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    policies = [
        p
        for p in case.dist.of_kind("NetworkPolicy")
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"].get("podSelector"), pod.labels)
    ]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(x, peer, policy["metadata"]["namespace"]) for x in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, names):
                return True
    return False


def test_network_policies_allow_every_connection_the_environment_names(case: Case) -> None:
    """The policies follow the wiring: each client may reach the server its environment
    names, on the port the server listens on (a Service's port is translated to the
    pod's before policies apply)."""
    for conn in connections(case):
        ports = conn.server.get("ports", [])
        (port,) = {p["containerPort"] for p in ports if p["containerPort"] in _service_targets(conn)}
        names = {p["name"] for p in ports if "name" in p}
        where = f"{conn.pod.where} {conn.container['name']} -> {conn.server_pod.where}:{port}"
        assert allowed(case, "Egress", conn.pod, conn.server_pod, port, names), f"{where}: egress denied"
        assert allowed(case, "Ingress", conn.server_pod, conn.pod, port, names), f"{where}: ingress denied"


def _service_targets(conn: Connection) -> set[int | str]:
    return {p.get("targetPort", p["port"]) for p in conn.service["spec"]["ports"]}


def test_the_policy_evaluation_denies_what_it_should(default_dist: Dist) -> None:
    # The check above must be able to fail: Redis may not open connections to
    # PostgreSQL, and nothing may reach PostgreSQL on Redis's port.
    case = Case("default", default_dist, load_config(DEFAULT_CONFIG))
    (postgres,) = [
        p
        for p in pods(case.objects)
        if image_name(p.spec["containers"][0]["image"]) == "postgres" and p.owner["kind"] == "StatefulSet"
    ]
    (redis,) = [p for p in pods(case.objects) if image_name(p.spec["containers"][0]["image"]) == "redis"]
    (web,) = [p for p in pods(case.objects) if p.labels.get("app.kubernetes.io/component") == "web"]
    assert allowed(case, "Egress", web, postgres, 5432, set())
    assert not allowed(case, "Egress", redis, postgres, 5432, set())
    assert not allowed(case, "Ingress", postgres, redis, 5432, set())
    assert not allowed(case, "Egress", web, postgres, 6379, set())


# --- secrets ------------------------------------------------------------------------


def secret_references(obj: dict) -> Iterator[tuple[str, str | None, bool]]:
    """(Secret name, key or None for the whole Secret, optional) for every reference."""
    for spec in pod_specs(obj):
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"], bool(ref.get("optional"))
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    yield source["secretRef"]["name"], None, bool(source["secretRef"].get("optional"))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                keys = [i["key"] for i in volume["secret"].get("items", [])] or [None]
                for key in keys:
                    yield volume["secret"]["secretName"], key, bool(volume["secret"].get("optional"))


def test_every_secret_reference_names_a_key_that_exists_or_is_documented(case: Case) -> None:
    existing = case.config.secrets.existing_secret
    contract = {k.key for k in required_keys(case.config)}
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in case.dist.of_kind("Secret")}
    referenced: set[str] = set()
    for obj in case.objects:
        for name, key, optional in secret_references(obj):
            where = f"{obj['kind']}/{obj['metadata']['name']} -> {name}/{key}"
            assert not optional, f"{where}: an optional reference hides a missing key"
            assert key is not None, f"{where}: whole-Secret references bypass the key contract"
            referenced.add(key)
            if existing:
                assert name == existing, where
                assert key in contract, f"{where}: not in the documented keys for existing_secret"
            else:
                secret = secrets.get((obj["metadata"]["namespace"], name))
                assert secret, f"{where}: no such Secret in dist/"
                assert key in {**secret.get("data", {}), **secret.get("stringData", {})}, f"{where}: no such key"
    if existing:
        assert not secrets, "with existing_secret, dist/ must hold no Secret"
    else:
        (secret,) = secrets.values()
        assert set(secret.get("data", {})) | set(secret.get("stringData", {})) == contract
    # Both ways: a key the contract lists but nothing reads is a reference that was dropped.
    assert referenced == contract


# --- the settings contract ------------------------------------------------------------


@dataclass
class SettingsReads:
    """What a settings file reads from the environment."""

    read: set[str]
    required: set[str]
    # variable -> the variables that make it required when they are set (non-empty)
    required_if: dict[str, set[str]]


def _fails(node: ast.AST, failing: set[str]) -> bool:
    """Whether a statement list raises or calls a function that always raises."""
    for child in ast.walk(node):
        if isinstance(child, ast.Raise):
            return True
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id in failing:
            return True
    return False


# Calls that normalise a text without judging it: `if not value.strip(): fail` is an
# emptiness check, while `if not value.isdigit(): fail` only rejects a bad value.
_NORMALISING = {"strip", "lstrip", "rstrip", "lower", "upper"}


def _is_emptiness_test(test: ast.AST) -> bool:
    """`not x`, `not x.strip()`, `not x.strip().lower()`, ..."""
    if not (isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)):
        return False
    operand = test.operand
    while isinstance(operand, ast.Call) and isinstance(operand.func, ast.Attribute) and not operand.args:
        if operand.func.attr not in _NORMALISING:
            return False
        operand = operand.func.value
    return isinstance(operand, ast.Name)


def _fails_when_empty(node: ast.If, failing: set[str]) -> bool:
    return _is_emptiness_test(node.test) and _fails(ast.Module(body=node.body, type_ignores=[]), failing)


def _environ_read(call: ast.AST) -> tuple[str, bool] | None:
    """A direct read: os.environ[...] (no default), os.environ.get/os.getenv/env(...)."""
    if isinstance(call, ast.Subscript) and ast.unparse(call.value) == "os.environ":
        return (ast.unparse(call.slice), False)
    if isinstance(call, ast.Call) and ast.unparse(call.func) in {"os.environ.get", "os.getenv", "env"}:
        return (ast.unparse(call.args[0]), len(call.args) > 1 or bool(call.keywords)) if call.args else None
    return None


def _reads_name(node: ast.AST, name: str, readers: dict[str, bool]) -> bool:
    """Whether `node` reads the environment variable whose name is in the variable `name`."""
    direct = _environ_read(node)
    if direct:
        return direct[0] == name
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in readers
        and bool(node.args)
        and ast.unparse(node.args[0]) == name
    )


def analyse_settings(source: str) -> SettingsReads:
    """Read a settings file's source: which environment variables it reads, which it
    requires (a read through a helper that fails when the value is empty, a
    `os.environ[...]` without default, or a read followed by `if not value: fail`),
    and which are required only when another variable is set."""
    tree = ast.parse(source)
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    # Functions that always raise (Sentry's "Configuration error" helpers).
    failing = {n for n, f in functions.items() if isinstance(f.body[-1], ast.Raise)}
    # Reader helpers: they pass their first parameter to an environment read or another
    # reader; "requiring" ones fail when the value they read is empty.
    readers: dict[str, bool] = {}
    changed = True
    while changed:
        changed = False
        for name, func in functions.items():
            if name in readers or not func.args.args:
                continue
            param = func.args.args[0].arg
            passes = any(_reads_name(n, param, readers) for n in ast.walk(func))
            if passes:
                requires = any(isinstance(n, ast.If) and _fails_when_empty(n, failing) for n in ast.walk(func))
                readers[name] = requires
                changed = True

    result = SettingsReads(set(), set(), {})
    # names bound to the value of a variable, to follow `x = _secret("X"); if not x: fail`
    bound: dict[str, str] = {}

    def reads_in(node: ast.AST) -> list[tuple[str, bool]]:
        """(variable, required) for every read in an expression."""
        found = []
        for n in ast.walk(node):
            direct = _environ_read(n)
            if direct and direct[0].startswith(("'", '"')):
                found.append((ast.literal_eval(direct[0]), not direct[1] and isinstance(n, ast.Subscript)))
            elif (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name)
                and n.func.id in readers
                and n.args
                and isinstance(n.args[0], ast.Constant)
            ):
                found.append((n.args[0].value, readers[n.func.id]))
        return found

    def conditions(test: ast.AST) -> set[str]:
        return {bound[n.id] for n in ast.walk(test) if isinstance(n, ast.Name) and n.id in bound} | {
            v for v, _ in reads_in(test)
        }

    def visit(body: list[ast.stmt], when: set[str]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef):
                continue
            if isinstance(stmt, ast.If):
                inner = conditions(stmt.test)
                for variable, required in reads_in(stmt.test):
                    result.read.add(variable)
                    _require(variable, required, when)
                negated = isinstance(stmt.test, ast.UnaryOp) and isinstance(stmt.test.op, ast.Not)
                if _fails_when_empty(stmt, failing):
                    # `if not x: fail` makes what x holds required (under the enclosing ifs).
                    for variable in inner:
                        _require(variable, True, when)
                visit(stmt.body, when | (set() if negated else inner))
                visit(stmt.orelse, when)
                continue
            for variable, required in reads_in(stmt):
                result.read.add(variable)
                _require(variable, required, when)
            if isinstance(stmt, ast.Assign):
                values = [v for v, _ in reads_in(stmt.value)]
                for target in stmt.targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name) and len(values) == 1:
                            bound[name.id] = values[0]

    def _require(variable: str, required: bool, when: set[str]) -> None:
        if not required:
            return
        if when:
            result.required_if.setdefault(variable, set()).update(when)
        else:
            result.required.add(variable)

    visit(tree.body, set())
    return result


def test_the_settings_analysis_finds_reads_requirements_and_conditions() -> None:
    source = textwrap.dedent(
        """
        import os
        from sentry.conf.server import env

        def _fail(message):
            raise RuntimeError(message)

        def _text(name, default=""):
            return (env(name) or "").strip() or default

        def _required(name):
            value = _text(name)
            if not value:
                _fail(name)
            return value

        HOST = _required("A_HOST")
        key = env("A_KEY")
        if not key:
            _fail("A_KEY")
        WHERE = os.environ["A_PATH"]
        MAYBE = os.environ.get("A_MAYBE", "x")
        login = _text("A_LOGIN")
        if login:
            SECRET = _text("A_SECRET")
            if not SECRET:
                _fail("A_SECRET")
        """
    )
    reads = analyse_settings(source)
    assert reads.read == {"A_HOST", "A_KEY", "A_PATH", "A_MAYBE", "A_LOGIN", "A_SECRET"}
    assert reads.required == {"A_HOST", "A_KEY", "A_PATH"}
    assert reads.required_if == {"A_SECRET": {"A_LOGIN"}}


@pytest.fixture(scope="module")
def settings() -> SettingsReads:
    return analyse_settings(SENTRY_CONF_PY.read_text(encoding="utf-8"))


def test_the_analysis_sees_every_variable_the_settings_file_documents(settings: SettingsReads) -> None:
    # test_sentry_conf.py's CONTRACT is the documented list; the analysis must find it all,
    # or the contract checks below would miss a variable.
    assert settings.read == set(CONTRACT)
    assert settings.required  # the file does require some (SENTRY_SECRET_KEY, the hosts)


def _provided(container: dict) -> dict[str, bool]:
    """Variable -> whether it has a non-empty value (a secretKeyRef counts as one)."""
    return {name: bool(item.get("value")) or "valueFrom" in item for name, item in env_items(container).items()}


def test_every_sentry_container_provides_what_the_settings_require(case: Case, settings: SettingsReads) -> None:
    for pod, container in sentry_containers(case):
        provided = {name for name, non_empty in _provided(container).items() if non_empty}
        where = f"{pod.where} {container['name']}"
        assert settings.required <= provided, f"{where} lacks {sorted(settings.required - provided)}"
        for variable, triggers in settings.required_if.items():
            if triggers & provided:
                assert variable in provided, f"{where} sets {sorted(triggers & provided)} but not {variable}"


def test_sentry_containers_share_one_environment(case: Case) -> None:
    """Web, worker, cron and cleanup run the same settings; the migration adds to them."""
    environments = {c["name"]: env_items(c) for _, c in sentry_containers(case)}
    web = environments.pop("web")
    migrate = environments.pop("migrate")
    for name, environment in environments.items():
        assert environment == web, f"{name}'s environment differs from web's"
    assert web.items() <= migrate.items(), "the migration must see the settings the other pods see"


# Variables that programs other than the container's own script read.
TOOL_VARIABLES = {
    "SENTRY_CONF": "the sentry CLI looks for sentry.conf.py and config.yml there (the image sets it too)",
    "PGHOST": "libpq (psql, pg_isready, pg_dump)",
    "PGPORT": "libpq",
    "PGUSER": "libpq",
    "PGPASSWORD": "libpq",
    "PGDATABASE": "libpq",
    "PGDATA": "the postgres image's entrypoint and the server",
    "POSTGRES_USER": "the postgres image's entrypoint (initdb)",
    "POSTGRES_PASSWORD": "the postgres image's entrypoint (initdb)",
    "POSTGRES_DB": "the postgres image's entrypoint (initdb)",
    "REDISCLI_AUTH": "redis-cli, in the probes",
    "AWS_ACCESS_KEY_ID": "the aws CLI",
    "AWS_SECRET_ACCESS_KEY": "the aws CLI",
    "AWS_DEFAULT_REGION": "the aws CLI",
    "AWS_EC2_METADATA_DISABLED": "the aws CLI",
    "HOME": "the aws CLI keeps its cache there",
}


def _script_reads(container: dict, variable: str) -> bool:
    text = "\n".join(container.get("command", []) + container.get("args", []))
    shell = re.search(r"\$\{?" + re.escape(variable) + r"\b", text)
    python = re.search(r"environ(\.get\(|\[)\s*['\"]" + re.escape(variable) + "['\"]", text)
    return bool(shell or python)


def test_every_variable_a_container_sets_is_read_by_something(case: Case, settings: SettingsReads) -> None:
    """A typo in a variable name shows up: a name nothing reads."""
    for pod in pods(case.objects):
        for container in pod.containers:
            runs_sentry = image_name(container["image"]) in SENTRY_IMAGES
            for variable in env_items(container):
                read = (
                    variable in TOOL_VARIABLES
                    or _script_reads(container, variable)
                    or (runs_sentry and variable in settings.read)
                )
                assert read, f"{pod.where} {container['name']} sets {variable}, which nothing reads"


# --- paths and volumes ---------------------------------------------------------------

# Containers that name a path they deliberately do not mount.
PATH_EXEMPTIONS = {
    ("cron", "SENTRY_FILESTORE_DIR"): "celery beat only schedules tasks; the workers that run them mount the filestore",
    ("migrate", "SENTRY_FILESTORE_DIR"): "`sentry upgrade` and createuser write no files",
}
# Directories a program writes to: their mount must be writable. None: in every
# container that names it; otherwise only in the containers listed.
WRITTEN: dict[str, set[str] | None] = {
    "SENTRY_FILESTORE_DIR": None,
    "PGDATA": None,
    "REDIS_DATA_DIR": None,
    "HOME": None,
    "BACKUP_DIR": {"backup"},  # the dump is written there
}
# ... and directories some containers must not be able to change.
READ_ONLY = {"BACKUP_DIR": {"restore", "offsite"}}  # a restore or an upload never alters a dump


def _mount_for(container: dict, path: str) -> dict | None:
    """The deepest mount at or above `path`."""
    candidates = [
        m
        for m in container.get("volumeMounts", [])
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    return max(candidates, key=lambda m: len(m["mountPath"]), default=None)


def test_every_path_in_the_environment_is_on_a_mount_of_that_container(case: Case) -> None:
    checked = set()
    for pod in pods(case.objects):
        for container in pod.containers:
            paths = {n: v for n, v in env_values(container).items() if v.startswith("/")}
            if "workingDir" in container:
                paths["workingDir"] = container["workingDir"]
            for variable, path in paths.items():
                if (container["name"], variable) in PATH_EXEMPTIONS:
                    continue
                where = f"{pod.where} {container['name']} {variable}={path}"
                mount = _mount_for(container, path)
                assert mount, f"{where}: not on any volume mount"
                writers = WRITTEN.get(variable, set())
                if writers is None or container["name"] in writers:
                    assert not mount.get("readOnly"), f"{where}: written, but mounted read-only"
                if container["name"] in READ_ONLY.get(variable, set()):
                    assert mount.get("readOnly"), f"{where}: must be mounted read-only"
                checked.add(variable)
    assert {"SENTRY_CONF", "SENTRY_FILESTORE_DIR", "PGDATA", "BACKUP_DIR"} <= checked


def test_every_mount_is_a_volume_of_its_pod_backed_by_an_object_in_dist(case: Case) -> None:
    by_kind: dict[str, set[tuple[str, str]]] = {}
    for obj in case.objects:
        by_kind.setdefault(obj["kind"], set()).add((obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
    existing_secret = case.config.secrets.existing_secret
    for pod in pods(case.objects):
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        templates = {t["metadata"]["name"] for t in pod.owner["spec"].get("volumeClaimTemplates", [])}
        for container in pod.containers:
            for mount in container.get("volumeMounts", []):
                where = f"{pod.where} {container['name']} {mount['mountPath']}"
                assert mount["name"] in volumes or mount["name"] in templates, f"{where}: no volume {mount['name']}"
        for volume in volumes.values():
            where = f"{pod.where} volume {volume['name']}"
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert (pod.namespace, claim) in by_kind.get("PersistentVolumeClaim", set()), f"{where}: {claim}"
            if "configMap" in volume:
                assert (pod.namespace, volume["configMap"]["name"]) in by_kind.get("ConfigMap", set()), where
            if "secret" in volume and volume["secret"]["secretName"] != existing_secret:
                assert (pod.namespace, volume["secret"]["secretName"]) in by_kind.get("Secret", set()), where


def test_sentry_conf_points_at_the_mounted_settings(case: Case) -> None:
    config_maps = {o["metadata"]["name"]: o for o in case.dist.of_kind("ConfigMap")}
    for pod, container in sentry_containers(case):
        conf = env_values(container)["SENTRY_CONF"]
        mount = _mount_for(container, conf)
        assert mount and mount["mountPath"] == conf, f"{pod.where} {container['name']}: {conf} is not a mount"
        (volume,) = [v for v in pod.spec["volumes"] if v["name"] == mount["name"]]
        data = config_maps[volume["configMap"]["name"]]["data"]
        assert data["sentry.conf.py"] == SENTRY_CONF_PY.read_text(encoding="utf-8")
        assert "config.yml" in data


# Which configured resources each container runs with, by container name. The small
# helper containers (waits, the migration marker) share WAIT_RESOURCES.
RESOURCE_SOURCES = {
    "web": "sentry.web.resources",
    "worker": "sentry.worker.resources",
    "cron": "sentry.cron.resources",
    "migrate": "sentry.migrations.resources",
    "cleanup": "sentry.cleanup.resources",
    "postgresql": "postgres.resources",
    "redis": "redis.resources",
    "backup": "postgres.backup.resources",
    "offsite": "postgres.backup.offsite.resources",
    "restore": "postgres.backup.restore.resources",
}
HELPERS = {"wait-for-postgres", "wait-for-redis", "wait-for-migrations"}


def _amounts(resources: dict) -> tuple[int, int, int, int]:
    return (
        parse_cpu(resources["requests"]["cpu"]),
        parse_memory(resources["requests"]["memory"]),
        parse_cpu(resources["limits"]["cpu"]),
        parse_memory(resources["limits"]["memory"]),
    )


def _plain(resources: Resources) -> dict[str, dict[str, str]]:
    return {
        "limits": {"cpu": resources.limits.cpu, "memory": resources.limits.memory},
        "requests": {"cpu": resources.requests.cpu, "memory": resources.requests.memory},
    }


def test_every_container_runs_with_its_configured_resources(case: Case) -> None:
    for pod in pods(case.objects):
        for container in pod.containers:
            name = container["name"]
            assert name in RESOURCE_SOURCES or name in HELPERS, f"{pod.where} {name}: which resources apply?"
            configured = WAIT_RESOURCES if name in HELPERS else _getter(RESOURCE_SOURCES[name])(case.config)
            if name in HELPERS:
                assert _amounts(container["resources"]) == _amounts(_plain(configured)), f"{pod.where} {name}"
            else:
                # Exactly as configured: the quantities are written as given, never rounded.
                assert container["resources"] == _plain(configured), f"{pod.where} {name}"


# --- the configuration arrives --------------------------------------------------------


def test_the_tuned_configuration_differs_where_the_properties_look(tuned_case: Case) -> None:
    # The properties below compare the output with the configuration; with default
    # values they could pass on a hard-coded default. The tuned case rules that out.
    default, tuned = load_config(DEFAULT_CONFIG), tuned_case.config
    for path in (
        "release",
        "namespace",
        "sentry.web.replicas",
        "sentry.worker.replicas",
        "sentry.worker.concurrency",
        "sentry.cleanup.schedule",
        "sentry.cleanup.days",
        "postgres.backup.schedule",
        "postgres.database",
        "postgres.user",
        "postgres.resources",
        "redis.resources",
        "sentry.worker.resources",
    ):
        get = _getter(path)
        assert get(default) != get(tuned), path


def _getter(path: str) -> Callable[[StackConfig], object]:
    def get(config: StackConfig) -> object:
        value: object = config
        for part in path.split("."):
            value = getattr(value, part)
        return value

    return get


def test_replicas_follow_the_configuration(case: Case) -> None:
    sentry = case.config.sentry
    for component, replicas in (("web", sentry.web.replicas), ("worker", sentry.worker.replicas)):
        deployment = find_pod_by_component(case, "Deployment", component)
        assert deployment["spec"]["replicas"] == replicas, component
        assert deployment["metadata"]["namespace"] == case.config.namespace


def test_worker_concurrency_follows_the_configuration(case: Case) -> None:
    worker = find_pod_by_component(case, "Deployment", "worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[command.index("--concurrency") + 1] == str(case.config.sentry.worker.concurrency)


def test_schedules_follow_the_configuration(case: Case) -> None:
    cleanup = find_pod_by_component(case, "CronJob", "cleanup")
    assert cleanup["spec"]["schedule"] == case.config.sentry.cleanup.schedule
    (container,) = cleanup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][-2:] == ["--days", str(case.config.sentry.cleanup.days)]
    backup = find_pod_by_component(case, "CronJob", "backup")
    assert backup["spec"]["schedule"] == case.config.postgres.backup.schedule


def test_hosts_follow_the_release_name(case: Case) -> None:
    # The names are derived, never written out: another release gets its own Services.
    for conn in connections(case):
        assert conn.service["metadata"]["name"].startswith(case.config.release + "-")
        assert conn.service["metadata"]["namespace"] == case.config.namespace
