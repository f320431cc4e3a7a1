#!/usr/bin/env python3
"""How long the two test loops take: `make check` (the inner loop) and the whole suite.

Each runs once, as `make` runs it, from this checkout; the figures go to stdout with the
machine and its load average before and after (a loaded machine stretches both). Nothing
asserts a time: this script prints, the reader judges.

    .venv/bin/python tools/bench_checks.py            # make check, then the whole pytest run
    .venv/bin/python tools/bench_checks.py --check    # make check only (about a minute)

The whole run includes the real Sentry tier (tests/test_real_sentry.py), whose install is
cached outside the repository (tools/setup-sentry.sh): the first run on a machine pays for
it once, and says so in its own summary.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tools.doc_blocks import machine  # noqa: E402

PYTHON = str(PROJECT / ".venv" / "bin" / "python")
COMMANDS = {
    "make check": ["make", "--no-print-directory", "check"],
    # What `make test` runs between its lint and validate steps.
    "pytest (the whole suite)": [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
}


def _run(argv: list[str]) -> tuple[float, str, int]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, done.stdout + done.stderr, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="time make check only")
    args = parser.parse_args(argv)
    names = ["make check"] if args.check else list(COMMANDS)
    print(f"test loops, one run each: {machine()}")
    failed = 0
    for name in names:
        seconds, output, code = _run(COMMANDS[name])
        counts = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", output)
        tally = ", ".join(f"{n} {what}" for n, what in counts[-4:]) or "no pytest summary"
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"  {name:28s} {seconds:7.1f} s  {status}; {tally}")
        failed |= code != 0
    print(f"  load average afterwards: {os.getloadavg()[0]:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
