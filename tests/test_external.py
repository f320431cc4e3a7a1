"""External PostgreSQL and Redis: the stack runs neither, and every client reaches the
configured servers, over TLS as configured, through NetworkPolicies that allow exactly them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import TEST_SECRETS, Dist, all_containers, find_container, manifest_env, pod_specs, synth
from tests.servers import PostgresServer

PG_HOST = "sentry.abc123.eu-central-1.rds.amazonaws.com"
EXTERNAL = f"""
postgres:
  image: postgres:15.8
  external:
    host: {PG_HOST}
    sslmode: verify-full
    ca: {{secret: rds-ca, key: global-bundle.pem}}
    cidrs: [10.0.8.0/24]
redis:
  external: {{host: 10.0.9.15, port: 6380, db: 2}}
"""


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    code, dist = synth(tmp_path_factory.mktemp("external"), EXTERNAL)
    assert code == 0
    return dist


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "<secret>") for e in container.get("env", [])}


def test_no_database_or_broker_runs_in_the_cluster(external: Dist) -> None:
    assert not external.of_kind("StatefulSet")
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in external.objects}
    assert not components & {"postgresql", "redis"}


def test_every_client_uses_the_external_servers(external: Dist) -> None:
    checked = 0
    for obj in external.objects:
        for container in all_containers(obj):
            env = _env(container)
            if "PGHOST" in env:
                assert env["PGHOST"] == PG_HOST and env["PGPORT"] == "5432", container["name"]
                assert container["image"] == "postgres:15.8", "the client image follows postgres.image"
                checked += 1
            if "SENTRY_POSTGRES_HOST" in env:
                assert env["SENTRY_POSTGRES_HOST"] == PG_HOST
                assert (env["SENTRY_REDIS_HOST"], env["SENTRY_REDIS_PORT"], env["SENTRY_REDIS_DB"]) == (
                    "10.0.9.15",
                    "6380",
                    "2",
                )
                checked += 1
            if "REDIS_HOST" in env:
                assert (env["REDIS_HOST"], env["REDIS_PORT"]) == ("10.0.9.15", "6380")
                checked += 1
    assert checked >= 9  # waits, migrations, mark, and the five Sentry containers at least


def test_every_postgres_client_verifies_the_server_with_the_mounted_ca(external: Dist) -> None:
    for obj in external.objects:
        for spec in pod_specs(obj):
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for container in spec.get("initContainers", []) + spec["containers"]:
                env = _env(container)
                if "PGHOST" not in env and "SENTRY_POSTGRES_HOST" not in env:
                    continue
                assert env["PGSSLMODE"] == "verify-full", container["name"]
                cert = Path(env["PGSSLROOTCERT"])
                (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == cert.parent]
                assert mount["readOnly"] is True
                source = volumes[mount["name"]]["secret"]
                assert source["secretName"] == "rds-ca"
                # The file the client reads is the key the Secret holds (no items remap it).
                assert cert.name == "global-bundle.pem" and "items" not in source


def test_network_policies_allow_exactly_the_external_addresses(external: Dist) -> None:
    web = external.get("NetworkPolicy", "sentry-web")
    blocks = {
        (peer["ipBlock"]["cidr"], port["port"])
        for rule in web["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
        for port in rule["ports"]
    }
    assert ("10.0.8.0/24", 5432) in blocks and ("10.0.9.15/32", 6380) in blocks
    # The addresses were named on purpose: no private range is carved out of them.
    for rule in web["spec"]["egress"]:
        for peer in rule.get("to", []):
            if peer.get("ipBlock", {}).get("cidr") in {"10.0.8.0/24", "10.0.9.15/32"}:
                assert "except" not in peer["ipBlock"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            "postgres:\n  external: {host: db.example.com, cidrs: [10.0.0.0/24]}\n",
            "sslmode verify-full needs ca",
        ),
        ("redis:\n  external: {host: redis.example.com}\n", "redis.external.cidrs is required"),
        ("postgres:\n  external: {host: db.example.com, sslmode: require}\n", "postgres.external.cidrs is required"),
        (
            "postgres:\n  external:\n    host: 10.1.2.3\n    sslmode: verify-ca\n    ca: {secret: a, config_map: b}\n",
            "exactly one of secret or config_map",
        ),
        # verify-full (the default) by IP address: Sentry's psycopg2 (libpq 11) would refuse
        # every certificate; the message names the field and the two ways out.
        (
            "postgres:\n  external: {host: 10.1.2.3, ca: {secret: db-ca}}\n",
            "postgres.external: sslmode: verify-full cannot verify a server reached by its IP address",
        ),
    ],
)
def test_incomplete_external_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], values: str, message: str
) -> None:
    code, _ = synth(tmp_path, values)
    assert code == 2
    assert message in capsys.readouterr().err


def test_an_ip_address_host_is_verified_with_verify_ca(tmp_path: Path) -> None:
    values = "postgres:\n  external: {host: 10.1.2.3, sslmode: verify-ca, ca: {secret: db-ca}}\n"
    code, dist = synth(tmp_path, values)
    assert code == 0
    (job,) = dist.of_kind("Job")
    assert _env(find_container(job, "wait-for-postgres"))["PGSSLMODE"] == "verify-ca"


def test_external_passwords_are_never_invented(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = {k: v for k, v in TEST_SECRETS.items() if k != "postgres-password"}
    code, _ = synth(tmp_path, EXTERNAL, secrets=secrets)
    assert code == 2
    assert "secret 'postgres-password'" in capsys.readouterr().err
    assert not (tmp_path / "secrets.yaml").exists() or "postgres-password" not in yaml.safe_load(
        (tmp_path / "secrets.yaml").read_text()
    )


# An ElastiCache without in-transit encryption: it allows no AUTH (only with TLS, which
# Sentry 9.1.2's kombu 3.0.35 cannot use), so the stack must run without a Redis password.
NO_REDIS_PASSWORD = """
redis:
  external: {host: 10.0.9.15, cidrs: [10.0.9.0/24], password: false}
