"""Shared fixtures: synthesize the stack in-process into temporary folders."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import main
from app.applier import Kubectl, Outcome, apply
from app.capacity import pod_specs
from app.secrets_store import ALL_KEYS
from tests.fake_kubectl import FakeCluster

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_DIR / "config" / "minikube.yaml"

# Fixed, recognisable values so the snapshot is stable and leaks are easy to find.
TEST_SECRETS: dict[str, str] = {
    "postgres-password": "pg-test-secret-7f3a9c",
    "redis-password": "redis-test-secret-41d0e8",
    "sentry-secret-key": "sentry-key-test-secret-9b27c4d1e0",
    "admin-password": "admin-test-secret-55aa",
}


# Synths never write an apply record, and the tests that apply name their own state folder:
# by default, an empty one, so that no test sees the records of a developer's `make apply`.
EMPTY_STATE_DIR = tempfile.mkdtemp(prefix="sentry-test-state-")


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("SENTRY_K8S_")]:
        del os.environ[key]
    os.environ["SENTRY_K8S_STATE_DIR"] = EMPTY_STATE_DIR
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def secret_env(secrets: Mapping[str, str]) -> dict[str, str]:
    by_key = {k.key: k for k in ALL_KEYS}
    return {by_key[name].env_var: value for name, value in secrets.items()}


# The C parser when PyYAML has it (about ten times faster); the same results.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PARSED: dict[Path, tuple[tuple[tuple[str, int, int], ...], bytes]] = {}


@dataclass
class Dist:
    """A synthesized output folder and its parsed objects."""

    path: Path

    @property
    def files(self) -> list[Path]:
        return sorted(self.path.glob("*.yaml"))

    @property
    def objects(self) -> list[dict]:
        """The parsed objects, in file order. Parsed once per content of the folder:
        tests ask for them hundreds of times, and parsing is most of their cost."""
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in self.files)
        cached = _PARSED.get(self.path)
        if cached is None or cached[0] != stamp:
            docs: list[dict] = []
            for file in self.files:
                docs += [d for d in yaml.load_all(file.read_text(encoding="utf-8"), Loader=_LOADER) if d]
            cached = _PARSED[self.path] = (stamp, pickle.dumps(docs))
        # A fresh copy each time (unpickling is the quickest deep copy): a test that
        # edits an object must not change it for the next.
        return pickle.loads(cached[1])

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
        return matches[0]

    def text(self) -> str:
        return "".join(f.read_text(encoding="utf-8") for f in self.files)


def synth(
    tmp: Path,
    values: str | None = None,
    secrets: Mapping[str, str] | None = TEST_SECRETS,
    extra_env: Mapping[str, str] | None = None,
    outdir: Path | None = None,
    state: Path | None = None,
    args: Sequence[str] = (),
) -> tuple[int, Dist]:
    """Run main.py's synthesis in-process; `values` is YAML text (None: config/minikube.yaml).
    `state`: the state folder with the apply records (default: an empty one)."""
    config = DEFAULT_CONFIG
    if values is not None:
        config = tmp / "values.yaml"
        config.write_text(values, encoding="utf-8")
    out = outdir or tmp / "dist"
    env = {
        "SENTRY_K8S_SECRETS_FILE": str(tmp / "secrets.yaml"),
        **secret_env(secrets or {}),
        **({"SENTRY_K8S_STATE_DIR": str(state)} if state else {}),
        **(extra_env or {}),
    }
    with environment(env):
        code = main.main(["--config", str(config), "--outdir", str(out), "--quiet", *args])
    return code, Dist(out)


def make_apply(dist: Path, state: Path, cluster: FakeCluster, **options: Any) -> Outcome:
    """`make apply` of `dist` against the model cluster (tests/fake_kubectl.py)."""
    return apply(dist, state, Kubectl(runner=cluster.run, echo=lambda _line: None), **options)


@pytest.fixture(scope="session")
def default_dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    code, dist = synth(tmp_path_factory.mktemp("default"))
    assert code == 0
    return dist


@pytest.fixture(scope="session")
def synth_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Dist]:
    """Synthesize a configuration (values text, secrets) at most once per session, for
    tests that only read the output. Tests about synthesis itself (stability, secrets
    files, bad input) call synth() for a fresh run."""
    made: dict[tuple[str | None, tuple[tuple[str, str], ...]], Dist] = {}

    def get(values: str | None = None, secrets: Mapping[str, str] = TEST_SECRETS) -> Dist:
        key = (values, tuple(sorted(secrets.items())))
        if key not in made:
            code, dist = synth(tmp_path_factory.mktemp("once"), values, secrets=secrets)
            assert code == 0, f"synthesis failed for {values!r}"
            made[key] = dist
        return made[key]

    return get


def all_containers(obj: dict) -> list[dict]:
    found: list[dict] = []
    for spec in pod_specs(obj):
        found += spec.get("initContainers", []) + spec.get("containers", [])
    return found


def find_container(obj: dict, name: str) -> dict:
    matches = [c for c in all_containers(obj) if c["name"] == name]
    assert len(matches) == 1, f"{obj['metadata']['name']} has {len(matches)} containers named {name}"
    return matches[0]


def manifest_env(container: dict, secrets: Mapping[str, str] = TEST_SECRETS, **overrides: str) -> dict[str, str]:
    """The environment a container gets from its manifest, with secretKeyRefs resolved
    from the test secrets; `overrides` replace values that must point at test servers."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
    env.update(overrides)
    return env


