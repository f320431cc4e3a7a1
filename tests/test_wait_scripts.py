"""The init containers' wait scripts, taken from the synthesized manifests and run
against a real PostgreSQL server (Debian's packages) that the test starts late.

Only the values that must point at the test server are replaced: PGHOST/PGPORT,
and PATH so that the server's client tools are found. WAIT_INTERVAL_SECONDS is
shortened to keep the suite fast; the loop is the same.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRETS, Dist, find_container, manifest_env
from tests.servers import PostgresServer, free_port


def _start(container: dict, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(container["command"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_exit(proc: subprocess.Popen[str], seconds: float) -> int | None:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    pg = PostgresServer(superuser="sentry", password=TEST_SECRETS["postgres-password"])
    try:
        yield pg
    finally:
        pg.cleanup()


def _web_init(dist: Dist, name: str) -> dict:
    return find_container(dist.get("Deployment", "sentry-web"), name)


def test_wait_for_postgres_blocks_while_down_and_exits_once_up(default_dist: Dist, server: PostgresServer) -> None:
    container = _web_init(default_dist, "wait-for-postgres")
    port = free_port()
    env = manifest_env(container, PGHOST="127.0.0.1", PGPORT=str(port), PATH=server.path(), WAIT_INTERVAL_SECONDS="1")
    proc = _start(container, env)
    try:
        assert _wait_exit(proc, 3) is None, "must keep waiting while nothing listens"
        server.start(port=port)
        assert _wait_exit(proc, 15) == 0
        output = proc.stdout.read() if proc.stdout else ""
        assert "waiting for PostgreSQL at 127.0.0.1" in output
        assert "is accepting connections" in output
    finally:
        proc.kill()


def test_wait_for_postgres_gives_up_after_its_timeout(default_dist: Dist, server: PostgresServer) -> None:
    container = _web_init(default_dist, "wait-for-postgres")
    env = manifest_env(
        container,
        PGHOST="127.0.0.1",
        PGPORT=str(free_port()),
        PATH=server.path(),
        WAIT_INTERVAL_SECONDS="1",
        WAIT_TIMEOUT_SECONDS="2",
    )
    result = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1
    assert "gave up" in result.stderr


def test_wait_for_migrations_blocks_until_the_job_marks_this_version(
    default_dist: Dist, server: PostgresServer, tmp_path: Path
) -> None:
    from tests.test_migration_script import MigrationJob

    server.start()
    server.psql("CREATE DATABASE sentry")
    wait = _web_init(default_dist, "wait-for-migrations")
    # The Job's own script writes the record (with a stand-in `sentry`).
    job = MigrationJob(default_dist, server, tmp_path)
    target = {"PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PATH": server.path()}

    proc = _start(wait, manifest_env(wait, **target, WAIT_INTERVAL_SECONDS="1"))
    try:
        assert _wait_exit(proc, 3) is None, "no marker table yet: must keep waiting"

        # A marker for another image (e.g. the previous version) does not release the wait.
        other = job.run("other", SENTRY_MIGRATION_VERSION="sentry:9.0.0")
        assert other.result.returncode == 0, other.output
        assert _wait_exit(proc, 3) is None, "a marker for another version must not count"

        done = job.run("done")
        assert done.result.returncode == 0, done.output
        assert _wait_exit(proc, 10) == 0
        output = proc.stdout.read() if proc.stdout else ""
        assert "migrations for sentry:9.1.2 are complete" in output
    finally:
        proc.kill()

    # Idempotent: marking again (a re-run Job) succeeds and keeps one row per version.
    assert job.run("again").result.returncode == 0
    rows = server.psql("SELECT version FROM k8s_sentry_migrations ORDER BY version", database="sentry")
    assert rows.split() == ["sentry:9.0.0", "sentry:9.1.2"]


def test_wait_for_migrations_tolerates_a_database_that_is_not_up_yet(
    default_dist: Dist, server: PostgresServer
) -> None:
    wait = _web_init(default_dist, "wait-for-migrations")
    port = free_port()
    proc = _start(
        wait, manifest_env(wait, PGHOST="127.0.0.1", PGPORT=str(port), PATH=server.path(), WAIT_INTERVAL_SECONDS="1")
    )
    try:
        assert _wait_exit(proc, 2) is None
        started = time.monotonic()
        server.start(port=port)
        assert _wait_exit(proc, 2) is None, "up, but not migrated: still waiting"
        assert time.monotonic() - started < 30
    finally:
        proc.kill()


def test_wait_for_migrations_gives_up_after_its_timeout(default_dist: Dist, server: PostgresServer) -> None:
    # Up, but the Job never marks this image's migrations (it failed, or was never
    # applied): the pod must fail visibly once its time limit has passed, not wait forever.
    server.start()
    server.psql("CREATE DATABASE sentry")
    wait = _web_init(default_dist, "wait-for-migrations")
    env = manifest_env(
        wait,
        PGHOST="127.0.0.1",
        PGPORT=str(server.port),
        PATH=server.path(),
        WAIT_INTERVAL_SECONDS="1",
        WAIT_TIMEOUT_SECONDS="2",
    )
    result = subprocess.run(wait["command"], env=env, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1
    assert "gave up: no completed migrations for sentry:9.1.2 after 2s" in result.stderr
