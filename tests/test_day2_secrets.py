"""Secrets on day 2: a lost secrets file is refused with the way back, a changed password is
applied where it lives or refused with the procedure, and pods roll on the values they read.

The procedures' SQL (tools/postgres_sql.py) runs against a real PostgreSQL, through psql's
stdin as the procedure pipes it through `kubectl exec -i`; the init container's own script
then logs in with the new values.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.state import secret_values
from tests.conftest import PROJECT_DIR, TEST_SECRETS, Dist, find_container, make_apply, manifest_env, synth
from tests.fake_kubectl import FakeCluster
from tests.servers import PostgresServer

ROLL = "checksum/secrets"


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.state, self.dist = tmp, tmp / "state", tmp / "dist"
        self.cluster = FakeCluster(tmp / "cluster.json")
        self.secrets_file = tmp / "secrets.yaml"

    def synth(self, values: str = "", secrets: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> int:
        return synth(self.tmp, values, secrets=secrets, outdir=self.dist, state=self.state, args=args)[0]

    def apply(self) -> None:
        make_apply(self.dist, self.state, self.cluster)

    def templates(self) -> dict[str, dict]:
        return {
            o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("annotations", {})
            for o in Dist(self.dist).objects
            if o["kind"] in ("Deployment", "StatefulSet")
        }


def _generated_stack(tmp: Path) -> Stack:
    """A stack whose passwords were generated into its secrets file, synthesized and applied."""
    stack = Stack(tmp)
    assert stack.synth(secrets={}) == 0
    stack.apply()
    return stack


def test_a_lost_secrets_file_is_refused_with_the_way_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = _generated_stack(tmp_path)
    stored = yaml.safe_load(stack.secrets_file.read_text())
    before = {p.name: p.read_bytes() for p in Dist(stack.dist).files}
    stack.secrets_file.unlink()
    capsys.readouterr()
    assert stack.synth(secrets={}) == 2
    err = capsys.readouterr().err
    assert "postgres-password, redis-password, sentry-secret-key, admin-password are missing" in err
    assert "tools/recover_secrets.py" in err and "Recovering lost secrets" in err and "--confirm new-secrets" in err
    assert not stack.secrets_file.exists(), "nothing generated"
    assert {p.name: p.read_bytes() for p in Dist(stack.dist).files} == before

    # The way back from the cluster: `kubectl get secret -o json`, checked against the record.
    live = stack.cluster.objects["Secret|sentry|sentry-secrets"]
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "tools" / "recover_secrets.py"), "--to", str(stack.secrets_file)],
        input=json.dumps(live),
        env=_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "postgres-password: recovered, the value make apply applied" in result.stderr
    for value in stored.values():
        assert value not in result.stderr + result.stdout
    assert yaml.safe_load(stack.secrets_file.read_text()) == stored
    assert stack.synth(secrets={}) == 0
    assert {p.name: p.read_bytes() for p in Dist(stack.dist).files if p.name != ".synth-base"} == {
        k: v for k, v in before.items() if k != ".synth-base"
    }


def _env(stack: Stack) -> dict[str, str]:
    import os

    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_K8S_")},
        "SENTRY_K8S_STATE_DIR": str(stack.state),
    }


def test_a_secret_of_another_stack_is_not_recovered(tmp_path: Path) -> None:
    stack = _generated_stack(tmp_path)
    stack.secrets_file.unlink()
    other = json.loads(json.dumps(stack.cluster.objects["Secret|sentry|sentry-secrets"]))
    other["data"]["postgres-password"] = base64.b64encode(b"another").decode()
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "tools" / "recover_secrets.py"), "--to", str(stack.secrets_file)],
        input=json.dumps(other),
        env=_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "postgres-password is not the value make apply applied" in result.stderr
    assert not stack.secrets_file.exists()


def test_without_a_record_the_previous_dist_protects_the_secrets_too(tmp_path: Path) -> None:
    """Issue 19: a lost .secrets/ with an existing dist/ is refused; dist/ holds the values."""
    dist = tmp_path / "dist"
    assert synth(tmp_path, "", secrets={}, outdir=dist)[0] == 0
    stored = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    (tmp_path / "secrets.yaml").unlink()
    assert synth(tmp_path, "", secrets={}, outdir=dist)[0] == 2
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_DIR / "tools" / "recover_secrets.py"),
            "--to",
            str(tmp_path / "secrets.yaml"),
            str(dist / "10-secrets.k8s.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text()) == stored
    # A stack that was never applied may start over, when the user says so.
    (tmp_path / "secrets.yaml").unlink()
    assert synth(tmp_path, "", secrets={}, outdir=dist, args=["--confirm", "new-secrets"])[0] == 0
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text()) != stored


def test_a_changed_postgres_password_is_refused_until_the_server_has_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack(tmp_path)
    assert stack.synth(secrets=TEST_SECRETS) == 0
    stack.apply()
    before = stack.templates()
    rotated = {**TEST_SECRETS, "postgres-password": "rotated-pg-secret"}
    capsys.readouterr()
    assert stack.synth(secrets=rotated) == 2
    err = capsys.readouterr().err
    assert "postgres-password differs from the value last applied" in err
    assert "Rotating the PostgreSQL password" in err and "--confirm rotate-postgres-password" in err
    assert "rotated-pg-secret" not in err
    assert stack.synth(secrets=rotated, args=("--confirm", "rotate-postgres-password")) == 0
    after = stack.templates()
    # Every pod that reads it rolls; the server itself does not (it reads it only at initdb).
    for name in ("sentry-web", "sentry-worker", "sentry-cron"):
        assert after[name][ROLL] != before[name][ROLL], name
    assert after["sentry-redis"] == before["sentry-redis"]
    assert ROLL not in after["sentry-postgresql"]


def test_a_changed_in_cluster_redis_password_rolls_redis_and_its_clients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack(tmp_path)
    assert stack.synth(secrets=TEST_SECRETS) == 0
    stack.apply()
    before = stack.templates()
    capsys.readouterr()
    assert stack.synth(secrets={**TEST_SECRETS, "redis-password": "rotated-redis"}) == 0
    err = capsys.readouterr().err
    assert "warning: redis-password changes: the in-cluster Redis restarts with it" in err
    after = stack.templates()
    for name in ("sentry-web", "sentry-worker", "sentry-cron", "sentry-redis"):
        assert after[name][ROLL] != before[name][ROLL], name
    assert after["sentry-postgresql"] == before["sentry-postgresql"]


def test_a_secret_only_some_pods_read_rolls_only_those(tmp_path: Path) -> None:
    values = "sentry: {smtp: {host: smtp.example.com, user: sentry}}"
    stack = Stack(tmp_path)
    secrets = {**TEST_SECRETS, "smtp-password": "smtp-1"}
    assert stack.synth(values, secrets=secrets) == 0
    stack.apply()
    before = stack.templates()
    assert stack.synth(values, secrets={**secrets, "smtp-password": "smtp-2"}) == 0
    after = stack.templates()
    assert {n for n in after if after[n] != before[n]} == {"sentry-web", "sentry-worker", "sentry-cron"}


@pytest.mark.parametrize(
    ("key", "values", "refused", "words"),
    [
        ("admin-password", "", False, "changes nothing in Sentry"),
        ("sentry-secret-key", "", False, "must sign in again"),
        (
            "postgres-password",
            "postgres: {external: {host: 10.0.8.5, sslmode: require}}",
            True,
            "the managed server keeps its own password",
        ),
        ("redis-password", "redis: {external: {host: 10.0.9.5}}", True, "the managed Redis keeps its own password"),
    ],
)
def test_every_secret_change_is_refused_or_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, values: str, refused: bool, words: str
) -> None:
    stack = Stack(tmp_path)
    assert stack.synth(values, secrets=TEST_SECRETS) == 0
    stack.apply()
    capsys.readouterr()
    assert stack.synth(values, secrets={**TEST_SECRETS, key: "changed-value"}) == (2 if refused else 0)
    err = capsys.readouterr().err
    assert words in err and key in err


def test_without_a_record_a_changed_password_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = tmp_path / "dist"
    assert synth(tmp_path, "", outdir=dist)[0] == 0
    capsys.readouterr()
    assert synth(tmp_path, "", secrets={**TEST_SECRETS, "postgres-password": "x"}, outdir=dist)[0] == 0
    assert "warning: postgres-password differs from the value last applied" in capsys.readouterr().err


# --- the procedures' SQL, against a real server -------------------------------------------------


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    pg = PostgresServer(superuser="sentry", password=TEST_SECRETS["postgres-password"], auth="md5")
    try:
        pg.start()
        pg.psql("CREATE DATABASE sentry")
        yield pg
    finally:
        pg.cleanup()


def _sql(tmp: Path, command: list[str], secrets: dict[str, str], values: str = "") -> str:
    config = tmp / "values.yaml"
    config.write_text(values)
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "tools" / "postgres_sql.py"), "--config", str(config), *command],
        env={
            "SENTRY_K8S_SECRETS_FILE": str(tmp / "none.yaml"),
            "SENTRY_K8S_POSTGRES_PASSWORD": secrets["postgres-password"],
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _psql_stdin(server: PostgresServer, sql: str, user: str, password: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env(user=user, password=password), "PATH": server.path()}
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"],
        input=sql,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _wait_for_postgres(default_dist: Dist, server: PostgresServer, **env: str) -> subprocess.CompletedProcess[str]:
    container = find_container(default_dist.get("Deployment", "sentry-web"), "wait-for-postgres")
    full = manifest_env(container, PGHOST="127.0.0.1", PGPORT=str(server.port), PATH=server.path(), **env)
    return subprocess.run(container["command"], env=full, capture_output=True, text=True, timeout=60, check=False)


def test_the_rotation_procedure_sets_the_password_where_it_lives(
    tmp_path: Path, server: PostgresServer, default_dist: Dist
) -> None:
    new = "rotated 'quoted' \\ password"
    sql = _sql(tmp_path, ["password"], {"postgres-password": new})
    assert new not in sql, "the value travels encoded, never as SQL text"
    done = _psql_stdin(server, sql, "sentry", TEST_SECRETS["postgres-password"])
    assert done.returncode == 0, done.stderr
    assert _wait_for_postgres(default_dist, server, PGPASSWORD=new).returncode == 0
    old = _wait_for_postgres(default_dist, server)
    assert old.returncode == 1 and "password authentication failed" in old.stderr


def test_the_rename_procedures_keep_sentry_able_to_log_in(
    tmp_path: Path, server: PostgresServer, default_dist: Dist
) -> None:
    password = TEST_SECRETS["postgres-password"]
    server.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)", database="sentry")
    sql = _sql(tmp_path, ["rename-user", "sentry"], TEST_SECRETS, "postgres: {user: sentry_app}")
    done = _psql_stdin(server, sql, "sentry", password)
    assert done.returncode == 0, done.stderr
    assert _wait_for_postgres(default_dist, server, PGUSER="sentry_app").returncode == 0
    sql = _sql(tmp_path, ["rename-database", "sentry"], TEST_SECRETS, "postgres: {user: sentry_app, database: events}")
    done = _psql_stdin(server, sql, "sentry_app", password)
    assert done.returncode == 0, done.stderr
    result = _wait_for_postgres(default_dist, server, PGUSER="sentry_app", PGDATABASE="events")
    assert result.returncode == 0, result.stderr
    rows = server.psql("SELECT x FROM kept", database="events", user="sentry_app")
    assert rows.strip() == "1"
    roles = server.psql("SELECT rolname FROM pg_roles WHERE rolname LIKE 'sentry%' ORDER BY 1", user="sentry_app")
    assert roles.split() == ["sentry_app"], "the helper role is gone"


def test_secret_values_are_read_from_a_manifest() -> None:
    manifest = {"kind": "Secret", "data": {"a": base64.b64encode(b"x").decode()}, "stringData": {"b": "y"}}
    assert secret_values(manifest) == {"a": "x", "b": "y"}