"""


def test_an_external_redis_without_a_password_is_reached_without_one(tmp_path: Path) -> None:
    secrets = {k: v for k, v in TEST_SECRETS.items() if k != "redis-password"}
    code, dist = synth(tmp_path, NO_REDIS_PASSWORD, secrets=secrets)
    assert code == 0, "no redis-password is needed, so none is asked for"
    (secret,) = dist.of_kind("Secret")
    assert "redis-password" not in secret.get("data", {}) | secret.get("stringData", {})
    waits = 0
    for obj in dist.objects:
        for container in all_containers(obj):
            refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", []) if "valueFrom" in e}
            assert "redis-password" not in refs, container["name"]
            env = _env(container)
            assert "SENTRY_REDIS_PASSWORD" not in env and "REDISCLI_AUTH" not in env, container["name"]
            if container["name"] == "wait-for-redis":
                assert env["REDIS_AUTH"] == "none"
                waits += 1
    assert waits == 1  # the migration Job's
    # The NetworkPolicies still let the Sentry pods reach exactly that server.
    web = dist.get("NetworkPolicy", "sentry-web")
    assert {"ipBlock": {"cidr": "10.0.9.0/24"}} in [p for r in web["spec"]["egress"] for p in r.get("to", [])]


def test_a_password_stays_required_unless_the_setting_says_none(external: Dist) -> None:
    (job,) = external.of_kind("Job")
    env = _env(find_container(job, "wait-for-redis"))
    assert env["REDISCLI_AUTH"] == "<secret>" and "REDIS_AUTH" not in env


# --- TLS against a real server ----------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, Path]]:
    """A PostgreSQL server with a certificate for 127.0.0.1 from a throwaway CA."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    certs = Path(tmp_path_factory.mktemp("certs"))
    run = lambda *a: subprocess.run(a, cwd=certs, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")  # fmt: skip
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    # Readable by the `postgres` account, which pytest's private tmp folders are not.
    server_dir = Path(tempfile.mkdtemp(prefix="sentry-k8s-tls-"))
    for name in ("server.crt", "server.key"):
        shutil.copy(certs / name, server_dir / name)
        (server_dir / name).chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(server_dir / name, "postgres", "postgres")
    server_dir.chmod(0o755)
    settings = {
        "ssl": "on",
        "ssl_cert_file": f"'{server_dir / 'server.crt'}'",
        "ssl_key_file": f"'{server_dir / 'server.key'}'",
    }
    with PostgresServer(superuser="sentry", password=TEST_SECRETS["postgres-password"], settings=settings) as pg:
        pg.psql("CREATE DATABASE sentry")
        yield pg, certs
    shutil.rmtree(server_dir, ignore_errors=True)


def _run_step(dist: Dist, name: str, server: PostgresServer, ca: Path) -> subprocess.CompletedProcess:
    (job,) = dist.of_kind("Job")
    container = find_container(job, name)
    env = manifest_env(
        container,
        PGHOST="127.0.0.1",
        PGPORT=str(server.port),
        PATH=server.path(),
        PGSSLROOTCERT=str(ca),
        WAIT_TIMEOUT_SECONDS="2",
        WAIT_INTERVAL_SECONDS="1",
    )
    assert env["PGSSLMODE"] == "verify-full"
    return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=60, check=False)


