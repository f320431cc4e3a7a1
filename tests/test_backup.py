"""PostgreSQL backup and restore: the manifests, and the scripts run for real.

The scripts are never copied into this file: each test synthesizes the stack, takes
the container's command (["/bin/bash", "-c", script]) and environment from the YAML,
resolves secretKeyRefs from the test secrets, and runs it against a real PostgreSQL
server (Debian's PostgreSQL 15; the manifests use 9.6, see the notes in the scripts).
Only these environment values are replaced, because they name places in the cluster:
PGHOST and PGPORT (the test server instead of the sentry-postgresql Service) and
BACKUP_DIR (a temporary directory instead of the volume mounted at /backups). PATH
gets the PostgreSQL bin dir, as the postgres image has it. The test server's superuser
is `sentry` with the Secret's password and md5 authentication, as in the image.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from constructs.config import StackConfig
from constructs.values import ConfigError, parse_config
from tests.conftest import TEST_SECRETS, Dist, all_containers, find_container, manifest_env, pod_specs, synth
from tests.servers import PostgresServer

DUMP_NAME = re.compile(r"^sentry-(\d{8}T\d{6}Z)\.sql\.gz$")
S3_SECRETS = {**TEST_SECRETS, "s3-secret-access-key": "s3-test-secret-0c5e77"}
VALUES = """
postgres:
  backup:
    schedule: "30 1 * * *"
    keep: 3
    storage: {size: 20Gi, storage_class: backup-class}
    restore: {enabled: true, wait_for_clients_seconds: 2}
"""
OFFSITE_VALUES = """
postgres:
  backup:
    offsite:
      enabled: true
      bucket: sentry-backups
      prefix: prod/db/
      endpoint_url: https://s3.example.test
      access_key_id: AKIATESTKEY
