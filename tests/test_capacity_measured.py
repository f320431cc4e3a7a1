"""The capacity model against what the real Sentry was measured to hold.

tools/measure_sentry_memory.py writes the memory each Sentry process held in the real Sentry
tier (proportional set size after warm-up, and the migration's peak) into
docs/operations.md, with the default requests and limits of the time. Here the default
configuration of today is checked against those figures, so that neither the resources nor
the docs drift apart unnoticed.
"""

from __future__ import annotations

import re

from constructs.quantities import parse_memory
from tests.conftest import PROJECT_DIR, Dist, pod_specs
from tools.doc_blocks import block_of
from tools.measure_sentry_memory import MEMORY_END, MEMORY_START, ROWS

MI = 2**20
OPERATIONS = (PROJECT_DIR / "docs" / "operations.md").read_text(encoding="utf-8")
# Steady requests known to be below the measured memory, each named in docs/operations.md;
# the maintainers decide (issue 17). A shortfall that disappears must leave this list too.
KNOWN_SHORTFALLS: set[str] = set()
# A limit must leave this much room above the measured memory (a worker that gets a large
# event, a migration on a slower disk).
LIMIT_HEADROOM = 1.2


def _measured() -> dict[str, tuple[int, str, str]]:
    """Per process: measured MiB, the request and the limit the block was written with."""
    block = block_of(OPERATIONS, MEMORY_START, MEMORY_END)
    found = {}
    for key, label, _, _ in ROWS:
        match = re.search(rf"^\| {re.escape(label)} \| (\d+) MiB \| (\S+) \| (\S+) \|$", block, re.MULTILINE)
        assert match, f"no row for {label} in the measured block: run tools/measure_sentry_memory.py --write"
        found[key] = (int(match.group(1)), match.group(2), match.group(3))
    return found


def _resources(dist: Dist) -> dict[str, tuple[str, str]]:
    found = {}
    for key, _, workload, container in ROWS:
        for obj in dist.objects:
            if obj["metadata"]["name"].startswith(workload):
                for spec in pod_specs(obj):
                    for item in [*spec.get("initContainers", []), *spec["containers"]]:
                        if item["name"] == container:
                            found[key] = (
                                item["resources"]["requests"]["memory"],
                                item["resources"]["limits"]["memory"],
                            )
    return found


def test_the_measured_block_shows_todays_default_resources(default_dist: Dist) -> None:
    measured = _measured()
    for key, (request, limit) in _resources(default_dist).items():
        assert measured[key][1:] == (request, limit), f"{key}: rerun tools/measure_sentry_memory.py --write"


def test_steady_requests_cover_the_measured_memory_or_are_named_shortfalls(default_dist: Dist) -> None:
    shortfalls = set()
    for key, (mib, request, _) in _measured().items():
        if key == "migrations":
            continue
        if parse_memory(request) < mib * MI:
            shortfalls.add(key)
    assert shortfalls == KNOWN_SHORTFALLS
    for key in KNOWN_SHORTFALLS:
        assert f"the {key}'s request is below its measured memory" in OPERATIONS


def test_every_limit_leaves_room_above_the_measured_memory(default_dist: Dist) -> None:
    for key, (mib, _, limit) in _measured().items():
        assert parse_memory(limit) >= mib * MI * LIMIT_HEADROOM, f"{key}: {limit} for {mib} MiB measured"