def _migrate(dist: Dist, server: PostgresServer, ca: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The migrate container's script (its lock session is Sentry's psycopg2 over libpq),
    with a stand-in `sentry`; the libpq TLS settings come from the manifest."""
    from tests.test_migration_script import MigrationJob

    job = MigrationJob(dist, server, tmp_path, PGSSLROOTCERT=str(ca))
    assert job.env["PGSSLMODE"] == "verify-full"
    return job.run().result


def test_clients_connect_with_verify_full_to_a_server_signed_by_the_ca(
    external: Dist, tls_server: tuple[PostgresServer, Path], tmp_path: Path
) -> None:
    server, certs = tls_server
    result = _run_step(external, "wait-for-postgres", server, certs / "ca.crt")
    assert result.returncode == 0, f"wait-for-postgres: {result.stdout}{result.stderr}"
    result = _migrate(external, server, certs / "ca.crt", tmp_path)
    assert result.returncode == 0, f"migrate: {result.stdout}{result.stderr}"
    # (That TLS is really in use shows in the next test: another CA makes them fail.)


def test_clients_refuse_a_server_their_ca_did_not_sign(
    external: Dist, tls_server: tuple[PostgresServer, Path], tmp_path: Path
) -> None:
    server, _ = tls_server
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other-ca",
         "-keyout", "other.key", "-out", "other.crt"],
        cwd=other, check=True, capture_output=True,
    )  # fmt: skip
    result = _migrate(external, server, other / "other.crt", tmp_path / "run")
    assert result.returncode != 0
    assert "certificate verify failed" in result.stderr


# --- backups of a managed server, whose user is the database's owner, not a superuser ----

MANAGED = """
postgres:
  user: sentry_owner
  external: {host: 10.1.2.3, sslmode: prefer}
  backup:
    restore: {enabled: true, wait_for_clients_seconds: 2}
redis:
  external: {host: 10.1.2.4}