"""


# --- manifests ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    code, dist = synth(tmp_path_factory.mktemp("backup"), VALUES)
    assert code == 0
    return dist


@pytest.fixture(scope="module")
def offsite_dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    code, dist = synth(tmp_path_factory.mktemp("offsite"), OFFSITE_VALUES, secrets=S3_SECRETS)
    assert code == 0
    return dist


def _job_spec(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]


def test_backup_cronjob_is_hardened(dist: Dist) -> None:
    cronjob = dist.get("CronJob", "sentry-backup")
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 1 * * *" and spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 3600
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    job = _job_spec(cronjob)
    assert job["backoffLimit"] == 2 and job["activeDeadlineSeconds"] == 3 * 3600
    (pod,) = pod_specs(cronjob)
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] == 999
    env = manifest_env(container)
    assert env["BACKUP_KEEP"] == "3" and env["BACKUP_GZIP_LEVEL"] == "6"
    assert env["BACKUP_DIR"] == container["volumeMounts"][0]["mountPath"]
    assert env["PGPASSWORD"] == TEST_SECRETS["postgres-password"]
    assert "value" not in next(e for e in container["env"] if e["name"] == "PGPASSWORD")
    claim = dist.get("PersistentVolumeClaim", "sentry-backup")["spec"]
    assert claim["resources"]["requests"]["storage"] == "20Gi" and claim["storageClassName"] == "backup-class"


def test_backup_defaults_are_daily_and_keep_seven(default_dist: Dist) -> None:
    cronjob = default_dist.get("CronJob", "sentry-backup")
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    assert manifest_env(find_container(cronjob, "backup"))["BACKUP_KEEP"] == "7"


def test_restore_job_is_synthesized_only_on_demand_into_its_own_file(default_dist: Dist, dist: Dist) -> None:
    assert "90-restore.k8s.yaml" not in [f.name for f in default_dist.files]
    assert not [o for o in default_dist.of_kind("Job") if o["metadata"]["name"] == "sentry-restore"]
    restore_file = dist.path / "90-restore.k8s.yaml"
    (job,) = [d for d in yaml.safe_load_all(restore_file.read_text(encoding="utf-8")) if d]
    assert job["kind"] == "Job" and job["metadata"]["name"] == "sentry-restore"
    assert job["metadata"]["namespace"] == "sentry"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "restore"
    # Never retried, and no TTL: a finished Job stays, so re-applying the file cannot restore twice.
    assert job["spec"]["backoffLimit"] == 0 and "ttlSecondsAfterFinished" not in job["spec"]
    (pod,) = pod_specs(job)
    (container,) = pod["containers"]
    assert container["image"] == "postgres:9.6.24" and container["imagePullPolicy"] == "IfNotPresent"
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    backups = next(v for v in pod["volumes"] if v["name"] == "backups")
    assert backups["persistentVolumeClaim"] == {"claimName": "sentry-backup", "readOnly": True}
    assert next(m for m in container["volumeMounts"] if m["name"] == "backups")["readOnly"] is True
    env = manifest_env(container)
    assert env["RESTORE_FILE"] == "latest" and env["PGDATABASE"] == "postgres"


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        ({"enabled": False, "restore": {"enabled": True}}, "needs backup.enabled"),
        ({"restore": {"file": "../etc/passwd"}}, "does not match"),
        ({"offsite": {"enabled": True, "access_key_id": "AKIA"}}, "bucket is required"),
        ({"offsite": {"prefix": "/abs/"}}, "does not match"),
    ],
)
def test_backup_configuration_errors_are_explained(backup: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"postgres": {"backup": backup}})


def test_offsite_copy_is_off_by_default(default_dist: Dist) -> None:
    assert "aws-cli" not in default_dist.text()
    assert "s3-secret-access-key" not in default_dist.text()
    assert not StackConfig().postgres.backup.offsite.enabled


def test_offsite_copy_runs_after_the_verified_dump(offsite_dist: Dist) -> None:
    cronjob = offsite_dist.get("CronJob", "sentry-backup")
    (pod,) = pod_specs(cronjob)
    assert [c["name"] for c in pod["initContainers"]] == ["backup"]
    (upload,) = pod["containers"]
    assert upload["name"] == "offsite"
    assert re.fullmatch(r"[^:@]+:[0-9][\w.-]*", upload["image"]), "pin the image to a version tag"
    assert upload["imagePullPolicy"] == "IfNotPresent" and upload["securityContext"]["runAsNonRoot"] is True
    secret_refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in upload["env"] if "valueFrom" in e}
    assert secret_refs == {"AWS_SECRET_ACCESS_KEY": {"name": "sentry-secrets", "key": "s3-secret-access-key"}}
    env = manifest_env(upload, S3_SECRETS)
    assert env["S3_BUCKET"] == "sentry-backups" and env["AWS_ACCESS_KEY_ID"] == "AKIATESTKEY"
    mount = next(m for m in upload["volumeMounts"] if m["name"] == "backups")
    assert mount["readOnly"] is True
    for container in all_containers(cronjob):
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])


# --- running the scripts --------------------------------------------------------


@dataclass
class Script:
    """A container's script and environment, as synthesized."""

    command: list[str]
    env: dict[str, str]

    @classmethod
    def of(cls, obj: dict, container: str, secrets: dict[str, str] = TEST_SECRETS, **overrides: str) -> Script:
        spec = find_container(obj, container)
        assert spec["command"][:2] == ["/bin/bash", "-c"]
        declared = {e["name"] for e in spec["env"]}
        assert set(overrides) <= declared, f"only replace what the manifest sets: {set(overrides) - declared}"
        return cls(spec["command"], manifest_env(spec, secrets, **overrides))

    def run(self, path: str, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "PATH": path, **extra}
        return subprocess.run(self.command, env=env, capture_output=True, text=True, timeout=120, check=False)


def backup_script(dist: Dist, server: PostgresServer, backup_dir: Path, **overrides: str) -> Script:
    where = {"PGHOST": server.host, "PGPORT": str(server.port), "BACKUP_DIR": str(backup_dir), **overrides}
    return Script.of(dist.get("CronJob", "sentry-backup"), "backup", **where)


def restore_script(dist: Dist, server: PostgresServer, backup_dir: Path) -> Script:
    where = {"PGHOST": server.host, "PGPORT": str(server.port), "BACKUP_DIR": str(backup_dir)}
    return Script.of(dist.get("Job", "sentry-restore"), "restore", **where)


def dumps(backup_dir: Path) -> list[str]:
    return sorted(p.name for p in backup_dir.iterdir() if DUMP_NAME.match(p.name))


def new_server() -> PostgresServer:
    # Like the postgres image: the only superuser is `sentry`, with the Secret's password.
    return PostgresServer(superuser="sentry", password=TEST_SECRETS["postgres-password"], auth="md5").start()


