"""PostgreSQL backup and restore: the manifests, and the scripts run for real.

The scripts are never copied into this file: each test synthesizes the stack, takes
the container's command (["/bin/bash", "-c", script]) and environment from the YAML,
resolves secretKeyRefs from the test secrets, and runs it against a real PostgreSQL
server (Debian's PostgreSQL 15; the manifests use 9.6, see the notes in the scripts).
Only these environment values are replaced, because they name places in the cluster:
PGHOST and PGPORT (the test server instead of the sentry-postgresql Service),
BACKUP_DIR (a temporary directory instead of the volume mounted at /backups) and the
FILESTORE_DIR variables (temporary directories instead of the filestore volume). A
few tests also replace a tuning value to provoke a situation (a short lock wait).
PATH gets the PostgreSQL bin dir, as the postgres image has it. The test server's
superuser is `sentry` with the Secret's password and md5 authentication, as in the image.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from app.config import StackConfig
from app.values import ConfigError, parse_config
from tests.conftest import TEST_SECRETS, Dist, all_containers, find_container, manifest_env, pod_specs, synth
from tests.servers import PostgresServer, find_postgres_bin

BACKUP_NAME = re.compile(r"^sentry-(\d{8}T\d{6}Z)$")
S3_SECRETS = {**TEST_SECRETS, "s3-secret-access-key": "s3-test-secret-0c5e77"}
VALUES = """
postgres:
  backup:
    schedule: "30 1 * * *"
    keep: 3
    storage: {size: 20Gi, storage_class: backup-class}
    restore: {enabled: true, wait_for_clients_seconds: 2, filestore: true}
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
    assert container["securityContext"]["runAsUser"] == 999 and pod["securityContext"]["fsGroup"] == 999
    env = manifest_env(container)
    assert env["BACKUP_KEEP"] == "3" and env["BACKUP_COMPRESSION_LEVEL"] == "2" and env["BACKUP_JOBS"] == "2"
    assert env["BACKUP_ROLES"] == "auto"
    assert env["BACKUP_DATABASES"] == "all", "the stack's own server is backed up whole"
    assert env["PGDATABASE"] == "sentry", "the backup dumps the Sentry database itself"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert env["BACKUP_DIR"] == mounts["backups"]["mountPath"]
    assert mounts["backup-tmp"]["mountPath"] == "/tmp", "scratch space on a read-only root file system"
    # The filestore is archived with every backup and mounted read-only.
    assert env["BACKUP_FILESTORE_DIR"] == mounts["filestore"]["mountPath"] and mounts["filestore"]["readOnly"]
    filestore = next(v for v in pod["volumes"] if v["name"] == "filestore")
    assert filestore["persistentVolumeClaim"] == {"claimName": "sentry-filestore", "readOnly": True}
    assert dist.get("PersistentVolumeClaim", "sentry-filestore")
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
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["backups"]["readOnly"] is True
    env = manifest_env(container)
    assert env["RESTORE_FILE"] == "latest" and env["PGDATABASE"] == "postgres"
    assert env["RESTORE_JOBS"] == "2" and env["RESTORE_ROLES"] == "auto"
    # restore.filestore: true in VALUES: the filestore is mounted writable.
    assert env["RESTORE_FILESTORE_DIR"] == mounts["filestore"]["mountPath"] and not mounts["filestore"].get("readOnly")
    filestore = next(v for v in pod["volumes"] if v["name"] == "filestore")
    assert filestore["persistentVolumeClaim"] == {"claimName": "sentry-filestore", "readOnly": False}


