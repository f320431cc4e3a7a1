"""The migration Job's script, run under a real bash against a real PostgreSQL, with a
stand-in `sentry` command.

The script is taken from the synthesized Job, not copied. It holds a real PostgreSQL
advisory lock for its whole sequence (its Python program runs on the tests' Python,
with psycopg2, as it runs on the image's Python 2.7; MIGRATION_TEST_PYTHON chooses
another interpreter). The stand-in records every call,
and each `upgrade` writes when it started and ended (and how many migration locks the
server showed at its start), so the tests can see whether two runs overlapped. It acts on
the database as Sentry would: `upgrade` creates a minimal auth_user, `createuser`
inserts the login (the unique key refuses a second), `exec` marks the password as set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRETS, Dist, find_container, manifest_env, synth
from tests.servers import PostgresServer, free_port

STAND_IN = r"""#!/bin/bash
# Stand-in for the sentry CLI: log the call, then act on the database as $SCENARIO says.
printf '%s\n' "$*" >> "$CALLS"
db() {
  PGHOST="$SENTRY_POSTGRES_HOST" PGPORT="$SENTRY_POSTGRES_PORT" PGUSER="$SENTRY_DB_USER" \
    PGPASSWORD="$SENTRY_DB_PASSWORD" PGDATABASE="$SENTRY_DB_NAME" psql -X -q -t -A -v ON_ERROR_STOP=1 "$@"
}
case "$1" in
  upgrade)
    locks=$(db -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'sentry-migrations'")
    echo "start $(date +%s.%N) $locks" >> "$EVENTS"
    # Stops on SIGTERM, as Sentry does, and takes its sleep along.
    trap 'kill $! 2>/dev/null; echo "upgrade: stopped" >&2; exit 143' TERM
    sleep "${UPGRADE_SECONDS:-0}" &
    wait $!
    [ "$SCENARIO" = upgrade-fails ] && { echo "django.db.utils.OperationalError: boom" >&2; exit 1; }
    db -c "CREATE TABLE IF NOT EXISTS auth_user (id serial PRIMARY KEY, username text UNIQUE NOT NULL,
      is_superuser boolean NOT NULL, password text NOT NULL DEFAULT '')"
    echo "end $(date +%s.%N)" >> "$EVENTS"
    echo "Migrated." ;;
  createuser)
    while [ $# -gt 0 ] && [ "$1" != --email ]; do shift; done
    case "$SCENARIO" in
      broken) echo "could not connect to server: Connection refused" >&2; exit 1 ;;
      no-op) echo "User created: $2"; exit 0 ;;
    esac
    printf "INSERT INTO auth_user (username, is_superuser) VALUES (:'email', true);\n" | db -v email="$2" &&
      echo "User created: $2" ;;
  exec)
    cat > "$EXEC_STDIN"
    printf "UPDATE auth_user SET password = 'set' WHERE username = :'email';\n" | db -v email="$SENTRY_ADMIN_EMAIL" ;;