DATASET = r"""
CREATE ROLE app_group NOLOGIN;
CREATE ROLE reader LOGIN PASSWORD 'reader-pw' CONNECTION LIMIT 5;
CREATE ROLE writer LOGIN CREATEDB PASSWORD 'writer-pw' IN ROLE app_group;
CREATE ROLE "Ünïcødé rôle" NOLOGIN;
CREATE DATABASE sentry OWNER sentry;
CREATE DATABASE "archive-ü" OWNER writer;
CREATE DATABASE analytics OWNER reader;
CREATE TABLE maintenance_notes (id int PRIMARY KEY, note text);
INSERT INTO maintenance_notes VALUES (1, 'in the postgres database, which a restore cleans object by object');
"""
SENTRY_DB = r"""
CREATE TABLE sentry_events (
    id bigserial PRIMARY KEY, message text NOT NULL, payload bytea, data jsonb, created timestamptz NOT NULL
);
INSERT INTO sentry_events (message, data, created)
SELECT format('événement %s: Grüße aus Köln, 日本語のテキスト, emoji 🐘🚀, tab	and \ backslash', i),
       jsonb_build_object('n', i, 'tags', jsonb_build_array('ä', 'ß', '✓')),
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute'
FROM generate_series(1, 5000) AS i;
-- Large rows: multi-megabyte text and incompressible bytea.
INSERT INTO sentry_events (message, payload, created)
SELECT repeat('Größere Zeile ✓ ', 70000),
       (SELECT decode(string_agg(md5(i::text || '-' || j), ''), 'hex') FROM generate_series(1, 65536) AS j),
       now()
FROM generate_series(1, 3) AS i;
-- Values that look like COPY syntax, newlines and the end-of-data marker.
INSERT INTO sentry_events (message, created) VALUES (E'\\.', now()), (E'line one\nline two\r\n\\.\n', now());
CREATE SCHEMA "odd schema";
CREATE TABLE "odd schema"."Odd ""Name"" table" (k text PRIMARY KEY, v int);
INSERT INTO "odd schema"."Odd ""Name"" table" VALUES ('ü', 1), ('', 2), (' ', 3);
CREATE TABLE empty_table (x int);
GRANT SELECT ON sentry_events TO reader;
"""
ARCHIVE_DB = r"""
CREATE TABLE documents (id serial PRIMARY KEY, title text, body text);
INSERT INTO documents (title, body)
SELECT 'Dokument Nr. ' || i, repeat('Ελληνικά кириллица עברית ', 40) FROM generate_series(1, 2000) AS i;
"""


def fingerprint(server: PostgresServer) -> dict[str, object]:
    """What a restore must reproduce: databases, roles, memberships, every table's
    row count and checksum, and sequence positions."""
    found: dict[str, object] = {
        "databases": server.psql(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database "
            "WHERE datname <> 'template0' ORDER BY 1"
        ),
        "roles": server.psql(
            "SELECT rolname, rolsuper, rolcreatedb, rolcanlogin, rolconnlimit, rolpassword IS NOT NULL "
            "FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY 1"
        ),
        "members": server.psql(
            "SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
            "JOIN pg_roles m ON m.oid = a.member WHERE r.rolname !~ '^pg_' ORDER BY 1, 2"
        ),
    }
    databases = server.psql("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1").splitlines()
    for database in databases:
        relations = server.psql(
            "SELECT c.relkind, format('%I.%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'S') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' ORDER BY 2",
            database=database,
        ).splitlines()
        queries = []
        for kind, name in (line.split("|", 1) for line in relations):
            label = name.replace("'", "''")
            if kind == "S":
                queries.append(f"SELECT '{label}', last_value, is_called FROM {name};")
            else:
                queries.append(
                    f"SELECT '{label}', count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) "
                    f"FROM {name} x;"
                )
        found[database] = server.psql("\n".join(queries), database=database) if queries else ""
    return found


@pytest.fixture(scope="module")
def source() -> Iterator[PostgresServer]:
    server = new_server()
    try:
        server.psql(DATASET)
        server.psql(SENTRY_DB, database="sentry")
        server.psql(ARCHIVE_DB, database="archive-ü")
        server.psql("SELECT setval('sentry_events_id_seq', 90000)", database="sentry")
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def source_fingerprint(source: PostgresServer) -> dict[str, object]:
    found = fingerprint(source)
    assert "Ünïcødé rôle" in found["roles"] and "archive-ü" in found["databases"]
    assert "sentry_events|5005|" in found["sentry"]
    return found


