#!/usr/bin/env python3
"""Mutation check: does the test suite catch realistic bugs without the snapshot?

    .venv/bin/python tools/mutants.py                 # every mutant in tools/mutants.yaml
    .venv/bin/python tools/mutants.py --jobs 2        # two at a time (one tree copy each)
    .venv/bin/python tools/mutants.py ID [ID ...]     # only these
    .venv/bin/python tools/mutants.py --check         # only check that every mutant applies
    .venv/bin/python tools/mutants.py --tests tests/test_wiring.py   # what one file catches

Each mutant replaces one exact snippet of one file. It is applied alone to a private
copy of the project (never the working tree), and the suite runs there with the
snapshot test left out (it would catch any change, which says nothing about the
other tests) and `-x`, so a killed mutant stops at its first failing test. The test files
that exercise the mutated file directly run first (DIRECT_TESTS), then the fast
ones, and the ones that start servers or the cdk8s CLI last.

A mutant whose snippet is missing, or found more than once, is *stale*: an error, not
a kill, because the code it meant to break has moved. Exit status 0 only when every
mutant was killed. Slow (minutes): it is not part of `make test` or CI.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
MUTANTS_FILE = PROJECT / "tools" / "mutants.yaml"
# Not copied: version control, caches, outputs. Linked instead of copied: the
# environments (large, and never mutated).
SKIP = {".git", "dist", ".pytest_cache", ".ruff_cache", "__pycache__", ".secrets", ".cdk8s.out"}
LINKED = [".venv", ".venv-checkov", "tools/node_modules"]
# Run first: the property tests that kill most mutants within seconds. Run last: they
# start PostgreSQL servers, wait on purpose, or run the cdk8s CLI.
FAST_FIRST = ["test_wiring.py", "test_sentry_tier.py", "test_security.py", "test_foundation.py"]
SLOW_LAST = ["test_migration_script.py", "test_wait_scripts.py", "test_cli_synth.py", "test_backup.py"]
# The files that exercise a mutated file directly (scripts run for real, rules applied)
# run before everything else for its mutants: the whole suite still runs when they pass,
# but a mutant they kill does not wait minutes for the slow files to come round.
DIRECT_TESTS = {
    "constructs/scripts/postgres-backup.sh": ["test_backup.py", "test_external.py"],
    "constructs/scripts/postgres-restore.sh": ["test_external.py", "test_backup.py"],
    "constructs/scripts/postgres-backup-offsite.sh": ["test_backup.py"],
    "constructs/scripts/wait-for-postgres.sh": ["test_wait_scripts.py"],
    "constructs/scripts/wait-for-migrations.sh": ["test_wait_scripts.py"],
    "constructs/scripts/sentry-migrate.sh": ["test_migration_script.py", "test_wait_scripts.py"],
    "constructs/scripts/wait-for-redis.sh": ["test_redis_scripts.py"],
    "constructs/scripts/redis-server.sh": ["test_redis_scripts.py"],
    "app/apply_rules.py": ["test_day2.py"],
    "app/capacity.py": ["test_sentry_tier.py", "test_cluster_features.py"],
    "constructs/endpoints.py": ["test_external.py", "test_props.py"],
    "app/stack.py": ["test_props.py", "test_external.py", "test_cluster_features.py", "test_day2_secrets.py"],
    "constructs/sentry_runtime.py": ["test_wiring.py", "test_sentry_conf.py", "test_external.py"],
    "constructs/pod_security.py": ["test_security.py", "test_front_door.py"],
    "constructs/postgres_with_backup.py": ["test_wiring.py", "test_external.py", "test_backup.py"],
    "constructs/network_policies.py": ["test_security.py", "test_cluster_features.py", "test_external.py"],
    "constructs/placement.py": ["test_cluster_features.py"],
    "constructs/workload.py": ["test_front_door.py", "test_wiring.py", "test_cluster_features.py"],
    "constructs/redis_broker.py": ["test_wiring.py", "test_redis_scripts.py", "test_cluster_features.py"],
    "constructs/sentry_migrations.py": ["test_sentry_tier.py", "test_migration_script.py"],
    "constructs/sentry_web.py": ["test_constructs_alone.py", "test_sentry_tier.py", "test_cluster_features.py"],
    "constructs/sentry_worker.py": ["test_constructs_alone.py", "test_sentry_tier.py"],
    "constructs/sentry_cron.py": ["test_constructs_alone.py", "test_sentry_tier.py"],
    "constructs/sentry_cleanup.py": ["test_constructs_alone.py", "test_sentry_tier.py"],
    "constructs/checks.py": ["test_props.py", "test_front_door.py", "test_bad_input.py"],
    "constructs/props.py": ["test_front_door.py", "test_bad_input.py"],
    "constructs/sentry.py": ["test_front_door.py", "test_props.py", "test_security.py", "test_cluster_features.py"],
    "constructs/kube.py": ["test_wiring.py", "test_foundation.py", "test_cluster_features.py"],
    "constructs/postgres_backup.py": ["test_wiring.py", "test_foundation.py", "test_backup.py"],
    "constructs/postgres_restore.py": ["test_wiring.py", "test_backup.py"],
    "constructs/images.py": ["test_image_contract.py"],
    "constructs/naming.py": ["test_front_door.py", "test_foundation.py"],
    "app/props_model.py": ["test_bad_input.py", "test_props.py"],
    "app/ignored.py": ["test_bad_input.py", "test_ignored.py", "test_day2_review.py"],
    "app/values.py": ["test_bad_input.py", "test_ignored.py", "test_day2_review.py"],
    "app/secrets_store.py": ["test_bad_input.py", "test_external.py", "test_secrets.py"],
    "app/config.py": ["test_bad_input.py", "test_external.py"],
    "app/summary.py": ["test_summary.py"],
    "main.py": ["test_bad_input.py", "test_summary.py", "test_apply.py", "test_day2_secrets.py", "test_day2.py"],
    "constructs/scripts/copy-volume.sh": ["test_procedures.py"],
    "app/day2.py": ["test_day2_review.py", "test_apply.py", "test_day2_secrets.py", "test_day2_transitions.py"],
    "app/applier.py": ["test_apply.py", "test_day2_transitions.py"],
    "app/state.py": ["test_apply.py", "test_day2_secrets.py"],
    "tools/recover_secrets.py": ["test_day2_secrets.py"],
    "tools/postgres_sql.py": ["test_day2_secrets.py"],
}
SNAPSHOT_TEST = "test_snapshot.py"
TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    breaks: str


@dataclass(frozen=True)
class Result:
    mutant: Mutant
    outcome: str  # killed | survived | stale | error
    detail: str
    seconds: float


def load(path: Path = MUTANTS_FILE) -> list[Mutant]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutants = [Mutant(**{k: str(v) for k, v in item.items()}) for item in data]
    ids = [m.id for m in mutants]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"mutants: duplicate ids {duplicates} in {path}")
    for m in mutants:
        if m.original == m.replacement:
            raise SystemExit(f"mutants: {m.id} replaces its snippet with itself")
    return mutants


def stale_reason(mutant: Mutant, root: Path) -> str | None:
    """Why the mutant cannot be applied to the tree at `root`, or None if it can."""
    path = root / mutant.file
    if not path.is_file():
        return f"{mutant.file} does not exist"
    text = path.read_text(encoding="utf-8")
    count = text.count(mutant.original)
    if count != 1:
        return f"its snippet occurs {count} times in {mutant.file} (must be exactly once)"
    return syntax_error(mutant.file, text.replace(mutant.original, mutant.replacement))


def syntax_error(name: str, text: str) -> str | None:
    """A mutant must still parse: one that breaks the syntax is killed by any import or
    shell, which tells nothing about the tests."""
    if name.endswith(".py"):
        try:
            compile(text, name, "exec")
        except SyntaxError as exc:
            return f"the mutated {name} does not compile: {exc}"
        # Nor may it use a name that does not exist (a NameError fails every test).
        ruff = PROJECT / ".venv" / "bin" / "ruff"
        check = subprocess.run(
            [str(ruff), "check", "--quiet", "--no-cache", "--select", "F821", "--stdin-filename", name, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            return f"the mutated {name} uses an undefined name: {check.stdout.strip()}"
    if name.endswith(".sh"):
        check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, check=False)
        if check.returncode != 0:
            return f"the mutated {name} is not valid shell: {check.stderr.strip()}"
    return None


def copy_project(target: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(PROJECT)
        linked = {Path(p).name for p in LINKED if Path(p).parent == rel}
        return {n for n in names if n in SKIP or n in linked or n.endswith(".pyc")}

    shutil.copytree(PROJECT, target, ignore=ignore, symlinks=True)
    for rel in LINKED:
        if (PROJECT / rel).exists():
            (target / rel).symlink_to((PROJECT / rel).resolve())
    return target


def test_files(root: Path, mutated: str = "") -> list[str]:
    files = sorted(p.name for p in (root / "tests").glob("test_*.py") if p.name != SNAPSHOT_TEST)
    direct = [f for f in DIRECT_TESTS.get(mutated, []) if f in files]
    first = direct + [f for f in FAST_FIRST if f in files and f not in direct]
    middle = [f for f in files if f not in first and f not in SLOW_LAST]
    last = [f for f in SLOW_LAST if f in files and f not in first]
    return [f"tests/{f}" for f in first + middle + last]


def first_failure(output: str) -> str:
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return match.group(1) if match else output.strip().splitlines()[-1] if output.strip() else "?"


def run_one(mutant: Mutant, root: Path, basetemp: Path, tests: list[str] | None = None) -> Result:
    started = time.monotonic()
    reason = stale_reason(mutant, root)
    if reason:
        return Result(mutant, "stale", reason, 0.0)
    path = root / mutant.file
    original_text = path.read_text(encoding="utf-8")
    path.write_text(original_text.replace(mutant.original, mutant.replacement), encoding="utf-8")
    try:
        command = [
            str(root / ".venv" / "bin" / "python"),
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={basetemp}",
            *(tests or test_files(root, mutant.file)),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_K8S_")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        try:
            proc = subprocess.run(
                command, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
            )
        except subprocess.TimeoutExpired:
            seconds = time.monotonic() - started
            return Result(mutant, "killed", f"the suite did not finish in {TIMEOUT_SECONDS}s", seconds)
        seconds = time.monotonic() - started
        if proc.returncode == 0:
            return Result(mutant, "survived", "every test passed", seconds)
        if proc.returncode == 1:
            return Result(mutant, "killed", first_failure(proc.stdout), seconds)
        # 2-5: interrupted, internal error, usage error, nothing collected. A mutant
        # that breaks collection (an import error) shows up as 2 with the error in it.
        if proc.returncode == 2 and "ERROR" in proc.stdout:
            return Result(mutant, "killed", first_failure(proc.stdout), seconds)
        return Result(mutant, "error", f"pytest exited {proc.returncode}: {proc.stdout[-500:]}", seconds)
    finally:
        path.write_text(original_text, encoding="utf-8")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="run only these mutants")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--check", action="store_true", help="only report stale mutants")
    parser.add_argument(
        "--tests", nargs="+", metavar="PATH", help="run only these test files or node ids (default: the whole suite)"
    )
    args = parser.parse_args(argv)

    mutants = load()
    if args.ids:
        unknown = sorted(set(args.ids) - {m.id for m in mutants})
        if unknown:
            print(f"mutants: unknown ids {unknown}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in args.ids]
    if args.check:
        stale = [(m, r) for m in mutants if (r := stale_reason(m, PROJECT))]
        for m, reason in stale:
            print(f"STALE     {m.id}: {reason}")
        print(f"{len(mutants)} mutants, {len(stale)} stale")
        return 1 if stale else 0

    work = Path(tempfile.mkdtemp(prefix="sentry-k8s-mutants-"))
    todo: queue.Queue[Mutant] = queue.Queue()
    for m in mutants:
        todo.put(m)
    results: list[Result] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        root = copy_project(work / f"tree{index}")
        while True:
            try:
                mutant = todo.get_nowait()
            except queue.Empty:
                return
            result = run_one(mutant, root, work / f"tmp{index}", args.tests)
            with lock:
                results.append(result)
                print(
                    f"{result.outcome.upper():9} {mutant.id} ({result.seconds:.0f}s): {result.detail}",
                    flush=True,
                )

    started = time.monotonic()
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(max(1, args.jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    by_outcome = {o: [r for r in results if r.outcome == o] for o in ("killed", "survived", "stale", "error")}
    print()
    for outcome in ("survived", "stale", "error"):
        for r in by_outcome[outcome]:
            print(f"{outcome.upper()}: {r.mutant.id} ({r.mutant.file}): {r.mutant.breaks}; {r.detail}")
    print(
        f"{len(results)} mutants: {len(by_outcome['killed'])} killed, {len(by_outcome['survived'])} survived, "
        f"{len(by_outcome['stale'])} stale, {len(by_outcome['error'])} errors in {time.monotonic() - started:.0f}s"
    )
    return 0 if len(by_outcome["killed"]) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