"""


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dist, PostgresServer]]:
    code, dist = synth(tmp_path_factory.mktemp("managed"), MANAGED)
    assert code == 0
    # Like RDS or Cloud SQL: an administrator creates the owner role (no superuser; it may
    # create databases, as their master users may) and its database.
    with PostgresServer(superuser="admin", password="admin-secret-5fd1") as server:
        password = TEST_SECRETS["postgres-password"]
        server.psql(f"CREATE ROLE sentry_owner LOGIN CREATEDB PASSWORD '{password}'")
        server.psql("CREATE DATABASE sentry OWNER sentry_owner")
        server.psql(
            "CREATE TABLE sentry_project (id bigserial PRIMARY KEY, slug text UNIQUE NOT NULL);"
            "INSERT INTO sentry_project (slug) SELECT 'p' || g FROM generate_series(1, 300) g;"
            "CREATE TABLE nodestore_node (id text PRIMARY KEY, data text NOT NULL);"
            "INSERT INTO nodestore_node SELECT md5(g::text), repeat(md5(g::text), 40) FROM generate_series(1, 2000) g;",
            database="sentry",
            user="sentry_owner",
            password=password,
        )
        yield dist, server


def _contents(server: PostgresServer) -> str:
    return server.psql(
        "SELECT count(*), md5(string_agg(slug, ',' ORDER BY id)), max(id) FROM sentry_project;"
        "SELECT count(*), md5(string_agg(data, ',' ORDER BY id)) FROM nodestore_node;"
        "SELECT last_value FROM sentry_project_id_seq;"
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'sentry';",
        database="sentry",
    )


def test_a_managed_database_is_backed_up_and_restored_by_its_non_superuser_owner(
    managed: tuple[Dist, PostgresServer], tmp_path: Path
) -> None:
    from tests.test_backup import Script

    dist, server = managed
    where = {"PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
    backup = Script.of(dist.get("CronJob", "sentry-backup"), "backup", **where, BACKUP_DIR=str(tmp_path))
    # The endpoint knows a managed owner may not read the roles: no pg_dumpall --globals-only.
    assert backup.env["BACKUP_ROLES"] == "no"
    assert backup.env["PGUSER"] == "sentry_owner" and backup.env["PGSSLMODE"] == "prefer"
    before = _contents(server)
    result = backup.run(server.path(), BACKUP_FILESTORE_DIR="")
    assert result.returncode == 0, result.stdout + result.stderr
    (made,) = [p for p in tmp_path.iterdir() if p.name.startswith("sentry-")]
    assert not (made / "roles.sql").exists()

    # Later changes (a later migration, run by Sentry as the owner), then the restore Job's
    # script, as the same owner.
    server.psql(
        "DELETE FROM sentry_project WHERE id > 100; INSERT INTO nodestore_node VALUES ('x', 'y');"
        "CREATE TABLE added_by_a_later_migration (x int)",
        database="sentry",
        user="sentry_owner",
        password=TEST_SECRETS["postgres-password"],
    )
    assert _contents(server) != before
    restore = Script.of(dist.get("Job", "sentry-restore"), "restore", **where, BACKUP_DIR=str(tmp_path))
    assert restore.env["RESTORE_ROLES"] == "no"
    result = restore.run(server.path(), RESTORE_FILESTORE_DIR="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _contents(server) == before
    tables = server.psql("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_stat_user_tables", database="sentry")
    assert "added_by_a_later_migration" not in tables


# --- a managed database's plain owner: no superuser, no CREATEDB ------------------------------
# `pg_restore --create --clean` would drop its database and then fail to create it again
# ("permission denied to create database"): the restore works in place, in one
# transaction, and checks beforehand that it may drop everything there.

OWNER_PASSWORD = TEST_SECRETS["postgres-password"]


@pytest.fixture
def owner_server() -> Iterator[PostgresServer]:
    # As Terraform provisions one: an administrator creates the owner role (LOGIN only) and
    # its database, and an extension Sentry uses (which the owner could not create itself).
    with PostgresServer(superuser="admin", password="admin-secret-5fd1") as server:
        server.psql(f"CREATE ROLE sentry_owner LOGIN NOCREATEDB PASSWORD '{OWNER_PASSWORD}'")
        server.psql("CREATE DATABASE sentry OWNER sentry_owner")
        server.psql("CREATE EXTENSION citext", database="sentry")
        _as_owner(
            server,
            "CREATE TABLE sentry_project (id bigserial PRIMARY KEY, slug citext UNIQUE NOT NULL);"
            "INSERT INTO sentry_project (slug) SELECT 'P' || g FROM generate_series(1, 300) g;"
            "CREATE VIEW project_slugs AS SELECT slug FROM sentry_project;"
            "CREATE FUNCTION project_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM sentry_project';"
            "CREATE TYPE level AS ENUM ('debug', 'error');"
            "CREATE SCHEMA audit; CREATE TABLE audit.events (id int, lvl level);"
            "INSERT INTO audit.events SELECT g, 'error' FROM generate_series(1, 40) g;",
        )
        yield server


def _as_owner(server: PostgresServer, sql: str) -> str:
    return server.psql(sql, database="sentry", user="sentry_owner", password=OWNER_PASSWORD)


def _owner_state(server: PostgresServer) -> str:
    """The database's owner, extensions, schema objects with their owners, and rows."""
    return server.psql(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'sentry';"
        "SELECT string_agg(extname || ':' || pg_get_userbyid(extowner), ',' ORDER BY extname) FROM pg_extension;"
        "SELECT string_agg(format('%s %I.%I:%s', c.relkind, n.nspname, c.relname, pg_get_userbyid(c.relowner)), ','"
        " ORDER BY n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema';"
        "SELECT string_agg(p.oid::regprocedure::text, ',') FROM pg_proc p"
        " WHERE p.pronamespace = 'public'::regnamespace"
        " AND p.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e');"
        "SELECT string_agg(nspname, ',' ORDER BY 1) FROM pg_namespace WHERE nspname !~ '^pg_';"
        "SELECT count(*), md5(string_agg(p::text, ',' ORDER BY id)) FROM sentry_project p;"
        "SELECT count(*) FROM audit.events WHERE lvl = 'error';"
        "SELECT last_value FROM sentry_project_id_seq;",
        database="sentry",
    )


