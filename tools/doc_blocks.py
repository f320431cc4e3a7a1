"""Generated blocks in the Markdown docs: the text between a start and an end marker.

The tools that write a block (config_reference.py, capacity_table.py, validate.py
--skip-table, bench_synth.py and bench_backup.py with --write) replace only what lies between
their markers, and refuse a file that lacks them rather than append somewhere.
"""

from __future__ import annotations

from pathlib import Path


def replace_block(text: str, start: str, end: str, block: str) -> str:
    """`text` with everything from `start` to `end` (both included) replaced by `block`."""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SystemExit(f"expected one {start!r} and, after it, one {end!r}")
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    return before + block + after


def block_of(text: str, start: str, end: str) -> str:
    """The block from `start` to `end`, markers included."""
    return text[text.index(start) : text.index(end) + len(end)]


def write_block(path: Path, start: str, end: str, block: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(replace_block(text, start, end, block), encoding="utf-8")
    print(f"wrote {start.split(':')[0].removeprefix('<!-- ')} into {path}")


def machine() -> str:
    """Where a benchmark ran: CPU model, CPU count, load average (for the measured blocks)."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{platform.system()} {platform.machine()}, {model}, {os.cpu_count()} CPUs, load average {load:.1f}"