esac
"""


@dataclass
class Run:
    """One run of the migrate container's script."""

    result: subprocess.CompletedProcess[str]
    calls: list[str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


class MigrationJob:
    """The migrate container of a synthesized Job, ready to run against a test server with
    the stand-in `sentry` first on PATH and the tests' Python as `python`."""

    def __init__(self, dist: Dist, server: PostgresServer, tmp_path: Path, **overrides: str) -> None:
        (job,) = dist.of_kind("Job")
        container = find_container(job, "migrate")
        # Under the image's tini (not here): the rest is the command tini starts.
        assert container["command"][:4] == ["/usr/local/bin/tini", "--", "/bin/bash", "-c"]
        self.command = container["command"][2:]
        self.dir = tmp_path
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        (bin_dir / "sentry").write_text(STAND_IN)
        (bin_dir / "sentry").chmod(0o755)
        # A wrapper, not a link: the venv (with psycopg2) is found from the path it is started by.
        # MIGRATION_TEST_PYTHON names another interpreter with psycopg2, e.g. a Python 2.7 like
        # the image's: `MIGRATION_TEST_PYTHON="env PYTHONPATH=/site python2.7" pytest ...`.
        python = os.environ.get("MIGRATION_TEST_PYTHON") or f'"{sys.executable}"'
        (bin_dir / "python").write_text(f'#!/bin/sh\nexec {python} "$@"\n')
        (bin_dir / "python").chmod(0o755)
        self.events = tmp_path / "events"
        self.env = {
            **manifest_env(container),
            "SENTRY_POSTGRES_HOST": server.host,
            "SENTRY_POSTGRES_PORT": str(server.port),
            "PATH": f"{bin_dir}:{server.path()}",
            "SCENARIO": "fresh",
            "EVENTS": str(self.events),
            "EXEC_STDIN": str(tmp_path / "exec-stdin"),
            **overrides,
        }

    def start(self, name: str = "job", **extra: str) -> subprocess.Popen[str]:
        env = {**self.env, "CALLS": str(self.dir / f"calls-{name}"), **extra}
        return subprocess.Popen(self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, proc: subprocess.Popen[str], name: str = "job", timeout: float = 60) -> Run:
        stdout, stderr = proc.communicate(timeout=timeout)
        calls = self.dir / f"calls-{name}"
        result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        return Run(result, calls.read_text().splitlines() if calls.exists() else [])

    def run(self, name: str = "job", **extra: str) -> Run:
        return self.finish(self.start(name, **extra), name)

    def upgrades(self) -> list[tuple[float, float, int]]:
        """(start, end, migration locks held at the start) of every upgrade that ended."""
        spans, start = [], None
        for line in self.events.read_text().splitlines():
            kind, stamp, *rest = line.split()
            if kind == "start":
                start = (float(stamp), int(rest[0]))
            else:
                assert start is not None
                spans.append((start[0], float(stamp), start[1]))
                start = None
        return spans


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer(superuser="sentry", password=TEST_SECRETS["postgres-password"]) as pg:
        yield pg


@pytest.fixture
def job(default_dist: Dist, server: PostgresServer, tmp_path: Path) -> MigrationJob:
    # A new, empty Sentry database for every test (the postgres image creates it from POSTGRES_DB).
    server.psql("DROP DATABASE IF EXISTS sentry WITH (FORCE); CREATE DATABASE sentry")
    return MigrationJob(default_dist, server, tmp_path)


def records(server: PostgresServer) -> tuple[str, str, str]:
    """The migration records, the bootstrap records and the users, as the database has them."""

    def query(sql: str) -> str:
        try:
            return server.psql(sql, database="sentry")
        except Exception:  # the table does not exist
            return "-"

    return (
        query("SELECT string_agg(version, ',' ORDER BY version) FROM k8s_sentry_migrations"),
        query("SELECT string_agg(item, ',') FROM k8s_sentry_bootstrap"),
        query("SELECT string_agg(username || ':' || is_superuser || ':' || password, ',') FROM auth_user"),
    )


# --- one Job -------------------------------------------------------------------------


def test_a_first_run_migrates_creates_the_superuser_and_records_both(job: MigrationJob, server: PostgresServer) -> None:
    run = job.run()
    assert run.result.returncode == 0, run.output
    assert [c.split()[0] for c in run.calls] == ["upgrade", "createuser", "exec"]
    assert run.calls[0] == "upgrade --noinput"
    assert "--superuser" in run.calls[1] and "--email admin@example.com" in run.calls[1]
    assert records(server) == ("sentry:9.1.2", "admin", "admin@example.com:true:set")
    # The password is set by a script read on stdin, from the environment.
    stdin = (job.dir / "exec-stdin").read_text()
    assert 'os.environ["SENTRY_ADMIN_PASSWORD"]' in stdin and "has_usable_password" in stdin
    (_, _, locks) = job.upgrades()[0]
    assert locks == 1, "sentry upgrade runs while the script's session holds the advisory lock"


def test_the_bootstrap_is_done_once_and_never_again(job: MigrationJob, server: PostgresServer) -> None:
    assert job.run("first").result.returncode == 0
    # The admin was renamed in Sentry since: the next Job (an upgrade) must not create it again.
    server.psql("UPDATE auth_user SET username = 'renamed@example.com'", database="sentry")
    again = job.run("second")
    assert again.result.returncode == 0, again.output
    assert again.calls == ["upgrade --noinput"]
    assert "admin bootstrap already done at" in again.result.stdout
    assert records(server)[2] == "renamed@example.com:true:set"


def test_an_existing_login_is_not_created_again_whatever_createuser_would_say(
    job: MigrationJob, server: PostgresServer
) -> None:
    # An earlier run created the user, then failed before its records were committed. The
    # database says the login exists: createuser is not run at all (no error message to
    # interpret), and the password step still runs.
    server.psql(
        "CREATE TABLE auth_user (id serial PRIMARY KEY, username text UNIQUE NOT NULL, is_superuser boolean NOT NULL,"
        " password text NOT NULL DEFAULT ''); INSERT INTO auth_user (username, is_superuser)"
        " VALUES ('admin@example.com', true)",
        database="sentry",
    )
    run = job.run()
    assert run.result.returncode == 0, run.output
    assert [c.split()[0] for c in run.calls] == ["upgrade", "exec"]
    assert "user admin@example.com already exists (superuser: yes); not created again" in run.result.stdout
    assert records(server) == ("sentry:9.1.2", "admin", "admin@example.com:true:set")


@pytest.mark.parametrize("scenario", ["broken", "no-op"])
def test_a_failed_bootstrap_records_nothing_and_the_next_run_does_it(
    job: MigrationJob, server: PostgresServer, scenario: str
) -> None:
    # createuser fails, or exits 0 without creating the user: the Job fails, neither the
    # bootstrap nor the migrations are recorded, and the next run creates the superuser.
    failed = job.run("failed", SCENARIO=scenario)
    assert failed.result.returncode != 0
    assert [c.split()[0] for c in failed.calls] == ["upgrade", "createuser"]
    assert "nothing was recorded" in failed.result.stderr
    assert records(server)[:2] == ("-", "-"), "the records' tables were created in the rolled-back transaction"
    retried = job.run("retried")
    assert retried.result.returncode == 0, retried.output
    assert [c.split()[0] for c in retried.calls] == ["upgrade", "createuser", "exec"]
    assert records(server) == ("sentry:9.1.2", "admin", "admin@example.com:true:set")


def test_failed_migrations_create_no_user_and_record_nothing(job: MigrationJob, server: PostgresServer) -> None:
    run = job.run(SCENARIO="upgrade-fails")
    assert run.result.returncode != 0
    assert run.calls == ["upgrade --noinput"]
    assert "sentry upgrade exited 1; nothing was recorded" in run.result.stderr
    assert records(server) == ("-", "-", "-")


def test_admin_password_is_never_on_a_command_line_or_in_the_log(job: MigrationJob) -> None:
    run = job.run()
    password = job.env["SENTRY_ADMIN_PASSWORD"]
    assert run.result.returncode == 0, run.output
    assert all(password not in call for call in run.calls)
    assert password not in run.output and job.env["SENTRY_DB_PASSWORD"] not in run.output


def test_without_create_admin_no_superuser_is_ever_made(tmp_path: Path, server: PostgresServer) -> None:
    server.psql("DROP DATABASE IF EXISTS sentry WITH (FORCE); CREATE DATABASE sentry")
    _, dist = synth(tmp_path, "sentry:\n  create_admin: false\n")
    run = MigrationJob(dist, server, tmp_path / "run").run()
    assert run.result.returncode == 0, run.output
    assert run.calls == ["upgrade --noinput"]
    assert records(server) == ("sentry:9.1.2", "", "")


def test_the_job_fails_when_the_database_cannot_be_reached(default_dist: Dist, tmp_path: Path) -> None:
    down = PostgresServer()  # never started: only its client binaries are used
    down.port = free_port()  # nothing listens there
    try:
        run = MigrationJob(default_dist, down, tmp_path).run()
    finally:
        down.cleanup()
    assert run.result.returncode != 0
    assert run.calls == [], "no Sentry step without the lock"
    assert "FAILED: database:" in run.result.stderr


# --- two Jobs at once -----------------------------------------------------------------


def test_two_jobs_started_together_run_one_after_the_other(job: MigrationJob, server: PostgresServer) -> None:
    # Two Jobs of two configurations, started at the same moment, each upgrade taking 2 s.
    procs = {name: job.start(name, UPGRADE_SECONDS="2") for name in ("a", "b")}
    runs = {name: job.finish(proc, name) for name, proc in procs.items()}
    for run in runs.values():
        assert run.result.returncode == 0, run.output
    (first, second) = job.upgrades()
    waited = [name for name, run in runs.items() if "waiting for the migration lock" in run.output]
    assert first[1] <= second[0], f"the two upgrades overlapped: {first} and {second}"
    assert first[2] == second[2] == 1, "each upgrade ran while one session held the lock"
    # The one that waited saw who held the lock, then found the bootstrap done.
    (late,) = waited
    assert "held by pid" in runs[late].result.stdout and "sentry-migrations" in runs[late].result.stdout
    assert "admin bootstrap already done at" in runs[late].result.stdout
    assert [c.split()[0] for c in runs[late].calls] == ["upgrade"]
    # Exactly one superuser, created by exactly one Job.
    assert sum(c.startswith("createuser") for r in runs.values() for c in r.calls) == 1
    assert records(server) == ("sentry:9.1.2", "admin", "admin@example.com:true:set")


def test_a_job_stopped_by_sigterm_stops_its_command_records_nothing_and_frees_the_lock(
    job: MigrationJob, server: PostgresServer
) -> None:
    proc = job.start("stopped", UPGRADE_SECONDS="30")
    deadline = time.monotonic() + 20
    while not (job.events.exists() and job.events.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, "the upgrade never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stopped = job.finish(proc, "stopped", timeout=20)
    assert stopped.result.returncode == 128 + signal.SIGTERM
    assert "stopped by signal 15 during sentry upgrade; nothing was recorded" in stopped.result.stderr
    assert records(server)[:2] == ("-", "-")
    # The lock went with the session: the next Job starts at once and does everything.
    started = time.monotonic()
    nxt = job.run("next")
    assert nxt.result.returncode == 0, nxt.output
    assert "waiting for the migration lock" not in nxt.output and time.monotonic() - started < 15
    assert records(server) == ("sentry:9.1.2", "admin", "admin@example.com:true:set")


def test_a_job_that_loses_its_session_records_nothing(job: MigrationJob, server: PostgresServer) -> None:
    # The server ends the lock's session while sentry upgrade runs (a restart, a network
    # cut, an administrator): another Job could take the lock, so this one must not record.
    proc = job.start("lost", UPGRADE_SECONDS="3")
    deadline = time.monotonic() + 20
    while not (job.events.exists() and job.events.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, "the upgrade never started"
        time.sleep(0.1)
    server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sentry-migrations'")
    lost = job.finish(proc, "lost")
    assert lost.result.returncode != 0
    assert "lost the lock while sentry upgrade ran" in lost.result.stderr
    assert [c.split()[0] for c in lost.calls] == ["upgrade"]
    assert records(server)[:2] == ("-", "-")


# --- under Python 2.7, when one is installed ---------------------------------------------


def _python2() -> str | None:
    for root in {os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")}:
        for candidate in sorted(Path(root, "versions").glob("2.7*/bin/python2.7")) if root else []:
            return str(candidate)
    for name in ("python2.7", "python2"):
        found = subprocess.run(["which", name], capture_output=True, text=True, check=False).stdout.strip()
        if found:
            return found
    return None


def test_the_lock_holder_compiles_under_python_2_7(default_dist: Dist, tmp_path: Path) -> None:
    # The image runs it on Python 2.7 (with its own psycopg2); here: at least its syntax.
    python2 = _python2()
    if python2 is None:
        pytest.skip("no Python 2.7 interpreter on this machine")
    (job,) = default_dist.of_kind("Job")
    script = find_container(job, "migrate")["command"][-1]
    program = script.split("<<'PY'\n", 1)[1].rsplit("\nPY\n", 1)[0]
    source = tmp_path / "program.py"
    source.write_text(program)
    result = subprocess.run(
        [python2, "-c", "import sys; compile(open(sys.argv[1]).read(), 'program', 'exec')", str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert program.isascii()