def _managed_scripts(dist: Dist, server: PostgresServer, backup_dir: Path, **restore_env: str):
    from tests.test_backup import Script

    where = {"PGHOST": "127.0.0.1", "PGPORT": str(server.port), "BACKUP_DIR": str(backup_dir)}
    backup = Script.of(dist.get("CronJob", "sentry-backup"), "backup", **where, BACKUP_FILESTORE_DIR="")
    restore = Script.of(dist.get("Job", "sentry-restore"), "restore", **where, RESTORE_FILESTORE_DIR="", **restore_env)
    return backup, restore


def test_an_owner_without_createdb_restores_its_database_in_place(
    managed: tuple[Dist, PostgresServer], owner_server: PostgresServer, tmp_path: Path
) -> None:
    server = owner_server
    backup, restore = _managed_scripts(managed[0], server, tmp_path)
    # An external server: only Sentry's database, by its owner.
    assert backup.env["BACKUP_DATABASES"] == "one" and restore.env["PGUSER"] == "sentry_owner"
    before = _owner_state(server)
    taken = backup.run(server.path())
    assert taken.returncode == 0, taken.stdout + taken.stderr

    # Later: rows changed, a later migration's table, schema and function, a sequence moved.
    _as_owner(
        server,
        "DELETE FROM sentry_project WHERE id > 100; UPDATE audit.events SET lvl = 'debug' WHERE id < 10;"
        "CREATE TABLE added_later (x int); CREATE SCHEMA later; CREATE TABLE later.t (y int);"
        "CREATE FUNCTION added_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';"
        "SELECT setval('sentry_project_id_seq', 5);",
    )
    assert _owner_state(server) != before

    result = restore.run(server.path())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restoring database sentry in place, in one transaction (sentry_owner is not a superuser)" in result.stdout
    assert "checked: all 2 tables have the backup's row counts" in result.stdout
    # Exactly the backup again: the later objects are gone, the database is still the owner's,
    # the administrator's extension is untouched.
    assert _owner_state(server) == before
    assert "citext:admin" in before and "sentry_owner\n" in before