def test_restore_leaves_the_filestore_alone_unless_asked(tmp_path: Path) -> None:
    code, plain = synth(tmp_path, VALUES.replace(", filestore: true", ""))
    assert code == 0
    (container,) = pod_specs(plain.get("Job", "sentry-restore"))[0]["containers"]
    assert manifest_env(container)["RESTORE_FILESTORE_DIR"] == ""
    assert "filestore" not in {m["name"] for m in container["volumeMounts"]}


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        ({"enabled": False, "restore": {"enabled": True}}, "needs backup.enabled"),
        ({"restore": {"file": "../etc/passwd"}}, "does not match"),
        # The earlier single-file format is not restorable by this Job (see the README).
        ({"restore": {"file": "sentry-20240101T030000Z.sql.gz"}}, "does not match"),
        ({"roles": "sometimes"}, "roles"),
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

    def start(self, path: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command,
            env={**self.env, "PATH": path},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def backup_script(
    dist: Dist, server: PostgresServer, backup_dir: Path, filestore: Path | None = None, **overrides: str
) -> Script:
    where = {
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "BACKUP_DIR": str(backup_dir),
        "BACKUP_FILESTORE_DIR": str(filestore) if filestore else "",
        **overrides,
    }
    return Script.of(dist.get("CronJob", "sentry-backup"), "backup", **where)


def restore_script(
    dist: Dist, server: PostgresServer, backup_dir: Path, filestore: Path | None = None, **overrides: str
) -> Script:
    where = {
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "BACKUP_DIR": str(backup_dir),
        "RESTORE_FILESTORE_DIR": str(filestore) if filestore else "",
        **overrides,
    }
    return Script.of(dist.get("Job", "sentry-restore"), "restore", **where)


def backups(backup_dir: Path) -> list[str]:
    return sorted(p.name for p in backup_dir.iterdir() if BACKUP_NAME.match(p.name))


def visible(backup_dir: Path) -> list[str]:
    """Everything in the directory except the lock file every run keeps there."""
    return sorted(p.name for p in backup_dir.iterdir() if p.name != ".backup.lock")


def toc(dump: Path) -> str:
    """What `pg_restore --list` says about a dump directory."""
    return subprocess.run(
        [str(find_postgres_bin() / "pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout


def new_server() -> PostgresServer:
    # Like the postgres image: the only superuser is `sentry`, with the Secret's password.
    return PostgresServer(superuser="sentry", password=TEST_SECRETS["postgres-password"], auth="md5").start()


def shim(tmp_path: Path, name: str, body: str) -> str:
    """A directory with a stand-in for one program, to put in front of PATH."""
    folder = tmp_path / "shim"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/bash\n" + body)
    (folder / name).chmod(0o755)
    return str(folder)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every directory (None) under root, by relative path,
    without the volume's lost+found and the backup runs' lock file."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if p.relative_to(root).parts[0] not in ("lost+found", ".backup.lock")
    }


DATASET = r"""
CREATE ROLE app_group NOLOGIN;
CREATE ROLE reader LOGIN PASSWORD 'reader-pw' CONNECTION LIMIT 5;
CREATE ROLE writer LOGIN CREATEDB PASSWORD 'writer-pw' IN ROLE app_group;
CREATE ROLE "Ünïcødé rôle" NOLOGIN;
CREATE DATABASE sentry OWNER sentry;
CREATE DATABASE "archive-ü" OWNER writer;
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
CREATE INDEX sentry_events_created ON sentry_events (created);
CREATE SCHEMA "odd schema";
CREATE TABLE "odd schema"."Odd ""Name"" table" (k text PRIMARY KEY, v int);
INSERT INTO "odd schema"."Odd ""Name"" table" VALUES ('ü', 1), ('', 2), (' ', 3);
CREATE TABLE "odd schema"."with\backslash" (x int);
INSERT INTO "odd schema"."with\backslash" VALUES (1);
CREATE TABLE empty_table (x int);
CREATE TABLE owned_by_writer (x int);
ALTER TABLE owned_by_writer OWNER TO writer;
INSERT INTO owned_by_writer VALUES (7);
GRANT SELECT ON sentry_events TO reader;
"""
ARCHIVE_DB = r"""
CREATE TABLE documents (id serial PRIMARY KEY, title text);
INSERT INTO documents (title) SELECT 'Dokument Nr. ' || i FROM generate_series(1, 200) AS i;
"""
# The maintenance database may hold something too (the restore re-creates it from template1).
POSTGRES_DB = r"""
CREATE TABLE admin_notes (note text);
INSERT INTO admin_notes VALUES ('kept in the postgres database');
"""


def fingerprint(server: PostgresServer) -> dict[str, object]:
    """What a restore must reproduce: the Sentry database's owner and encoding, roles,
    memberships, every table's full contents (count and checksum of all rows), and
    sequence positions."""
    found: dict[str, object] = {
        "database": server.psql(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database "
            "WHERE datname = 'sentry'"
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
    if not found["database"]:
        return found
    relations = server.psql(
        "SELECT c.relkind, format('%I.%I', n.nspname, c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'S', 'i') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' ORDER BY 2",
        database="sentry",
    ).splitlines()
    queries = []
    for kind, name in (line.split("|", 1) for line in relations):
        label = name.replace("'", "''")
        if kind == "S":
            queries.append(f"SELECT '{label}', last_value, is_called FROM {name};")
        elif kind == "i":
            queries.append(f"SELECT '{label}', pg_get_indexdef('{label}'::regclass);")
        else:
            queries.append(
                f"SELECT '{label}', count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')), "
                f"pg_get_userbyid((SELECT relowner FROM pg_class WHERE oid = '{label}'::regclass)) FROM {name} x;"
            )
    found["sentry"] = server.psql("\n".join(queries), database="sentry")
    # The server's other databases: their owners and their rows.
    found["others"] = server.psql(
        "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname NOT IN ('sentry', 'template0') "
        "AND NOT datistemplate ORDER BY 1"
    )
    if "archive-ü" in found["others"]:
        found["archive"] = server.psql(
            "SELECT count(*), md5(string_agg(id || title, ',' ORDER BY id)), pg_get_userbyid(relowner) "
            "FROM documents, pg_class WHERE relname = 'documents' GROUP BY relowner",
            database="archive-ü",
        )
    has_notes = server.psql("SELECT to_regclass('public.admin_notes') IS NOT NULL") == "t"
    found["postgres"] = server.psql("SELECT string_agg(note, ',') FROM admin_notes") if has_notes else None
    return found


@pytest.fixture(scope="module")
def source() -> Iterator[PostgresServer]:
    server = new_server()
    try:
        server.psql(DATASET)
        server.psql(SENTRY_DB, database="sentry")
        server.psql(ARCHIVE_DB, database="archive-ü")
        server.psql(POSTGRES_DB)
        server.psql("SELECT setval('sentry_events_id_seq', 90000)", database="sentry")
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def source_fingerprint(source: PostgresServer) -> dict[str, object]:
    found = fingerprint(source)
    assert "Ünïcødé rôle" in found["roles"] and found["database"] == "sentry|sentry|UTF8"
    assert "public.sentry_events|5005|" in found["sentry"] and "owned_by_writer|1|" in found["sentry"]
    assert found["archive"].startswith("200|") and "archive-ü|writer" in found["others"]
    assert found["postgres"] == "kept in the postgres database"
    return found


@pytest.fixture(scope="module")
def filestore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A filestore like Sentry's: nested directories of release files and debug symbols."""
    root = tmp_path_factory.mktemp("filestore")
    (root / "lost+found").mkdir()  # the volume's, not Sentry's: neither archived nor restored
    (root / "lost+found" / "x").write_text("fsck")
    (root / "1" / "2").mkdir(parents=True)
    (root / "1" / "2" / "app.js.map").write_text('{"version":3,"sources":["app.js"]}\n' * 500)
    (root / "1" / "debug symbols ü.dSYM").write_bytes(os.urandom(300_000))
    (root / "empty-dir").mkdir()
    (root / "empty-file").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def good_backup(
    dist: Dist,
    source: PostgresServer,
    source_fingerprint: dict,
    filestore: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The directory holding one backup of `source` (and `filestore`), taken by the CronJob's script."""
    backup_dir = tmp_path_factory.mktemp("good-backup")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = backup_script(dist, source, backup_dir, filestore).run(source.path())
    assert result.returncode == 0, result.stderr
    (name,) = visible(backup_dir)  # nothing else, not even a hidden partial directory
    stamp = dt.datetime.strptime(BACKUP_NAME.match(name).group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert before <= stamp <= dt.datetime.now(dt.UTC), "the name carries the UTC time of the backup"
    backup = backup_dir / name
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert {p.name for p in backup.iterdir()} == {
        "db", "db.rows", "databases", "roles.sql", "filestore.tar.gz", "MD5SUMS"
    }  # fmt: skip
    assert (backup / "db" / "toc.dat").is_file() and list((backup / "db").glob("*.dat.gz"))
    # Every other database of the server but the templates, in name order, with its rows.
    assert sorted(p.name for p in (backup / "databases").iterdir()) == ["1", "1.rows", "2", "2.rows"]
    assert "dbname: archive-ü" in toc(backup / "databases" / "1") and "dbname: postgres" in toc(
        backup / "databases" / "2"
    )
    assert (backup / "databases" / "1.rows").read_text().split("\t")[1] == "200\n"
    assert "dumping database sentry and 2 more (archive-ü, postgres) of 127.0.0.1" in result.stdout
    assert f"wrote {backup} (" in result.stdout
    assert "; 3 databases, 7 tables, 5211 rows, roles, filestore: " in result.stdout
    roles = (backup / "roles.sql").read_text(encoding="utf-8")
    assert "CREATE ROLE reader;" in roles and "CREATE ROLE writer;" in roles, "roles are in the backup"
    with tarfile.open(backup / "filestore.tar.gz") as archive:
        names = archive.getnames()
    assert "./1/2/app.js.map" in names and not [n for n in names if "lost+found" in n]
    return backup_dir


@pytest.fixture
def target() -> Iterator[PostgresServer]:
    server = new_server()
    try:
        yield server
    finally:
        server.cleanup()


def copy_of(good_backup: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the backup directory, and the one backup in it."""
    backup_dir = tmp_path / "backups"
    shutil.copytree(good_backup, backup_dir)
    (name,) = backups(backup_dir)
    return backup_dir, backup_dir / name


# --- round trips ------------------------------------------------------------------


def test_backup_restores_into_a_fresh_server_with_identical_contents(
    dist: Dist, good_backup: Path, source_fingerprint: dict, filestore: Path, target: PostgresServer, tmp_path: Path
) -> None:
    restored_files = tmp_path / "files"
    restored_files.mkdir()
    result = restore_script(dist, target, good_backup, restored_files).run(target.path())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restoring database sentry with 2 jobs" in result.stdout
    assert "restoring database archive-ü with 2 jobs" in result.stdout
    assert "checked: all 7 tables have the backup's row counts" in result.stdout
    # Every database came back, the second one with its 200 rows and its owner.
    assert fingerprint(target) == source_fingerprint
    assert target.psql("SELECT count(*) FROM documents", database="archive-ü") == "200"
    # Password hashes came along: the restored roles log in with their old passwords.
    assert target.psql("SELECT count(*) FROM sentry_events", database="sentry", user="reader", password="reader-pw")
    # The filestore, byte for byte, without the volume's lost+found.
    assert tree(restored_files) == tree(filestore)
    # ANALYZE ran: the planner has statistics for the restored tables.
    assert target.psql("SELECT count(*) FROM pg_stats WHERE tablename = 'sentry_events'", database="sentry") != "0"


def test_restore_into_the_running_database_undoes_later_changes(
    dist: Dist, good_backup: Path, source_fingerprint: dict, filestore: Path, target: PostgresServer, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    setup = restore_script(dist, target, good_backup, files).run(target.path())
    assert setup.returncode == 0, setup.stderr
    target.psql("CREATE DATABASE other; CREATE TABLE other_t (x int)")
    target.psql("CREATE TABLE kept (x int)", database="other")
    target.psql(
        "DELETE FROM sentry_events WHERE id % 3 = 0; UPDATE sentry_events SET message = 'changed' WHERE id < 10;"
        "DROP TABLE empty_table; CREATE TABLE later (x int); SELECT setval('sentry_events_id_seq', 5);",
        database="sentry",
    )
    target.psql("ALTER ROLE reader PASSWORD 'other'; DROP ROLE \"Ünïcødé rôle\"; ALTER ROLE writer NOCREATEDB;")
    target.psql("DELETE FROM documents WHERE id > 50; CREATE TABLE later (x int)", database="archive-ü")
    target.psql("DELETE FROM admin_notes")
    (files / "1" / "2" / "app.js.map").write_text("changed")
    (files / "uploaded-later").write_text("new")
    assert fingerprint(target) != source_fingerprint

    result = restore_script(dist, target, good_backup, files).run(target.path())
    assert result.returncode == 0, result.stdout + result.stderr
    # Existing roles cannot be created again: exactly these errors are allowed.
    assert 'ERROR:  role "sentry" already exists' in result.stdout
    assert 'ERROR:  role "reader" already exists' in result.stdout
    restored = fingerprint(target)
    assert restored.pop("others") == "archive-ü|writer\nother|sentry\npostgres|sentry"
    assert restored == {k: v for k, v in source_fingerprint.items() if k != "others"}
    assert target.psql("SELECT 1", database="sentry", user="reader", password="reader-pw") == "1"
    assert tree(files) == tree(filestore)
    # A database the backup does not hold is left alone.
    assert target.psql("SELECT count(*) FROM pg_class WHERE relname = 'kept'", database="other") == "1"


def test_restore_of_a_chosen_backup_restores_that_backup(
    good_backup: Path, tmp_path: Path, target: PostgresServer
) -> None:
    backup_dir, chosen = copy_of(good_backup, tmp_path)
    newer = backup_dir / "sentry-29991231T235959Z"  # the "latest" one, which must not be used
    newer.mkdir()
    (newer / "MD5SUMS").write_text("")
    code, chosen_dist = synth(tmp_path, VALUES.replace("enabled: true,", f"enabled: true, file: {chosen.name},"))
    assert code == 0
    result = restore_script(chosen_dist, target, backup_dir).run(target.path())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"chose {chosen} (" in result.stdout
    assert target.psql("SELECT count(*) FROM sentry_events", database="sentry") == "5005"


def test_a_user_who_is_not_a_superuser_backs_up_the_database_without_roles(
    dist: Dist, source: PostgresServer, tmp_path: Path
) -> None:
    # As on a managed PostgreSQL: the Sentry database's owner, no superuser. auto skips the roles.
    source.psql("CREATE ROLE plain_owner LOGIN PASSWORD 'plain-pw'; CREATE DATABASE plain_db OWNER plain_owner")
    source.psql(
        "CREATE TABLE t AS SELECT generate_series(1, 10) AS x",
        database="plain_db",
        user="plain_owner",
        password="plain-pw",
    )
    owner = {"PGUSER": "plain_owner", "PGPASSWORD": "plain-pw", "PGDATABASE": "plain_db"}
    # The whole server (the in-cluster default) needs a superuser: refused, not cut short.
    refused = backup_script(dist, source, tmp_path, **owner).run(source.path())
    assert refused.returncode != 0 and "plain_owner is not a superuser and cannot read every database" in refused.stderr
    assert visible(tmp_path) == []
    # One database (what an external server's manifests say): its owner can.
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    script = backup_script(dist, source, backup_dir, **owner, BACKUP_DATABASES="one")
    result = script.run(source.path())
    assert result.returncode == 0, result.stderr
    assert "roles: no" in result.stdout and "dumping database plain_db of" in result.stdout
    (name,) = backups(backup_dir)
    assert not (backup_dir / name / "roles.sql").exists() and not (backup_dir / name / "databases").exists()
    assert (backup_dir / name / "db.rows").read_text().split("\t")[1] == "10\n"
    # Asked to dump roles anyway, it fails rather than silently leaving them out.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    refused = backup_script(
        dist,
        source,
        other_dir,
        **owner,
        BACKUP_DATABASES="one",
        BACKUP_ROLES="yes",
    ).run(source.path())
    assert refused.returncode != 0 and "pg_dumpall --globals-only exited" in refused.stderr
    assert visible(other_dir) == []


# --- failures of the backup ----------------------------------------------------------


@pytest.mark.parametrize("failure", ["wrong password", "server down"])
def test_a_failed_backup_exits_nonzero_and_leaves_nothing_that_looks_like_a_backup(
    failure: str, dist: Dist, source: PostgresServer, good_backup: Path, tmp_path: Path
) -> None:
    backup_dir, _ = copy_of(good_backup, tmp_path)
    before = tree(backup_dir)
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
    assert tree(backup_dir) == before, "no new or partial directory, and the earlier good backup is untouched"


# pg_dump stand-ins that run the real pg_dump, exit 0, and then damage what it wrote
# in a way only one check of the verification can notice.
DAMAGE = {
    # The gzip trailer's CRC: the text decompresses complete and ends with the
    # end-of-data marker, only gzip's exit status says it is wrong, and only
    # `pipefail` carries that status out of `gzip -dc | awk`.
    "bad crc": 'printf "\\x00\\x00\\x00\\x00" | dd of="$f" bs=1 seek=$(($(stat -c %s "$f") - 8)) '
    "conv=notrunc status=none",
    # A table's data cut short but validly compressed: only the end-of-data marker check sees it.
    "cut short": 'gzip -dc "$f" | head -n 100 | gzip >"$f.tmp" && mv "$f.tmp" "$f"',
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_verification_catches_what_pg_dump_wrote_wrong(
    damage: str, dist: Dist, source: PostgresServer, tmp_path: Path
) -> None:
    path = shim(
        tmp_path,
        "pg_dump",
        f'"{source.bin_dir}/pg_dump" "$@" || exit\n'
        'for a; do [[ $a == --file=* ]] && out="${a#--file=}"; done\n'
        'f="$(ls -S "$out"/*.dat.gz | head -n 1)"\n' + DAMAGE[damage] + "\n",
    )
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    result = backup_script(dist, source, backup_dir).run(f"{path}:{source.path()}")
    assert result.returncode != 0
    assert "damaged or incomplete" in result.stderr and "no backup was written" in result.stderr
    assert visible(backup_dir) == []


def test_verification_catches_a_roles_dump_cut_short(dist: Dist, source: PostgresServer, tmp_path: Path) -> None:
    # pg_dumpall exits 0 but its output stops early: only the completion trailer tells.
    path = shim(tmp_path, "pg_dumpall", f'"{source.bin_dir}/pg_dumpall" "$@" | head -n 12\n')
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    result = backup_script(dist, source, backup_dir).run(f"{path}:{source.path()}")
    assert result.returncode != 0
    assert "lacks pg_dumpall's completion trailer" in result.stderr and "no backup was written" in result.stderr
    assert visible(backup_dir) == []


@pytest.mark.parametrize("status", [1, 2])
def test_tar_status_decides_between_a_warning_and_a_failed_filestore_archive(
    status: int, dist: Dist, source: PostgresServer, filestore: Path, tmp_path: Path
) -> None:
    # GNU tar writes a valid archive and then exits 1 (a file changed while it was read:
    # Sentry may write during a backup) or 2 (a file could not be read). The archive
    # lists fine either way; only tar's status, kept apart from gzip's, tells them apart.
    path = shim(tmp_path, "tar", f'/usr/bin/tar "$@" || exit\n[[ " $* " == *" -cf "* ]] && exit {status}\nexit 0\n')
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    result = backup_script(dist, source, backup_dir, filestore).run(f"{path}:{source.path()}")
    if status == 1:
        assert result.returncode == 0, result.stderr
        assert "warning: a file changed while it was archived" in result.stderr
        assert len(backups(backup_dir)) == 1
    else:
        assert result.returncode != 0
        assert "archiving the filestore" in result.stderr and "failed (tar exited 2)" in result.stderr
        assert visible(backup_dir) == []


def test_a_backup_stopped_by_sigterm_removes_its_partial_directory(
    dist: Dist, source: PostgresServer, tmp_path: Path
) -> None:
    # What a deadline or a pod deletion does. The stand-in pg_dump writes a real dump
    # and then hangs, so the signal arrives while the dump is running.
    path = shim(tmp_path, "pg_dump", f'"{source.bin_dir}/pg_dump" "$@"\nexec sleep 60\n')
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    process = backup_script(dist, source, backup_dir).start(f"{path}:{source.path()}")
    try:
        for _ in range(200):
            if list(backup_dir.glob(".partial-*/db/toc.dat")):
                break
            time.sleep(0.05)
        assert list(backup_dir.glob(".partial-*/db/toc.dat")), "the dump has started"
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 143
    assert "interrupted" in stderr
    assert visible(backup_dir) == []


def test_a_manual_run_beside_the_scheduled_one_waits_and_never_touches_its_partial_directory(
    dist: Dist, source: PostgresServer, tmp_path: Path
) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    # A leftover of a run that was SIGKILLed: removed by the next run that holds the lock.
    (backup_dir / ".partial-sentry-20240101T030000Z.killed-run").mkdir()
    # The "scheduled" run dumps slowly: its pg_dump waits for a go file before it starts.
    go = tmp_path / "go"
    path = shim(tmp_path, "pg_dump", f'while [[ ! -e "{go}" ]]; do sleep 0.05; done\n"{source.bin_dir}/pg_dump" "$@"\n')
    scheduled = backup_script(dist, source, backup_dir).start(f"{path}:{source.path()}")
    try:
        for _ in range(200):
            if list(backup_dir.glob(".partial-sentry-*.??????")):
                break
            time.sleep(0.05)
        (partial,) = backup_dir.glob(".partial-sentry-*.??????")
        assert not (backup_dir / ".partial-sentry-20240101T030000Z.killed-run").exists()
        # A manual run that may wait only a second gives up and leaves the partial directory alone.
        impatient = backup_script(dist, source, backup_dir, BACKUP_LOCK_WAIT_SECONDS="1").run(source.path())
        assert impatient.returncode != 0 and "another backup run still holds" in impatient.stderr
        assert partial.is_dir()
        # One that may wait (the manifest's value) starts once the scheduled run is done.
        manual = backup_script(dist, source, backup_dir).start(source.path())
        time.sleep(0.5)
        assert partial.is_dir() and manual.poll() is None
        go.touch()
        scheduled_out, scheduled_err = scheduled.communicate(timeout=60)
        manual_out, manual_err = manual.communicate(timeout=60)
    finally:
        scheduled.kill()
    assert scheduled.returncode == 0, scheduled_err
    assert manual.returncode == 0, manual_err
    assert "waiting up to 3600s" in manual_out
    first, second = backups(backup_dir)
    assert f"wrote {backup_dir / first} (" in scheduled_out and f"wrote {backup_dir / second} (" in manual_out
    assert visible(backup_dir) == [first, second]


# --- retention and space -----------------------------------------------------------------


def test_retention_keeps_exactly_the_newest_n(
    dist: Dist, source: PostgresServer, good_backup: Path, tmp_path: Path
) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (good,) = backups(good_backup)
    old = [f"sentry-2024010{day}T030000Z" for day in range(1, 6)]
    for name in old:
        shutil.copytree(good_backup / good, backup_dir / name)
    unrelated = ["notes.txt", "sentry-manual-copy", "sentry-20240101T030000Z.sql.gz"]
    for name in unrelated:
        (backup_dir / name).write_text("keep me")

    result = backup_script(dist, source, backup_dir).run(source.path())  # keep: 3 in VALUES
    assert result.returncode == 0, result.stderr
    remaining = backups(backup_dir)
    assert len(remaining) == 3
    assert remaining[:2] == old[-2:]
    assert remaining[2] > old[-1]
    assert sorted(set(visible(backup_dir)) - set(remaining)) == sorted(unrelated)


def test_retention_never_removes_the_backup_just_written(
    dist: Dist, source: PostgresServer, good_backup: Path, tmp_path: Path
) -> None:
    # A clock that went backwards makes the new backup sort older than the others.
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (good,) = backups(good_backup)
    future = [f"sentry-2999010{day}T030000Z" for day in range(1, 4)]
    for name in future:
        shutil.copytree(good_backup / good, backup_dir / name)
    result = backup_script(dist, source, backup_dir).run(source.path())
    assert result.returncode == 0, result.stderr
    remaining = backups(backup_dir)
    assert len(remaining) == 3 and remaining[1:] == future[1:]
    assert remaining[0] in result.stdout and remaining[0] not in future


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """A size-limited file system (tmpfs) of the given size, like a full backup volume."""
    mounted: list[Path] = []

    def make(size: int) -> Path:
        where = tmp_path / f"volume{len(mounted)}"
        where.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(where)
        return where

    try:
        yield make
    finally:
        for where in mounted:
            subprocess.run(["umount", str(where)], check=False)


def backup_bytes(backup: Path) -> int:
    return sum(p.stat().st_size for p in backup.rglob("*") if p.is_file())


def test_a_short_volume_is_pruned_before_dumping_as_far_as_keep_allows(
    dist: Dist, source: PostgresServer, good_backup: Path, small_volume: Callable[[int], Path]
) -> None:
    (good,) = backups(good_backup)
    size = backup_bytes(good_backup / good)
    # Three old backups and room for half of another: keep 3 allows removing one now.
    volume = small_volume(int(size * 3.6) + 2**20)
    old = [f"sentry-2024010{day}T030000Z" for day in range(1, 4)]
    for name in old:
        shutil.copytree(good_backup / good, volume / name)
    assert shutil.disk_usage(volume).free < size
    result = backup_script(dist, source, volume).run(source.path())
    assert result.returncode == 0, result.stderr
    assert f"removing {volume / old[0]} before dumping (keeping the newest 2)" in result.stdout
    remaining = backups(volume)
    assert remaining[:2] == old[1:] and len(remaining) == 3


def test_a_volume_too_small_even_after_pruning_fails_with_the_space_needed(
    dist: Dist, source: PostgresServer, good_backup: Path, small_volume: Callable[[int], Path]
) -> None:
    (good,) = backups(good_backup)
    size = backup_bytes(good_backup / good)
    volume = small_volume(int(size * 2.5) + 2**20)
    old = [f"sentry-2024010{day}T030000Z" for day in range(1, 3)]  # keep 3: both must stay
    for name in old:
        shutil.copytree(good_backup / good, volume / name)
    before = tree(volume)
    result = backup_script(dist, source, volume).run(source.path())
    assert result.returncode != 0
    assert re.search(r"has \d+ MiB free, and this backup needs about \d+ MiB", result.stderr)
    assert "grow the backup volume or lower keep" in result.stderr
    assert tree(volume) == before, "nothing removed, nothing left behind"


def test_pruning_never_removes_the_newest_backup_even_with_keep_1(
    dist: Dist, source: PostgresServer, good_backup: Path, small_volume: Callable[[int], Path]
) -> None:
    # keep 1 and no room for a second backup: removing the only one first would leave
    # nothing if this dump then failed, so the run fails instead and keeps it.
    (good,) = backups(good_backup)
    size = backup_bytes(good_backup / good)
    volume = small_volume(int(size * 1.6) + 2**20)
    shutil.copytree(good_backup / good, volume / "sentry-20240101T030000Z")
    assert shutil.disk_usage(volume).free < size
    before = tree(volume)
    result = backup_script(dist, source, volume, BACKUP_KEEP="1").run(source.path())
    assert result.returncode != 0
    assert "grow the backup volume or lower keep" in result.stderr
    assert tree(volume) == before, "the only backup stays, nothing left behind"


def test_a_volume_that_fills_up_during_the_dump_leaves_nothing_behind(
    dist: Dist, source: PostgresServer, good_backup: Path, small_volume: Callable[[int], Path]
) -> None:
    (good,) = backups(good_backup)
    volume = small_volume(backup_bytes(good_backup / good) // 2)  # no earlier backup: no estimate
    result = backup_script(dist, source, volume).run(source.path())
    assert result.returncode != 0
    assert "No space left on device" in result.stderr
    assert re.search(
        r"pg_dump exited \d+ on database sentry \(\d+ MiB free on .*; the database is \d+ MiB", result.stderr
    )
    assert visible(volume) == []


# --- the restore's defenses --------------------------------------------------------------


def rewrite_md5sums(backup: Path) -> None:
    """Make MD5SUMS match the files again, as someone who edits a backup could."""
    files = sorted(str(p.relative_to(backup)) for p in backup.rglob("*") if p.is_file() and p.name != "MD5SUMS")
    sums = subprocess.run(["md5sum", *files], cwd=backup, capture_output=True, text=True, check=True).stdout
    (backup / "MD5SUMS").write_text(sums)


@pytest.mark.parametrize(
    "damage", ["flipped bytes", "missing file", "extra file", "no MD5SUMS", "unreadable TOC", "row counts cut"]
)
def test_restore_refuses_a_corrupt_backup_and_changes_nothing(
    damage: str, dist: Dist, good_backup: Path, tmp_path: Path, target: PostgresServer
) -> None:
    backup_dir, backup = copy_of(good_backup, tmp_path)
    biggest = max((backup / "db").glob("*.dat.gz"), key=lambda p: p.stat().st_size)
    if damage == "flipped bytes":
        data = bytearray(biggest.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
        biggest.write_bytes(bytes(data))
    elif damage == "missing file":
        biggest.unlink()
    elif damage == "extra file":
        (backup / "db" / "9999.dat.gz").write_bytes(gzip.compress(b"\\.\n\n\n"))
    elif damage == "no MD5SUMS":
        (backup / "MD5SUMS").unlink()
    elif damage == "row counts cut":
        # db.rows loses a table (MD5SUMS updated to match): it no longer covers the TOC.
        lines = (backup / "db.rows").read_text().splitlines()
        (backup / "db.rows").write_text("\n".join(lines[1:]) + "\n")
        rewrite_md5sums(backup)
    else:
        (backup / "db" / "toc.dat").write_bytes(b"PGDMP" + os.urandom(200))
        rewrite_md5sums(backup)
    target.psql("CREATE DATABASE sentry; CREATE ROLE untouched")
    target.psql("CREATE TABLE mine (x int); INSERT INTO mine VALUES (1)", database="sentry")
    files = tmp_path / "files"
    files.mkdir()
    (files / "mine").write_text("keep")
    before = (fingerprint(target), tree(files))

    result = restore_script(dist, target, backup_dir, files).run(target.path())
    assert result.returncode != 0
    assert "is corrupt or incomplete" in result.stderr and "nothing was changed" in result.stderr
    assert (fingerprint(target), tree(files)) == before


def test_the_post_restore_check_catches_a_table_that_differs_from_the_backup(
    dist: Dist, good_backup: Path, tmp_path: Path, target: PostgresServer
) -> None:
    # db.rows says one row more than the table's data file holds (MD5SUMS updated to
    # match): only the comparison after the restore can tell.
    backup_dir, backup = copy_of(good_backup, tmp_path)
    lines = (backup / "db.rows").read_text().splitlines()
    entry, rows = lines[0].split("\t")
    lines[0] = f"{entry}\t{int(rows) + 1}"
    (backup / "db.rows").write_text("\n".join(lines) + "\n")
    rewrite_md5sums(backup)
    result = restore_script(dist, target, backup_dir).run(target.path())
    assert result.returncode != 0
    assert f" rows, the backup has {int(rows) + 1}" in result.stderr
    assert "the restored database sentry differs from the backup" in result.stderr


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


def test_restore_fails_on_an_error_it_does_not_expect(dist: Dist, good_backup: Path, target: PostgresServer) -> None:
    # On this server app_group is a member of writer, so the backup's
    # "GRANT app_group TO writer" would make a circle: a real error, not waved through.
    target.psql("CREATE ROLE writer; CREATE ROLE app_group IN ROLE writer")
    result = restore_script(dist, target, good_backup).run(target.path())
    assert result.returncode != 0
    assert "unexpected errors" in result.stderr and "restoring the roles failed" in result.stderr
    assert 'role "app_group" is a member of role "writer"' in result.stderr


def test_restore_fails_when_psql_dies_while_restoring_the_roles(
    dist: Dist, good_backup: Path, target: PostgresServer, tmp_path: Path
) -> None:
    # psql killed (e.g. OOM) before it replayed the roles: it prints no error, only its
    # exit status tells. The roles exist here, so the rest of the restore would succeed.
    target.psql("CREATE ROLE writer; CREATE ROLE reader")
    path = shim(
        tmp_path,
        "psql",
        f'for a; do [[ $a == */roles.sql ]] && kill -KILL $$; done\nexec "{target.bin_dir}/psql" "$@"\n',
    )
    result = restore_script(dist, target, good_backup).run(f"{path}:{target.path()}")
    assert result.returncode != 0
    assert "restoring the roles failed (psql exited 137)" in result.stderr
    assert target.psql("SELECT count(*) FROM pg_database WHERE datname = 'sentry'") == "0", "nothing restored after"


def test_restore_stops_when_pg_restore_fails(dist: Dist, good_backup: Path, target: PostgresServer) -> None:
    # Without the roles (RESTORE_ROLES no) on a server that lacks them, pg_restore
    # cannot give a table to its owner: the restore must stop there and say so, not
    # carry on to the filestore and the checks as if the database were complete.
    result = restore_script(dist, target, good_backup, RESTORE_ROLES="no").run(target.path())
    assert result.returncode != 0
    assert 'role "writer" does not exist' in result.stderr
    assert "restore: FAILED: pg_restore exited 1 on database sentry; the server may be partly restored" in result.stderr
    assert "checked:" not in result.stdout and "done in" not in result.stdout


def test_a_filestore_restore_needs_a_backup_with_a_filestore(
    dist: Dist, source: PostgresServer, tmp_path: Path, target: PostgresServer
) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    taken = backup_script(dist, source, backup_dir).run(source.path())  # without BACKUP_FILESTORE_DIR
    assert taken.returncode == 0, taken.stderr
    result = restore_script(dist, target, backup_dir, tmp_path).run(target.path())
    assert result.returncode != 0 and "has no filestore.tar.gz; nothing was changed" in result.stderr


# --- offsite ---------------------------------------------------------------------------------


def test_offsite_script_uploads_the_newest_backup(offsite_dist: Dist, good_backup: Path, tmp_path: Path) -> None:
    # The aws CLI is replaced by a stand-in that stores objects in a directory and logs
    # its arguments: the script is exercised without any network.
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (good,) = backups(good_backup)
    for name in ("sentry-20240101T030000Z", "sentry-20240102T030000Z"):
        shutil.copytree(good_backup / good, backup_dir / name)
    (backup_dir / ".partial-sentry-20240103T030000Z.abcdef").mkdir()
    bucket_dir, log = tmp_path / "s3", tmp_path / "aws.log"
    path = shim(
        tmp_path,
        "aws",
        r"""echo "$*" >> "$FAKE_AWS_LOG"
[[ $1 == --endpoint-url ]] && shift 2
case "$1 $2" in
  "s3 cp") src="${@: -2:1}"; dst="$FAKE_S3_DIR/${*: -1}"; dst="${dst/s3:\/\//}"
           if [[ $* == *--recursive* ]]; then
             mkdir -p "$dst" && cp -r "$src"/. "$dst" && rm -f "$dst/MD5SUMS"
           else
             mkdir -p "$(dirname "$dst")" && cp "$src" "$dst"
           fi ;;
  "s3api list-objects-v2") cd "$FAKE_S3_DIR/$4" && find "$6" -type f -printf '%p\t%s\n' ;;
  *) exit 9 ;;
esac
""",
    )
    script = Script.of(offsite_dist.get("CronJob", "sentry-backup"), "offsite", S3_SECRETS, BACKUP_DIR=str(backup_dir))
    result = script.run(f"{path}:/usr/bin:/bin", FAKE_S3_DIR=str(bucket_dir), FAKE_AWS_LOG=str(log))
    assert result.returncode == 0, result.stderr
    uploaded = bucket_dir / "sentry-backups" / "prod" / "db" / "sentry-20240102T030000Z"
    assert tree(uploaded) == tree(backup_dir / "sentry-20240102T030000Z")
    assert [p.name for p in uploaded.parent.iterdir()] == [uploaded.name]
    calls = log.read_text().splitlines()
    assert all(line.startswith("--endpoint-url https://s3.example.test ") for line in calls)
    assert calls[1].endswith("/MD5SUMS s3://sentry-backups/prod/db/sentry-20240102T030000Z/MD5SUMS"), "last"
