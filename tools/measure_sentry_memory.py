"""Measure the real Sentry: each process's memory after warm-up, the migration's peak, and
what the real Sentry tier and its install take; print the figures, or write them into the
docs' marked blocks.

    .venv/bin/python tools/measure_sentry_memory.py                 # print
    .venv/bin/python tools/measure_sentry_memory.py --write         # docs/operations.md and docs/development.md
    .venv/bin/python tools/measure_sentry_memory.py --install       # also a cold install (empty caches)

It runs the real Sentry tier (tests/test_real_sentry.py) as `make test` does, alone, with
SENTRY_K8S_MEMORY_REPORT set: its memory test writes the proportional set sizes (PSS, the
sum over a container's processes: what each really holds of shared pages) of web, worker and
cron after they served pages and events, the peak of `sentry upgrade` sampled every half
second, and the tier's step times. With --install it first installs into an empty cache
folder with an empty pip cache (what CI does on a new machine), then again (cached).

tests/test_capacity_measured.py checks the resources of the default configuration against
the memory block, so a request below what the process was measured to hold is an error
unless the docs name it as a known shortfall.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from tools.doc_blocks import machine, write_block  # noqa: E402

WRITTEN_BY = "(written by tools/measure_sentry_memory.py --write; measured: run it again, do not edit)"
MEMORY_START = f"<!-- real-sentry-memory:start {WRITTEN_BY} -->"
MEMORY_END = "<!-- real-sentry-memory:end -->"
TIMES_START = f"<!-- real-sentry-times:start {WRITTEN_BY} -->"
TIMES_END = "<!-- real-sentry-times:end -->"
OPERATIONS = PROJECT_DIR / "docs" / "operations.md"
DEVELOPMENT = PROJECT_DIR / "docs" / "development.md"
# The processes the block lists: (report key, row label, Deployment or Job prefix, container).
ROWS = (
    ("web", "web: uWSGI, 2 workers x 4 threads, after warm-up", "sentry-web", "web"),
    ("worker", "worker: Celery, `--concurrency 2`, after warm-up", "sentry-worker", "worker"),
    ("cron", "cron: celery beat", "sentry-cron", "cron"),
    ("migrations", "migrations: `sentry upgrade --noinput`, peak", "sentry-migrations", "migrate"),
)


def default_resources() -> dict[str, tuple[str, str]]:
    """Each listed container's memory request and limit in the default configuration."""
    from app.capacity import pod_specs
    from tests.conftest import synth

    with tempfile.TemporaryDirectory() as tmp:
        code, dist = synth(Path(tmp))
        assert code == 0
        found: dict[str, tuple[str, str]] = {}
        for key, _, workload, container in ROWS:
            for obj in dist.objects:
                if obj["metadata"]["name"].startswith(workload):
                    for spec in pod_specs(obj):
                        for item in [*spec.get("initContainers", []), *spec["containers"]]:
                            if item["name"] == container:
                                memory = item["resources"]
                                found[key] = (memory["requests"]["memory"], memory["limits"]["memory"])
    return found


def memory_block(report: dict, resources: dict[str, tuple[str, str]], when: str) -> str:
    lines = [
        MEMORY_START,
        f"Measured {when} on {machine()} by the real Sentry tier (Sentry 9.1.2 on Python 2.7.18, "
        "PostgreSQL 15, Redis 6.2.14): proportional set size (PSS) summed over each container's processes.",
        "",
        "| process | measured PSS | request | limit |",
        "| --- | --- | --- | --- |",
    ]
    for key, label, _, _ in ROWS:
        request, limit = resources[key]
        lines.append(f"| {label} | {report['pss_mib'][key]} MiB | {request} | {limit} |")
    lines.append(MEMORY_END)
    return "\n".join(lines)


def times_block(report: dict, install: dict[str, float] | None, when: str) -> str:
    lines = [
        TIMES_START,
        f"Measured {when} on {machine()}.",
        "",
        "| step | seconds |",
        "| --- | --- |",
    ]
    if install:
        lines += [
            f"| install, cold (empty cache folder and pip cache): `tools/setup-sentry.sh` | {install['cold']:.0f} |",
            f"| install, cached | {install['warm']:.1f} |",
        ]
    if "wall_s" in report:
        lines.append(f"| the tier alone (`pytest -m real_sentry`), install cached | {report['wall_s']:.0f} |")
    lines += [f"| {name} | {seconds} |" for name, seconds in report["timings_s"].items()]
    lines.append(TIMES_END)
    return "\n".join(lines)


def measure_install() -> dict[str, float]:
    """A cold install into empty caches, then a cached one (seconds)."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as cache, tempfile.TemporaryDirectory() as pip_cache:
        os.chmod(cache, 0o755)
        env = {**os.environ, "SENTRY_K8S_CACHE": cache, "PIP_CACHE_DIR": pip_cache}
        times = {}
        for name in ("cold", "warm"):
            started = time.monotonic()
            subprocess.run([str(PROJECT_DIR / "tools" / "setup-sentry.sh")], env=env, check=True)
            times[name] = time.monotonic() - started
        return times


def run_tier(report_file: Path) -> dict:
    env = {**os.environ, "SENTRY_K8S_MEMORY_REPORT": str(report_file)}
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "real_sentry",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_real_sentry.py",
        ],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
    )
    report = json.loads(report_file.read_text(encoding="utf-8"))
    report["wall_s"] = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help="write the blocks into docs/operations.md and development.md"
    )
    parser.add_argument("--install", action="store_true", help="also measure a cold and a cached install")
    parser.add_argument(
        "--report",
        type=Path,
        help="the report an earlier tier run wrote (SENTRY_K8S_MEMORY_REPORT), instead of running the tier",
    )
    args = parser.parse_args(argv)
    install = measure_install() if args.install else None
    if args.report:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = run_tier(Path(tmp) / "report.json")
    when = dt.date.today().isoformat()
    memory = memory_block(report, default_resources(), when)
    times = times_block(report, install, when)
    print(memory)
    print(times)
    if args.write:
        write_block(OPERATIONS, MEMORY_START, MEMORY_END, memory)
        if install is None:
            # Keep the install rows of the block as they are: only --install measures them.
            old = DEVELOPMENT.read_text(encoding="utf-8")
            kept = [
                line
                for line in old[old.index(TIMES_START) : old.index(TIMES_END)].splitlines()
                if line.startswith("| install,")
            ]
            rows = times.splitlines()
            times = "\n".join([*rows[:5], *kept, *rows[5:]])
        write_block(DEVELOPMENT, TIMES_START, TIMES_END, times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
