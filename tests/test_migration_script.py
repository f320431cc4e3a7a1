"""The migration Job's script, run under a real bash with a stand-in `sentry` command.

The script is taken from the synthesized Job, not copied. The stand-in records
every call (arguments and stdin) and answers `createuser` as the scenario says.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRETS, Dist, find_container, manifest_env
from tests.servers import PostgresServer, find_postgres_bin, free_port

STAND_IN = """#!/bin/bash
# Stand-in for the sentry CLI: log the call, then act as $SCENARIO says.
printf '%s\\n' "$*" >> "$CALLS"
case "$1" in
  upgrade)
    [ "$SCENARIO" = upgrade-fails ] && { echo "django.db.utils.OperationalError: boom" >&2; exit 1; }
    echo "Migrated." ;;
  createuser)
    case "$SCENARIO" in
      fresh) echo "User created: admin@example.com" ;;
      exists-integrity)
        echo 'IntegrityError: duplicate key value violates unique constraint "auth_user_username_key"' >&2
        echo 'DETAIL:  Key (username)=(admin@example.com) already exists.' >&2
        exit 1 ;;
      exists-message) echo "User: admin@example.com exists, use --force-update to force"; exit 3 ;;
      other-user-exists)
        echo 'DETAIL:  Key (username)=(someone@else.org) already exists.' >&2; exit 1 ;;
      broken) echo "could not connect to server: Connection refused" >&2; exit 1 ;;
    esac ;;
  exec)
    cat > "$EXEC_STDIN"
    echo "migrations: password of superuser $SENTRY_ADMIN_EMAIL set from the Secret" ;;
esac
"""


def _run(
    default_dist: Dist, tmp_path: Path, scenario: str, admin_pending: bool = True
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    (job,) = default_dist.of_kind("Job")
    migrate = find_container(job, "migrate")
    # Under the image's tini (not here): the rest is the command tini starts.
    assert migrate["command"][:4] == ["/usr/local/bin/tini", "--", "/bin/bash", "-c"]
    pending = tmp_path / "admin-pending"
    if admin_pending:
        pending.touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sentry = bin_dir / "sentry"
    sentry.write_text(STAND_IN)
    sentry.chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        **manifest_env(migrate),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SCENARIO": scenario,
        "CALLS": str(calls),
        "EXEC_STDIN": str(tmp_path / "exec-stdin"),
        "SENTRY_ADMIN_PENDING_FILE": str(pending),
    }
    result = subprocess.run(migrate["command"][2:], env=env, capture_output=True, text=True, timeout=30, check=False)
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("scenario", ["fresh", "exists-integrity", "exists-message"])
def test_job_succeeds_when_the_user_is_new_or_already_exists(default_dist: Dist, tmp_path: Path, scenario: str) -> None:
    result, calls = _run(default_dist, tmp_path, scenario)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c.split()[0] for c in calls] == ["upgrade", "createuser", "exec"]
    assert calls[0] == "upgrade --noinput"
    assert "--superuser" in calls[1] and "--email admin@example.com" in calls[1]
    # The password is set by a script read on stdin, from the environment.
    stdin = (tmp_path / "exec-stdin").read_text()
    assert 'os.environ["SENTRY_ADMIN_PASSWORD"]' in stdin and "has_usable_password" in stdin


@pytest.mark.parametrize("scenario", ["broken", "other-user-exists"])
def test_job_fails_on_any_other_createuser_failure(default_dist: Dist, tmp_path: Path, scenario: str) -> None:
    result, calls = _run(default_dist, tmp_path, scenario)
    assert result.returncode != 0
    assert [c.split()[0] for c in calls] == ["upgrade", "createuser"]


def test_job_fails_and_creates_no_user_when_migrations_fail(default_dist: Dist, tmp_path: Path) -> None:
    result, calls = _run(default_dist, tmp_path, "upgrade-fails")
    assert result.returncode != 0
    assert calls == ["upgrade --noinput"]


def test_admin_password_is_never_on_a_command_line(default_dist: Dist, tmp_path: Path) -> None:
    result, calls = _run(default_dist, tmp_path, "fresh")
    password = manifest_env(find_container(default_dist.of_kind("Job")[0], "migrate"))["SENTRY_ADMIN_PASSWORD"]
    assert result.returncode == 0
    assert all(password not in call for call in calls)
    assert password not in result.stdout + result.stderr


def test_no_superuser_step_once_the_bootstrap_was_done(default_dist: Dist, tmp_path: Path) -> None:
    result, calls = _run(default_dist, tmp_path, "fresh", admin_pending=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == ["upgrade --noinput"]
    assert "superuser bootstrap not needed" in result.stdout


# --- the bootstrap record, against a real PostgreSQL ------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer(superuser="sentry", password=TEST_SECRETS["postgres-password"]) as pg:
        pg.psql("CREATE DATABASE sentry")  # the postgres image creates it from POSTGRES_DB
        yield pg


def _pg_step(dist: Dist, name: str, server: PostgresServer, pending: Path) -> subprocess.CompletedProcess[str]:
    (job,) = dist.of_kind("Job")
    container = find_container(job, name)
    env = manifest_env(
        container,
        PGHOST="127.0.0.1",
        PGPORT=str(server.port),
        PATH=server.path(),
        SENTRY_ADMIN_PENDING_FILE=str(pending),
    )
    return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=30, check=False)


def test_admin_is_bootstrapped_by_the_first_job_only(
    default_dist: Dist, tmp_path: Path, server: PostgresServer
) -> None:
    server.psql("DROP TABLE IF EXISTS k8s_sentry_bootstrap", database="sentry")
    pending = tmp_path / "admin-pending"
    first = _pg_step(default_dist, "admin-bootstrap-check", server, pending)
    assert first.returncode == 0, first.stderr
    assert pending.exists(), "a database that never saw a bootstrap gets one"
    marked = _pg_step(default_dist, "mark-migrated", server, pending)
    assert marked.returncode == 0, marked.stderr
    assert "recorded the admin bootstrap" in marked.stdout
    # The next Job (an upgrade, after the admin was perhaps renamed) decides not to.
    again = _pg_step(default_dist, "admin-bootstrap-check", server, pending)
    assert again.returncode == 0, again.stderr
    assert not pending.exists(), "a stale decision file must be removed, not trusted"
    assert "already done" in again.stdout


def test_a_failed_job_leaves_the_bootstrap_to_the_next(
    default_dist: Dist, tmp_path: Path, server: PostgresServer
) -> None:
    server.psql("DROP TABLE IF EXISTS k8s_sentry_bootstrap", database="sentry")
    pending = tmp_path / "admin-pending"
    assert _pg_step(default_dist, "admin-bootstrap-check", server, pending).returncode == 0
    # migrate failed: mark-migrated never ran. The next Job must still create the admin.
    pending.unlink()
    assert _pg_step(default_dist, "admin-bootstrap-check", server, pending).returncode == 0
    assert pending.exists()


def test_bootstrap_check_fails_when_the_database_cannot_be_read(default_dist: Dist, tmp_path: Path) -> None:
    (job,) = default_dist.of_kind("Job")
    container = find_container(job, "admin-bootstrap-check")
    env = manifest_env(
        container,
        PGHOST="127.0.0.1",
        PGPORT=str(free_port()),  # nothing listens there
        PATH=f"{find_postgres_bin()}{os.pathsep}{os.environ['PATH']}",
        SENTRY_ADMIN_PENDING_FILE=str(tmp_path / "p"),
    )
    result = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert not (tmp_path / "p").exists()
