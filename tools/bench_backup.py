"""Benchmark PostgreSQL backup and restore on a generated, Sentry-shaped database.

The dataset (database `sentry`; its size, as pg_database_size measures it, heads the output and
the table in docs/development.md):
- `nodestore_node`: event payloads as Sentry 9.1 stores them, JSON compressed with
  zlib and base64-encoded (unique per row, so a second compression gains little);
- `sentry_groupedmessage`: many narrow rows with four indexes;
- `sentry_largevalue`: a few multi-megabyte values (text that compresses well).

Measured in one run, against the same data, each restore into a new empty server:
- plain: `pg_dumpall > all.sql` (uncompressed), restored with `psql -f all.sql`, the
  yardstick; `gzip -1` of that file gives the size target and one core's speed;
- today's: the backup and restore scripts as they were before the directory format
  (commit BASELINE_COMMIT: `pg_dumpall | gzip -6`, full decompression to verify, `psql`
  replay with checks);
- new: the CronJob's and restore Job's scripts from a freshly synthesized dist/, as
  the tests run them, without CPU limits, at the manifests' default limits (when they
  limit anything on this machine) and at the earlier defaults (backup 500m, restore
  1000m). A limit is emulated with a cgroup (v1 `cpu` controller,
  cfs_quota_us/cfs_period_us, what the kubelet sets for a container's CPU limit) that
  holds the script and its client programs; the server runs outside it, as it runs
  in its own pod. Without a writable cgroup the limited runs are skipped (and say so).
- raw read: `pg_dump -Fd -Z0 -j 2` (no compression, no verification): how fast the
  data leaves the server, the floor for any method.

The servers are the test servers of tests/servers.py (Debian's PostgreSQL, fsync off),
so absolute times are this machine's without disk flushes; the ratios are the point.

    .venv/bin/python tools/bench_backup.py                  # the default dataset, 2 rounds
    .venv/bin/python tools/bench_backup.py --events 20000 --groups 50000 --large 2   # a smoke run
    .venv/bin/python tools/bench_backup.py --write docs/development.md   # also replace the table there

With --write, the dataset, the table and the notes go between the bench-backup markers of
that file, with the date and the machine: the docs show this script's output, never typed figures.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from constructs.quantities import parse_cpu  # noqa: E402
from tests.conftest import TEST_SECRETS, find_container, synth  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402
from tests.test_backup import VALUES, Script, backup_script, restore_script  # noqa: E402
from tools.doc_blocks import machine, write_block  # noqa: E402

START = "<!-- bench-backup:start (written by tools/bench_backup.py --write; measured: run it again, do not edit) -->"
END = "<!-- bench-backup:end -->"
HEADER = [
    "| method | backup | restore | size | backup x plain | restore x plain | size x plain | backup client CPU |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
]

# The last commit with the single-file gzip format ("today's method" of issue 11).
BASELINE_COMMIT = "56d4326"
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
BENCH_SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB", "maintenance_work_mem": "256MB"}

SCHEMA = """
CREATE TABLE nodestore_node (id varchar(40) PRIMARY KEY, data text NOT NULL, "timestamp" timestamptz NOT NULL);
CREATE INDEX nodestore_node_timestamp ON nodestore_node ("timestamp");
CREATE TABLE sentry_groupedmessage (
    id bigserial PRIMARY KEY, project_id int NOT NULL, logger varchar(64) NOT NULL, level int NOT NULL,
    message text NOT NULL, culprit varchar(200), status int NOT NULL, times_seen int NOT NULL,
    last_seen timestamptz NOT NULL, first_seen timestamptz NOT NULL, score int NOT NULL, data text
);
CREATE TABLE sentry_largevalue (id int PRIMARY KEY, key text NOT NULL, value text NOT NULL);
"""
GROUPS_SQL = """
INSERT INTO sentry_groupedmessage (project_id, logger, level, message, culprit, status, times_seen,
                                   last_seen, first_seen, score, data)
SELECT i % 200, (ARRAY['', 'javascript', 'django.request', 'celery'])[1 + i % 4],
       (ARRAY[10, 20, 30, 40, 50])[1 + i % 5],
       format('%s: %s in %s', (ARRAY['TypeError', 'KeyError', 'ValueError'])[1 + i % 3], md5(i::text), i % 9973),
       format('app/views/module_%s.py in handler_%s', i % 311, i % 97), i % 3, 1 + i % 5000,
       timestamptz '2024-01-01' + (i % 100000) * interval '1 minute',
       timestamptz '2023-06-01' + i * interval '1 second',
       (i::bigint * 7919) % 1000000, format('{"last_received":%s,"type":"error"}', i)
