"""Snapshot of the whole default output: guards against unintended change.

The property tests beside it assert what matters; this one makes every other
change visible in review. Update with `pytest --snapshot-update` and read the diff.
"""

from __future__ import annotations

from tests.conftest import Dist


def test_default_output_matches_the_snapshot(default_dist: Dist, snapshot) -> None:
    for file in default_dist.files:
        assert file.read_text(encoding="utf-8") == snapshot(name=file.name)
