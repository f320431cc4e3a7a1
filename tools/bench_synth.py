#!/usr/bin/env python3
"""Synth benchmark: the whole `python main.py` next to the bare cost of starting cdk8s.

Each command runs as a fresh process (that is what a user waits for), RUNS times,
interleaved so that machine noise hits all of them alike; the median is reported.

    .venv/bin/python tools/bench_synth.py [RUNS]                     # print the table
    .venv/bin/python tools/bench_synth.py [RUNS] --write docs/development.md  # and replace it there

With --write, the table goes between the bench-synth markers of that file, with the date and
the machine: the docs show this script's output, never typed figures.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = str(PROJECT / ".venv" / "bin" / "python")

START = "<!-- bench-synth:start (written by tools/bench_synth.py --write; measured: run it again, do not edit) -->"
END = "<!-- bench-synth:end -->"
HEADER = ["| command | median (s) | min-max (s) |", "| --- | --- | --- |"]

EMPTY_CDK8S = "import cdk8s; a = cdk8s.App(outdir={out!r}); cdk8s.Chart(a, 'empty'); a.synth()"
EMPTY_PLUS = "import cdk8s, cdk8s_plus_27; a = cdk8s.App(outdir={out!r}); cdk8s.Chart(a, 'empty'); a.synth()"


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=PROJECT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    args = sys.argv[1:]
    write = None
    if "--write" in args:
        i = args.index("--write")
        write = Path(args[i + 1])
        del args[i : i + 2]
    runs = int(args[0]) if args else 9
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "SENTRY_K8S_SECRETS_FILE": str(Path(tmp) / "secrets.yaml"),
        }
        commands = {
            "empty chart, cdk8s only": [PYTHON, "-c", EMPTY_CDK8S.format(out=f"{tmp}/a")],
            "empty chart, cdk8s + cdk8s-plus-27": [PYTHON, "-c", EMPTY_PLUS.format(out=f"{tmp}/b")],
            "python main.py (default config)": [PYTHON, "main.py", "--outdir", f"{tmp}/dist", "--quiet"],
        }
        _time(commands["python main.py (default config)"], env)  # generates the secrets file once
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(_time(argv, env))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"synth benchmark: {runs} runs each, fresh process per run, median (min-max) seconds")
    for name, values in samples.items():
        print(f"  {name:38s} {medians[name]:6.3f}  ({min(values):.3f}-{max(values):.3f})")
    framework = medians["empty chart, cdk8s + cdk8s-plus-27"]
    project = medians["python main.py (default config)"] - framework
    share = 100 * project / framework
    print(f"  {'project share (main.py - empty plus)':38s} {project:6.3f}  ({share:.0f}% of the framework start-up)")
    if write is not None:
        sys.path.insert(0, str(PROJECT))
        from tools.doc_blocks import machine, write_block

        rows = [f"| {name} | {medians[name]:.2f} | {min(v):.2f}-{max(v):.2f} |" for name, v in samples.items()]
        rows.append(f"| the project's own share (main.py minus the empty chart with cdk8s-plus-27) | {project:.2f} | |")
        lines = [
            START,
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}: {runs} runs of each command, "
            "a fresh process per run, interleaved.",
            "",
            *HEADER,
            *rows,
            "",
            f"The project's share is {share:.0f}% of the framework's start-up.",
            END,
        ]
        write_block(write, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