def _refused(result, server: PostgresServer, before: str, message: str) -> None:
    assert result.returncode != 0
    assert message in result.stderr and "nothing was changed" in result.stderr, result.stderr
    assert _owner_state(server) == before, "the data is still there"


@pytest.mark.parametrize("lack", ["not the owner", "another role's table", "no database, no CREATEDB", "extension"])
def test_a_restore_that_lacks_a_privilege_is_refused_before_anything_is_dropped(
    managed: tuple[Dist, PostgresServer], owner_server: PostgresServer, tmp_path: Path, lack: str
) -> None:
    server = owner_server
    backup, restore = _managed_scripts(managed[0], server, tmp_path)
    assert backup.run(server.path()).returncode == 0
    _as_owner(server, "CREATE TABLE added_later (x int)")  # something a restore would remove
    if lack == "not the owner":
        # Another login that may connect, as every role may by default.
        server.psql("CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw'")
        _, restore = _managed_scripts(managed[0], server, tmp_path, PGUSER="intruder", PGPASSWORD="intruder-pw")
        message = "intruder is not a superuser and does not own database sentry (its owner is sentry_owner)"
    elif lack == "another role's table":
        server.psql("CREATE TABLE public.admin_table (x int)", database="sentry")
        message = "but sentry_owner may not drop:\n  table public.admin_table belongs to admin"
    elif lack == "no database, no CREATEDB":
        server.psql("ALTER DATABASE sentry RENAME TO sentry_kept")
        message = "database sentry does not exist, and sentry_owner may not create databases (CREATEDB)"
    else:
        server.psql("DROP EXTENSION citext CASCADE", database="sentry")
        message = "database sentry lacks the extension(s) citext of the backup"
    if lack == "no database, no CREATEDB":
        before = server.psql("SELECT count(*) FROM added_later", database="sentry_kept")
        result = restore.run(server.path())
        assert result.returncode != 0 and message in result.stderr and "nothing was changed" in result.stderr
        assert server.psql("SELECT count(*) FROM added_later", database="sentry_kept") == before
        assert server.psql("SELECT count(*) FROM pg_database WHERE datname = 'sentry'") == "0"
        return
    before = _owner_state(server)
    _refused(restore.run(server.path()), server, before, message)


# Where pg_restore's SQL is cut: after the schema (complete statements, which psql would
# commit at the end of its input), or in the middle of a table's rows.
CUTS = {"between statements": "sed '/^COPY /,$d'", "in a table's rows": "awk '/^COPY /{c=1} c&&++n>3{exit} {print}'"}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_an_in_place_restore_that_fails_halfway_is_rolled_back(
    managed: tuple[Dist, PostgresServer], owner_server: PostgresServer, tmp_path: Path, cut: str
) -> None:
    # pg_restore dies halfway through its output, after the drops have run: the
    # transaction must roll back, not commit a part.
    from tests.test_backup import shim

    server = owner_server
    backup, restore = _managed_scripts(managed[0], server, tmp_path / "backups")
    (tmp_path / "backups").mkdir()
    assert backup.run(server.path()).returncode == 0
    _as_owner(server, "DELETE FROM sentry_project WHERE id > 200; CREATE TABLE added_later (x int)")
    before = _owner_state(server)
    real = server.bin_dir / "pg_restore"
    path = shim(
        tmp_path,
        "pg_restore",
        f'if [[ " $* " == *" --file=- "* ]]; then "{real}" "$@" | {CUTS[cut]}; exit 1; fi\nexec "{real}" "$@"\n',
    )
    result = restore.run(f"{path}:{server.path()}")
    assert result.returncode != 0
    assert "restoring database sentry in place failed and was rolled back: it is as it was" in result.stderr
    assert _owner_state(server) == before