@pytest.fixture(scope="module")
def good_backup(
    dist: Dist, source: PostgresServer, source_fingerprint: dict, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The directory of one backup of `source`, taken by the CronJob's script."""
    backup_dir = tmp_path_factory.mktemp("good-backup")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = backup_script(dist, source, backup_dir).run(source.path())
    assert result.returncode == 0, result.stderr
    (name,) = os.listdir(backup_dir)  # nothing else, not even a hidden partial file
    stamp = dt.datetime.strptime(DUMP_NAME.match(name).group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert before <= stamp <= dt.datetime.now(dt.UTC), "the file name carries the UTC time of the backup"
    assert stat.S_IMODE((backup_dir / name).stat().st_mode) == 0o600
    assert f"wrote {backup_dir / name}" in result.stdout and " databases, " in result.stdout
    with gzip.open(backup_dir / name, "rt", encoding="utf-8") as dump:
        text = dump.read()
    assert "CREATE ROLE reader;" in text and "CREATE ROLE writer;" in text, "roles are in the dump"
    assert text.rstrip().endswith("-- PostgreSQL database cluster dump complete\n--")
    return backup_dir


@pytest.fixture
def target() -> Iterator[PostgresServer]:
    server = new_server()
    try:
        yield server
    finally:
        server.cleanup()


def test_backup_restores_into_a_fresh_server_with_identical_contents(
    dist: Dist, good_backup: Path, source_fingerprint: dict, target: PostgresServer
) -> None:
    result = restore_script(dist, target, good_backup).run(target.path())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every table has the dump's row count and every role exists" in result.stdout
    assert fingerprint(target) == source_fingerprint
    # Password hashes came along: the restored roles log in with their old passwords.
    assert target.psql("SELECT current_user", database="analytics", user="reader", password="reader-pw") == "reader"
    assert target.psql("SELECT count(*) FROM sentry_events", database="sentry", user="reader", password="reader-pw")


def test_restore_into_the_running_database_undoes_later_changes(
    dist: Dist, good_backup: Path, source_fingerprint: dict, target: PostgresServer
) -> None:
    setup = restore_script(dist, target, good_backup).run(target.path())
    assert setup.returncode == 0, setup.stderr
    target.psql(
        "DELETE FROM sentry_events WHERE id % 3 = 0; UPDATE sentry_events SET message = 'changed' WHERE id < 10;"
        "DROP TABLE empty_table; CREATE TABLE later (x int); SELECT setval('sentry_events_id_seq', 5);",
        database="sentry",
    )
    target.psql("ALTER ROLE reader PASSWORD 'other'; DROP ROLE \"Ünïcødé rôle\"; ALTER ROLE writer NOCREATEDB;")
    assert fingerprint(target) != source_fingerprint

    result = restore_script(dist, target, good_backup).run(target.path())
    assert result.returncode == 0, result.stdout + result.stderr
    # The connecting superuser cannot drop or re-create itself: exactly these errors are allowed.
    assert 'ERROR:  role "sentry" already exists' in result.stdout
    assert "current user cannot be dropped" in result.stdout
    assert fingerprint(target) == source_fingerprint
    assert target.psql("SELECT 1", database="analytics", user="reader", password="reader-pw") == "1"


def test_restore_of_a_chosen_dump_restores_that_dump(
    source: PostgresServer, good_backup: Path, tmp_path: Path, target: PostgresServer
) -> None:
    backup_dir = tmp_path / "backups"
    shutil.copytree(good_backup, backup_dir)
    (chosen,) = dumps(backup_dir)
    newer = backup_dir / "sentry-29991231T235959Z.sql.gz"  # the "latest" one, which must not be used
    newer.write_bytes(gzip.compress(b"-- not this one\n"))
    code, chosen_dist = synth(tmp_path, VALUES.replace("enabled: true,", f"enabled: true, file: {chosen},"))
    assert code == 0
    result = restore_script(chosen_dist, target, backup_dir).run(target.path())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"chose {backup_dir / chosen}" in result.stdout
    assert target.psql("SELECT count(*) FROM sentry_events", database="sentry") == "5005"


@pytest.mark.parametrize("failure", ["wrong password", "server down"])
def test_a_failed_dump_exits_nonzero_and_leaves_nothing_that_looks_like_a_backup(
    failure: str, dist: Dist, source: PostgresServer, good_backup: Path, tmp_path: Path
) -> None:
    backup_dir = tmp_path / "backups"
    shutil.copytree(good_backup, backup_dir)
    before = {p.name: p.read_bytes() for p in backup_dir.iterdir()}
    overrides = {"PGPASSWORD": "not-the-password"} if failure == "wrong password" else {}
    script = backup_script(dist, source, backup_dir, **overrides)
    if failure == "server down":
        source.stop()
    try:
        result = script.run(source.path())
    finally:
        source.start()
    assert result.returncode != 0
    assert "no backup was written" in result.stderr
    after = {p.name: p.read_bytes() for p in backup_dir.iterdir()}
    assert after == before, "no new or partial file, and the earlier good dump is untouched"


def test_retention_keeps_exactly_the_newest_n(
    dist: Dist, source: PostgresServer, good_backup: Path, tmp_path: Path
) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (good,) = dumps(good_backup)
    old = [f"sentry-2024010{day}T030000Z.sql.gz" for day in range(1, 6)]
    for name in old:
        shutil.copy(good_backup / good, backup_dir / name)
    unrelated = ["notes.txt", "sentry-manual-copy.sql.gz", "pre-restore.sql.gz"]
    for name in unrelated:
        (backup_dir / name).write_text("keep me")

    result = backup_script(dist, source, backup_dir).run(source.path())  # keep: 3 in VALUES
    assert result.returncode == 0, result.stderr
    remaining = dumps(backup_dir)
    assert len(remaining) == 3
    assert remaining[:2] == old[-2:]
    assert remaining[2] > old[-1]
    assert sorted(set(os.listdir(backup_dir)) - set(remaining)) == sorted(unrelated)


def test_retention_never_removes_the_dump_just_written(
    dist: Dist, source: PostgresServer, good_backup: Path, tmp_path: Path
) -> None:
    # A clock that went backwards makes the new dump sort older than the others.
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (good,) = dumps(good_backup)
    future = [f"sentry-2999010{day}T030000Z.sql.gz" for day in range(1, 4)]
    for name in future:
        shutil.copy(good_backup / good, backup_dir / name)
    result = backup_script(dist, source, backup_dir).run(source.path())
    assert result.returncode == 0, result.stderr
    remaining = dumps(backup_dir)
    assert len(remaining) == 3 and remaining[1:] == future[1:]
    assert remaining[0] in result.stdout and remaining[0] not in future


def test_an_incomplete_dump_is_caught_by_verification(dist: Dist, source: PostgresServer, tmp_path: Path) -> None:
    # A pg_dumpall that stops early yet exits 0: only the verification can notice.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pg_dumpall").write_text(f'#!/bin/bash\n"{source.bin_dir}/pg_dumpall" "$@" | head -c 30000\n')
    (shim / "pg_dumpall").chmod(0o755)
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    result = backup_script(dist, source, backup_dir).run(f"{shim}:{source.path()}")
    assert result.returncode != 0
    assert "FAILED verification" in result.stderr
    assert os.listdir(backup_dir) == []


def test_a_backup_stopped_by_sigterm_removes_its_partial_file(
    dist: Dist, source: PostgresServer, tmp_path: Path
) -> None:
    # What a deadline or a pod deletion does. The stand-in pg_dumpall writes part of
    # a real dump and then hangs, so the signal arrives while the dump is running.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pg_dumpall").write_text(f'#!/bin/bash\n"{source.bin_dir}/pg_dumpall" "$@" | head -c 5000\nexec sleep 60\n')
    (shim / "pg_dumpall").chmod(0o755)
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    script = backup_script(dist, source, backup_dir)
    process = subprocess.Popen(
        script.command,
        env={**script.env, "PATH": f"{shim}:{source.path()}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            if [p for p in backup_dir.iterdir() if p.name.endswith(".sql.gz")]:
                break
            time.sleep(0.05)
        assert [p.name for p in backup_dir.iterdir() if p.name.startswith(".partial-")], "the dump has started"
        time.sleep(0.3)
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 143
    assert "interrupted" in stderr
    assert os.listdir(backup_dir) == []


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated", "not a dump"])
def test_restore_refuses_a_corrupt_dump_and_changes_nothing(
    damage: str, dist: Dist, good_backup: Path, tmp_path: Path, target: PostgresServer
) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (good,) = dumps(good_backup)
    data = bytearray((good_backup / good).read_bytes())
    if damage == "flipped bytes":
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    elif damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        data = bytearray(gzip.compress(b"SELECT 1;\n"))
    (backup_dir / good).write_bytes(bytes(data))
    target.psql("CREATE DATABASE untouched")
    before = fingerprint(target)

    result = restore_script(dist, target, backup_dir).run(target.path())
    assert result.returncode != 0
    assert "is corrupt or incomplete" in result.stderr and "nothing was changed" in result.stderr
    assert fingerprint(target) == before


def test_restore_refuses_while_other_clients_are_connected(
    dist: Dist, good_backup: Path, target: PostgresServer
) -> None:
    target.psql("CREATE DATABASE sentry")
    client = subprocess.Popen(
        [str(target.bin_dir / "psql"), "-X", "-c", "SELECT pg_sleep(30)"],
        env={"PATH": target.path(), **target.env(database="sentry")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        target.psql(
            "DO $$ BEGIN FOR i IN 1..100 LOOP PERFORM pg_sleep(0.05); EXIT WHEN EXISTS ("
            "SELECT 1 FROM pg_stat_activity WHERE datname = 'sentry'); END LOOP; END $$"
        )
        result = restore_script(dist, target, good_backup).run(target.path())  # waits 2 s (VALUES)
    finally:
        client.kill()
        client.wait()
    assert result.returncode != 0
    assert "sentry@sentry" in result.stderr and "scale web, worker and cron to 0" in result.stderr
    assert target.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'reader'") == "0", "nothing was restored"


def test_restore_fails_on_an_error_it_does_not_expect(
    dist: Dist, good_backup: Path, source_fingerprint: dict, target: PostgresServer
) -> None:
    first = restore_script(dist, target, good_backup).run(target.path())
    assert first.returncode == 0, first.stderr
    # A database the dump does not know, owned by a role the dump drops and re-creates:
    # DROP ROLE reader now fails, which is a real problem and must not be waved through.
    target.psql("CREATE DATABASE created_later OWNER reader")
    result = restore_script(dist, target, good_backup).run(target.path())
    assert result.returncode != 0
    assert 'role "reader" cannot be dropped because some objects depend on it' in result.stderr
    assert "unexpected errors" in result.stderr


def test_offsite_script_uploads_the_newest_dump(offsite_dist: Dist, good_backup: Path, tmp_path: Path) -> None:
    # The aws CLI is replaced by a stand-in that stores objects in a directory and logs
    # its arguments: the script is exercised without any network.
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (good,) = dumps(good_backup)
    for name in ("sentry-20240101T030000Z.sql.gz", "sentry-20240102T030000Z.sql.gz"):
        shutil.copy(good_backup / good, backup_dir / name)
    (backup_dir / ".partial-sentry-20240103T030000Z.sql.gz").write_text("half")
    bucket_dir, log = tmp_path / "s3", tmp_path / "aws.log"
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "aws").write_text(
        r"""#!/bin/bash
echo "$*" >> "$FAKE_AWS_LOG"
[[ $1 == --endpoint-url ]] && shift 2
case "$1 $2" in
  "s3 cp") src="${@: -2:1}"; dst="${@: -1}"; dst="$FAKE_S3_DIR/${dst#s3://}"
           mkdir -p "$(dirname "$dst")" && cp "$src" "$dst" ;;
  "s3api head-object") wc -c < "$FAKE_S3_DIR/$4/$6" | tr -d ' ' ;;
  *) exit 9 ;;
esac
"""
    )
    (shim / "aws").chmod(0o755)
    script = Script.of(offsite_dist.get("CronJob", "sentry-backup"), "offsite", S3_SECRETS, BACKUP_DIR=str(backup_dir))
    result = script.run(f"{shim}:/usr/bin:/bin", FAKE_S3_DIR=str(bucket_dir), FAKE_AWS_LOG=str(log))
    assert result.returncode == 0, result.stderr
    uploaded = bucket_dir / "sentry-backups" / "prod" / "db" / "sentry-20240102T030000Z.sql.gz"
    assert uploaded.read_bytes() == (backup_dir / "sentry-20240102T030000Z.sql.gz").read_bytes()
    assert [p.name for p in uploaded.parent.iterdir()] == [uploaded.name]
    assert all(line.startswith("--endpoint-url https://s3.example.test ") for line in log.read_text().splitlines())
