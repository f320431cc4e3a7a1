"""Benchmark PostgreSQL backup and restore on a generated dataset of about 1 GB.

Two methods, measured in the same run against the same data:
- original: what the task started from, `pg_dumpall > all.sql` (uncompressed), restored
  with `psql -f all.sql` into a fresh server;
- chosen: the backup CronJob's script (pg_dumpall --clean | gzip, verified, renamed,
  retention) and the restore Job's script (verify, replay with an error allowlist,
  per-table row-count check, ANALYZE), both taken from a freshly synthesized dist/
  exactly as the tests do. `--levels` adds runs of the same script at other gzip levels.

Each restore goes into a new, empty server. The servers are the test servers of
tests/servers.py (PostgreSQL from Debian, fsync off), so absolute times are those of
this machine without disk flushes; the comparison between methods is the point.

    .venv/bin/python tools/bench_backup.py            # about 1.1 GB; 1-2 minutes on 2 cores
    .venv/bin/python tools/bench_backup.py --scale 2 --event-rows 20000   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from tests.conftest import TEST_SECRETS, synth  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402
from tests.test_backup import VALUES, backup_script, restore_script  # noqa: E402

BENCH_SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB", "maintenance_work_mem": "256MB"}
# Sentry-like rows next to pgbench's: JSON-ish text with hashes and a base64 blob
# (Sentry's nodestore keeps events compressed and base64-encoded, which gzip cannot shrink much).
EVENTS_SQL = """
CREATE TABLE events (
    id bigint PRIMARY KEY, project_id int NOT NULL, received timestamptz NOT NULL, data text NOT NULL
);
INSERT INTO events
SELECT i, i % 50, timestamptz '2024-01-01' + i * interval '1 second',
       format('{"event_id":"%s","message":"ValueError: invalid literal for int() with base 10: %s",'
              '"culprit":"app.views.checkout in handle_%s","tags":{"release":"1.%s","environment":"production",'
              '"user":"user-%s@example.com"},"blob":"%s"}',
              md5(i::text), i % 977, i % 113, i % 40, i % 5000,
              encode(decode(md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) || md5((i * 31)::text)
                            || md5((i * 37)::text) || md5((i * 41)::text), 'hex'), 'base64'))
FROM generate_series(1, {rows}) AS i;
CREATE INDEX events_project_received ON events (project_id, received);
"""


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` took; a CompletedProcess that failed stops the benchmark."""
    started = time.monotonic()
    result = action()
    if isinstance(result, subprocess.CompletedProcess) and result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return time.monotonic() - started


def run(argv: list[str], server: PostgresServer, stdout: IO[str] | None = None) -> subprocess.CompletedProcess[str]:
    """A client program against `server`; output is captured unless `stdout` is given."""
    env = {"PATH": server.path(), **server.env()}
    return subprocess.run(
        argv, env=env, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False
    )


def database_bytes(server: PostgresServer) -> int:
    return int(server.psql("SELECT sum(pg_database_size(datname)) FROM pg_database"))


def fresh_server() -> PostgresServer:
    """An empty server like the stack's: superuser `sentry` with the (test) Secret's password."""
    password = TEST_SECRETS["postgres-password"]
    return PostgresServer(superuser="sentry", password=password, auth="md5", settings=BENCH_SETTINGS).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=30, help="pgbench scale (30: about 450 MB of pgbench tables)")
    parser.add_argument(
        "--event-rows", type=int, default=1_300_000, help="rows of Sentry-like events (about 0.45 kB each)"
    )
    parser.add_argument("--levels", default="1", help="extra gzip levels to run the chosen script at, e.g. 1,9")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    servers: list[PostgresServer] = []
    rows: list[tuple[str, float, float | None, int]] = []
    try:
        code, dist = synth(work, VALUES)
        if code != 0:
            raise SystemExit("synthesis failed")
        source = fresh_server()
        servers.append(source)
        source.psql("CREATE DATABASE sentry")
        print(f"generating: pgbench -i -s {args.scale} and {args.event_rows} event rows ...", flush=True)
        generate = timed(lambda: run(["pgbench", "-i", "-q", "-s", str(args.scale), "-I", "dtGvp", "sentry"], source))
        generate += timed(lambda: source.psql(EVENTS_SQL.replace("{rows}", str(args.event_rows)), database="sentry"))
        source.psql("VACUUM ANALYZE", database="sentry")
        size = database_bytes(source)
        print(f"dataset: {size / 2**20:.0f} MiB in all databases (generated in {generate:.0f}s)", flush=True)

        # --- original: plain pg_dumpall to an uncompressed file, psql -f to restore.
        plain = work / "plain" / "all.sql"
        plain.parent.mkdir()
        print("original: pg_dumpall > all.sql ...", flush=True)
        with plain.open("w") as out:
            backup_s = timed(lambda: run(["pg_dumpall"], source, stdout=out))
        target = fresh_server()
        servers.append(target)
        print("original: psql -f all.sql into a fresh server ...", flush=True)
        restore_s = timed(lambda: run(["psql", "-X", "-q", "-f", str(plain)], target))
        rows.append(("original: pg_dumpall > file.sql, psql -f", backup_s, restore_s, plain.stat().st_size))
        target.cleanup()
        plain.unlink()

        # --- chosen: the synthesized scripts, at the manifest's gzip level, then extra levels.
        manifest_level = backup_script(dist, source, work).env["BACKUP_GZIP_LEVEL"]
        levels = [manifest_level] + [x for x in args.levels.split(",") if x and x != manifest_level]
        for level in levels:
            backup_dir = work / f"chosen-{level}"
            backup_dir.mkdir()
            script = backup_script(dist, source, backup_dir)
            print(f"chosen: backup script, gzip -{level} ...", flush=True)
            backup_s = timed(lambda s=script, lv=level: s.run(source.path(), BACKUP_GZIP_LEVEL=lv))
            (dump,) = backup_dir.glob("sentry-*.sql.gz")
            restore_s: float | None = None
            if level == manifest_level:
                target = fresh_server()
                servers.append(target)
                print("chosen: restore script into a fresh server ...", flush=True)
                restore_s = timed(lambda t=target, d=backup_dir: restore_script(dist, t, d).run(t.path()))
                restored = database_bytes(target)
                target.cleanup()
                print(f"chosen: restored {restored / 2**20:.0f} MiB", flush=True)
            label = f"chosen: backup script (gzip -{level}, verified)"
            if level == manifest_level:
                label += ", restore script"
            rows.append((label, backup_s, restore_s, dump.stat().st_size))
            shutil.rmtree(backup_dir)

        print()
        print(f"dataset: {size / 2**20:.0f} MiB (pg_database_size, all databases); {os.cpu_count()} CPUs")
        width = max(len(r[0]) for r in rows)
        print(f"{'method':<{width}}  {'backup s':>8}  {'restore s':>9}  {'dump MiB':>8}  {'ratio':>5}")
        for label, backup_s, restore_s, dump_bytes in rows:
            restore_text = f"{restore_s:9.1f}" if restore_s is not None else f"{'-':>9}"
            print(
                f"{label:<{width}}  {backup_s:8.1f}  {restore_text}  {dump_bytes / 2**20:8.1f}  "
                f"{dump_bytes / rows[0][3]:5.2f}"
            )
        return 0
    finally:
        for server in servers:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