FROM generate_series(1, {rows}) AS i;
CREATE INDEX sentry_groupedmessage_project_status ON sentry_groupedmessage (project_id, status, last_seen);
CREATE INDEX sentry_groupedmessage_first_seen ON sentry_groupedmessage (project_id, first_seen);
CREATE INDEX sentry_groupedmessage_score ON sentry_groupedmessage (score);
"""
LARGE_SQL = """
INSERT INTO sentry_largevalue
SELECT i, 'sentry:release-artifact-' || i,
       (SELECT string_agg(format('{"line":%s,"source":"function f%s(a, b) { return a + b * %s; }","hash":"%s"}',
                                 j, j % 500, j % 97, md5((i * 1000000 + j)::text)), E'\\n')
        FROM generate_series(1, 60000) AS j)
FROM generate_series(1, {rows}) AS i;
"""


def event_payloads(count: int, seed: int = 11) -> Iterator[str]:
    """COPY lines for nodestore_node: zlib-compressed, base64-encoded JSON events."""
    rng = random.Random(seed)
    files = [f"app/{d}/{m}.py" for d in ("views", "models", "tasks", "utils") for m in ("base", "api", "auth", "db")]
    for i in range(count):
        frames = [
            {
                "filename": rng.choice(files),
                "function": f"handle_{rng.randrange(300)}",
                "lineno": rng.randrange(1, 2000),
                "context_line": f"    result = process(value_{rng.randrange(50)}, timeout={rng.randrange(60)})",
                "vars": {"value": rng.getrandbits(64), "user_id": rng.randrange(10**6)},
            }
            for _ in range(rng.randrange(3, 14))
        ]
        event = {
            "event_id": f"{rng.getrandbits(128):032x}",
            "message": f"ValueError: invalid literal for int() with base 10: '{rng.getrandbits(40):x}'",
            "platform": "python",
            "tags": [["environment", "production"], ["release", f"1.{rng.randrange(40)}"], ["server", f"web-{i % 7}"]],
            "sentry.interfaces.Exception": {"values": [{"type": "ValueError", "stacktrace": {"frames": frames}}]},
            "extra": {"request_id": f"{rng.getrandbits(64):016x}", "duration_ms": rng.random() * 900},
        }
        data = base64.b64encode(zlib.compress(json.dumps(event).encode())).decode()
        stamp = f"2024-01-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}+00"
        yield f"{rng.getrandbits(128):032x}\t{data}\t{stamp}\n"


@dataclass
class Row:
    method: str
    backup_s: float
    restore_s: float | None
    size: int
    cpu_s: float | None = None
    """CPU seconds of the backup's client programs (not the server's)."""


def fresh_server() -> PostgresServer:
    """An empty server like the stack's: superuser `sentry` with the (test) Secret's password."""
    password = TEST_SECRETS["postgres-password"]
    return PostgresServer(superuser="sentry", password=password, auth="md5", settings=BENCH_SETTINGS).start()


def timed(argv: list[str], env: dict[str, str], stdout: int | object = subprocess.PIPE, show: bool = False) -> float:
    """Seconds a command took; a failure stops the benchmark with its output. With
    `show`, the command's own log lines (e.g. the scripts' phase times) are printed."""
    started = time.monotonic()
    result = subprocess.run(argv, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
    took = time.monotonic() - started
    if result.returncode != 0:
        out = result.stdout[-2000:] if isinstance(result.stdout, str) else ""
        raise SystemExit(f"{argv[:3]} failed ({result.returncode}):\n{out}\n{result.stderr[-4000:]}")
    if show and isinstance(result.stdout, str):
        print("".join(f"    {line}\n" for line in result.stdout.splitlines()), end="", flush=True)
    return took


def client_env(server: PostgresServer, database: str = "postgres") -> dict[str, str]:
    return {"PATH": server.path(), **server.env(database=database)}


class CpuLimit:
    """A cgroup v1 CPU quota, as the kubelet sets for a container's CPU limit."""

    def __init__(self, millicores: int) -> None:
        self.path = CGROUP_CPU / f"bench-backup-{os.getpid()}-{millicores}"
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text("100000")
        (self.path / "cpu.cfs_quota_us").write_text(str(millicores * 100))

    def wrap(self, command: list[str]) -> list[str]:
        return ["/bin/bash", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "limited", *command]

    def remove(self) -> None:
        self.path.rmdir()