# Every optional object on: Ingress with TLS, GitHub and GitLab login (the plugin
# image), GitHub App, mail, offsite backup copy, the restore Job.
FULL_VALUES = """
sentry:
  url_prefix: https://sentry.example.com
  web:
    service_type: ClusterIP
    ingress: {enabled: true, host: sentry.example.com, class_name: nginx, tls_secret: sentry-tls}
  github: {login_enabled: true, client_id: Iv1.abc, app_id: "12345", app_name: sentry-example}
  gitlab: {login_enabled: true, application_id: gitlab-app-id}
  smtp: {host: smtp.example.com, port: 587, user: sentry@example.com, use_tls: true}
postgres:
  backup:
    offsite:
      enabled: true
      bucket: sentry-backups
      access_key_id: AKIAEXAMPLE
      endpoint_url: https://minio.example.com:9000
    restore: {enabled: true}
"""
FULL_SECRETS = {
    **TEST_SECRETS,
    "github-client-secret": "gh-client-test-secret",
    "github-private-key": "gh-key-test-secret",
    "github-webhook-secret": "gh-hook-test-secret",
    "gitlab-application-secret": "gl-test-secret",
    "smtp-password": "smtp-test-secret",
    "s3-secret-access-key": "s3-test-secret",
}


@pytest.fixture(scope="session")
def full_dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    code, dist = synth(tmp_path_factory.mktemp("full"), FULL_VALUES, secrets=FULL_SECRETS)
    assert code == 0
    return dist


@pytest.fixture(params=["default", "full"])
def any_dist(request: pytest.FixtureRequest, default_dist: Dist, full_dist: Dist) -> Dist:
    return default_dist if request.param == "default" else full_dist


# --- the real Sentry tier (tests/test_real_sentry.py, tests/real_sentry.py) ----------------
# Its slow start (installing, migrating, starting three stacks) runs in the background, so
# that it overlaps the rest of the suite instead of following it.
# - One process (plain `pytest`): the tier starts as soon as its tests are collected, and
#   they run last (with -x, only when they are reached).
# - Several (`make test`: pytest-xdist, --dist loadfile --no-loadscope-reorder): its file is
#   collected first, so the first worker gets it at once and starts the tier with its first
#   test, while the other workers run the rest; only that worker ever starts it.
REAL_SENTRY_MARKER = "real_sentry"
REAL_SENTRY_SUMMARY = "real_sentry_summary"
_WORKER_SUMMARIES: list[list[str]] = []


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    first = _is_xdist_worker(config)
    items.sort(key=lambda item: (item.get_closest_marker(REAL_SENTRY_MARKER) is None) == first)


def pytest_collection_finish(session: pytest.Session) -> None:
    # With -x (tools/mutants.py runs that way) a run usually ends long before the tier's tests:
    # the tier then starts only when they are reached, instead of loading the machine for nothing.
    option = session.config.option
    if option.collectonly or option.maxfail == 1 or _is_xdist_worker(session.config):
        return
    if any(item.get_closest_marker(REAL_SENTRY_MARKER) for item in session.items):
        _start_real_sentry(session.config)


def _start_real_sentry(config: pytest.Config) -> None:
    from tests import real_sentry

    real_sentry.start_in_background(config._tmp_path_factory.getbasetemp() / "real-sentry")


@pytest.fixture(autouse=True)
def _real_sentry_started(request: pytest.FixtureRequest) -> None:
    """Under xdist: the worker that runs the tier's tests starts it with the first of them."""
    if request.node.get_closest_marker(REAL_SENTRY_MARKER) is not None:
        _start_real_sentry(request.config)  # idempotent


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import real_sentry

    real_sentry.close_tier()
    if _is_xdist_worker(session.config):
        session.config.workeroutput[REAL_SENTRY_SUMMARY] = real_sentry.summary_lines()  # type: ignore[attr-defined]


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: keep what a worker's tier reported, for the terminal summary."""
    lines = getattr(node, "workeroutput", {}).get(REAL_SENTRY_SUMMARY)
    if lines:
        _WORKER_SUMMARIES.append(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests import real_sentry

    for lines in [real_sentry.summary_lines(), *_WORKER_SUMMARIES]:
        for line in lines:
            terminalreporter.write_line(line)