def manifest_cpu_limit(dist_obj: dict, container: str) -> int:
    """The container's CPU limit in the synthesized manifest, in millicores."""
    return parse_cpu(find_container(dist_obj, container)["resources"]["limits"]["cpu"])


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished child processes (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_script(script: Script, path: str, limit: CpuLimit | None = None) -> float:
    command = limit.wrap(script.command) if limit else script.command
    return timed(command, {**script.env, "PATH": path}, show=True)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=220_000, help="nodestore_node rows (about 2 kB each)")
    parser.add_argument("--groups", type=int, default=700_000, help="sentry_groupedmessage rows (narrow, 4 indexes)")
    parser.add_argument("--large", type=int, default=6, help="sentry_largevalue rows (about 6 MB each)")
    parser.add_argument("--rounds", type=int, default=2, help="measure every method this often; show the best")
    parser.add_argument("--write", type=Path, metavar="FILE", help="replace the bench-backup block of FILE")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    limits: dict[int, CpuLimit] = {}

    def limit(millicores: int) -> CpuLimit | None:
        """A CPU limit, or None if it does not limit anything here (or cannot be set)."""
        if millicores >= 1000 * (os.cpu_count() or 1):
            return None
        if millicores not in limits:
            limits[millicores] = CpuLimit(millicores)
        return limits[millicores]

    servers: list[PostgresServer] = []
    notes: list[str] = []

    def restore_into(action: Callable[[PostgresServer], float]) -> float:
        target = fresh_server()
        servers.append(target)
        try:
            return action(target)
        finally:
            target.cleanup()
            servers.remove(target)

    try:
        code, dist = synth(work, VALUES)
        if code != 0:
            raise SystemExit("synthesis failed")
        source = fresh_server()
        servers.append(source)
        source.psql("CREATE DATABASE sentry")
        source.psql(SCHEMA, database="sentry")
        print(f"generating {args.events} events, {args.groups} groups, {args.large} large values ...", flush=True)
        started = time.monotonic()
        copy = subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "COPY nodestore_node FROM STDIN"],
            env=client_env(source, "sentry"),
            stdin=subprocess.PIPE,
            text=True,
        )
        assert copy.stdin is not None
        for line in event_payloads(args.events):
            copy.stdin.write(line)
        copy.stdin.close()
        if copy.wait() != 0:
            raise SystemExit("loading nodestore_node failed")
        source.psql(GROUPS_SQL.replace("{rows}", str(args.groups)), database="sentry")
        source.psql(LARGE_SQL.replace("{rows}", str(args.large)), database="sentry")
        source.psql("VACUUM ANALYZE", database="sentry")
        sizes = source.psql(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN "
            "('nodestore_node', 'sentry_groupedmessage', 'sentry_largevalue') ORDER BY 1",
            database="sentry",
        )
        db_bytes = int(source.psql("SELECT pg_database_size('sentry')"))
        print(f"dataset: {db_bytes / 2**20:.0f} MiB (generated in {time.monotonic() - started:.0f}s)", flush=True)

        # The variants of the new method: no limit; the manifests' default limits (when they
        # limit anything here); the earlier defaults (500m / 1000m).
        default_backup = manifest_cpu_limit(dist.get("CronJob", "sentry-backup"), "backup")
        default_restore = manifest_cpu_limit(dist.get("Job", "sentry-restore"), "restore")
        plans: list[tuple[str, int | None, int | None]] = [("new, no CPU limit", None, None)]
        if limit(default_backup) or limit(default_restore):
            plans.append(("new, default limits", default_backup, default_restore))
        else:
            plans[0] = (
                f"new, no CPU limit (= the default limits {default_backup}m / {default_restore}m here)",
                None,
                None,
            )
        plans.append(("new, at the earlier default limits", 500, 1000))
        variants: list[tuple[str, CpuLimit | None, CpuLimit | None]] = []
        for label, backup_m, restore_m in plans:
            if backup_m is None or restore_m is None:
                variants.append((label, None, None))
                continue
            try:
                variants.append(
                    (f"{label} (backup {backup_m}m, restore {restore_m}m)", limit(backup_m), limit(restore_m))
                )
            except OSError as error:
                print(f"no writable cgroup cpu controller ({error}): skipping '{label}'")
        old_backup, old_restore = (
            subprocess.run(
                ["git", "show", f"{BASELINE_COMMIT}:constructs/scripts/{name}.sh"],
                cwd=PROJECT_DIR,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for name in ("postgres-backup", "postgres-restore")
        )

        # Every method once per round, rounds one after the other, so that the load of a
        # shared machine spreads over all methods alike; the table shows each one's best.
        results: dict[str, list[Row]] = {}

        def record(row: Row) -> None:
            results.setdefault(row.method, []).append(row)

        plain = work / "all.sql"
        zlib_cpu: dict[int, tuple[float, int]] = {}
        for round_number in range(1, args.rounds + 1):
            print(f"--- round {round_number} of {args.rounds}", flush=True)
            # plain pg_dumpall, the yardstick.
            print("plain: pg_dumpall > all.sql ...", flush=True)
            with plain.open("w") as out:
                cpu = children_cpu()
                plain_s = timed(["pg_dumpall"], client_env(source), stdout=out)
                plain_cpu = children_cpu() - cpu
            print("plain: psql -f all.sql into a fresh server ...", flush=True)
            plain_restore_s = restore_into(lambda t: timed(["psql", "-X", "-q", "-f", str(plain)], client_env(t)))
            record(
                Row(
                    "plain `pg_dumpall > file.sql`, `psql -f`",
                    plain_s,
                    plain_restore_s,
                    plain.stat().st_size,
                    plain_cpu,
                )
            )
            # gzip -1 of it: the size target, and one core's compression speed.
            print("plain: gzip -1 of all.sql (one core) ...", flush=True)
            with (work / "all.sql.gz").open("wb") as out:
                cpu = children_cpu()
                gzip_s = timed(["gzip", "-1", "-c", str(plain)], dict(os.environ), stdout=out)
                gzip_cpu = children_cpu() - cpu
            record(
                Row(
                    "`gzip -1` of the plain dump (size target; time: gzip alone)",
                    gzip_s,
                    None,
                    (work / "all.sql.gz").stat().st_size,
                    gzip_cpu,
                )
            )
            if round_number == 1:
                # One core's zlib speed (what pg_dump -Z uses) on this dump text, in CPU seconds
                # of this process: unlike wall time, that does not depend on other load.
                text = plain.read_bytes()
                for zlevel in (1, 2):
                    cpu_started = time.process_time()
                    packed = len(zlib.compress(text, zlevel))
                    zlib_cpu[zlevel] = (time.process_time() - cpu_started, packed)
                del text
            plain.unlink()
            (work / "all.sql.gz").unlink()

            # raw read: the directory format without compression, two workers.
            raw = work / "raw"
            cpu = children_cpu()
            raw_s = timed(["pg_dump", "-Fd", "-Z0", "-j2", "-f", str(raw)], client_env(source, "sentry"))
            raw_cpu = children_cpu() - cpu
            record(Row("raw read: `pg_dump -Fd -Z0 -j2`, no verification", raw_s, None, dir_bytes(raw), raw_cpu))
            shutil.rmtree(raw)

            # today's method: the scripts of BASELINE_COMMIT, gzip -6, same environment shape.
            old_dir = work / "old"
            old_dir.mkdir()
            print("today's: pg_dumpall | gzip -6, verified ...", flush=True)
            old_env = {**client_env(source), "BACKUP_DIR": str(old_dir), "BACKUP_KEEP": "3", "BACKUP_GZIP_LEVEL": "6"}
            cpu = children_cpu()
            old_s = timed(["/bin/bash", "-c", old_backup], old_env)
            old_cpu = children_cpu() - cpu
            (old_file,) = old_dir.glob("sentry-*.sql.gz")
            print("today's: restore script into a fresh server ...", flush=True)
            old_restore_s = restore_into(
                lambda t, d=old_dir: timed(
                    ["/bin/bash", "-c", old_restore],
                    {**client_env(t), "BACKUP_DIR": str(d), "RESTORE_FILE": "latest", "RESTORE_WAIT_SECONDS": "0"},
                )
            )
            label = "today's: `pg_dumpall | gzip -6`, verified; `psql` replay"
            record(Row(label, old_s, old_restore_s, old_file.stat().st_size, old_cpu))
            shutil.rmtree(old_dir)

            # the new method, from the synthesized manifests.
            for label, backup_limit, restore_limit in variants:
                new_dir = work / "new"
                new_dir.mkdir()
                print(f"{label}: backup script ...", flush=True)
                script = backup_script(dist, source, new_dir)
                cpu = children_cpu()
                new_s = run_script(script, source.path(), backup_limit)
                new_cpu = children_cpu() - cpu
                (backup,) = [p for p in new_dir.iterdir() if p.name.startswith("sentry-")]
                size = dir_bytes(backup)
                print(f"{label}: restore script into a fresh server ...", flush=True)
                new_restore_s = restore_into(
                    lambda t, d=new_dir, lim=restore_limit: run_script(restore_script(dist, t, d), t.path(), lim)
                )
                env = script.env
                method = (
                    f"{label}: `pg_dump -Fd -j {env['BACKUP_JOBS']} -Z {env['BACKUP_COMPRESSION_LEVEL']}`, "
                    "verified; `pg_restore -j 2`"
                )
                record(Row(method, new_s, new_restore_s, size, new_cpu))
                shutil.rmtree(new_dir)

        def best(runs: list[Row]) -> Row:
            restores = [r.restore_s for r in runs if r.restore_s is not None]
            cpus = [r.cpu_s for r in runs if r.cpu_s is not None]
            return Row(
                runs[0].method,
                min(r.backup_s for r in runs),
                min(restores) if restores else None,
                runs[0].size,
                min(cpus) if cpus else None,
            )

        rows = [best(runs) for runs in results.values()]
        gzip_row = next(r for r in rows if r.method.startswith("`gzip -1`"))
        raw_row = next(r for r in rows if r.method.startswith("raw read"))
        plain_row = rows[0]
        plain_mib, cpus = plain_row.size / 2**20, os.cpu_count() or 1
        notes.append(f"raw read: {raw_row.size / 2**20 / raw_row.backup_s:.0f} MiB/s ({raw_row.backup_s:.1f}s)")
        notes.append(
            f"one core's GNU gzip -1: {plain_mib / gzip_row.backup_s:.0f} MiB/s of dump text (wall time, "
            f"{gzip_row.backup_s:.1f}s for {plain_mib:.0f} MiB)"
        )
        level = int(backup_script(dist, source, work).env["BACKUP_COMPRESSION_LEVEL"])
        for zlevel, (cpu_s, packed) in sorted(zlib_cpu.items()):
            notes.append(
                f"one core's zlib level {zlevel} (pg_dump -Z {zlevel}): {plain_mib / cpu_s:.0f} MiB/s "
                f"({cpu_s:.1f} CPU-s for the dump text, {packed / plain_row.size:.3f}x its size)"
            )
        if level in zlib_cpu:
            # A backup this small must compress every byte: that CPU time, spread over all CPUs.
            bound = zlib_cpu[level][0] / cpus
            notes.append(
                f"so compressing alone at level {level}, on all {cpus} CPUs with nothing else to do, takes "
                f">= {bound:.1f}s = {bound / plain_row.backup_s:.1f}x the plain dump (target: 1.5x)"
            )
        out = [
            f"dataset: database sentry, {db_bytes / 2**20:.0f} MiB (pg_database_size); {os.cpu_count()} CPUs; "
            f"best of {args.rounds} rounds; load average at the end: {os.getloadavg()[0]:.1f}"
        ]
        for line in sizes.splitlines():
            name, size = line.split("|")
            out.append(f"- {name}: {int(size) / 2**20:.0f} MiB with indexes")
        out += ["", *HEADER]
        for row in rows:
            restore = f"{row.restore_s:.1f} s" if row.restore_s is not None else "-"
            restore_ratio = f"{row.restore_s / plain_row.restore_s:.2f}x" if row.restore_s is not None else "-"
            method = row.method.replace("|", "\\|")  # a pipe inside a Markdown table cell
            out.append(
                f"| {method} | {row.backup_s:.1f} s | {restore} | {row.size / 2**20:.1f} MiB | "
                f"{row.backup_s / plain_row.backup_s:.2f}x | {restore_ratio} | {row.size / plain_row.size:.3f}x | "
                f"{row.cpu_s:.1f} s |"
            )
        out += ["", *(f"- {note}" for note in notes)]
        print()
        print("\n".join(out))
        if args.write is not None:
            stamp = f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {machine()}."
            write_block(args.write, START, END, "\n".join([START, stamp, "", *out, END]))
        return 0
    finally:
        for server in servers:
            server.cleanup()
        for cpu_limit in limits.values():
            cpu_limit.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
