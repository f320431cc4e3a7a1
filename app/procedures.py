"""The procedures a refusal of the synth points at, and the words that confirm them.

Kept free of heavy imports: main.py reads CONFIRMATIONS for its `--confirm` choices
before it starts node.
"""

from __future__ import annotations

import re

DOC = "docs/operations.md"
# id -> heading in docs/operations.md. A refusal prints the heading and its anchor;
# tests/test_day2_transitions.py checks that every one exists.
PROCEDURES: dict[str, str] = {
    "rebuild-postgres": "Rebuilding PostgreSQL from a backup",
    "move-postgres": "Moving PostgreSQL into or out of the cluster",
    "replace-redis": "Replacing Redis with an empty one",
    "move-filestore-volume": "Moving the filestore to a new volume",
    "move-files-bucket": "Moving Sentry's files between a volume and a bucket",
    "move-backups": "Moving the backups to a new volume",
    "rotate-postgres-password": "Rotating the PostgreSQL password",
    "rotate-redis-password": "Rotating the Redis password",
    "recover-secrets": "Recovering lost secrets",
    "rename-database": "Renaming the database user or the database",
    "rename-stack": "Renaming a stack",
    "second-stack": "Running a second stack",
    "remove-stack": "Removing a stack",
    "delete-kept": "Deleting what make apply keeps",
}
# --confirm token -> the procedure it confirms was followed around this apply. main.py
# accepts only these.
CONFIRMATIONS: dict[str, str] = {
    "rebuild-postgres": "rebuild-postgres",
    "redis-downgrade": "replace-redis",
    "rotate-postgres-password": "rotate-postgres-password",
    "rotate-redis-password": "rotate-redis-password",
    "rename-database-user": "rename-database",
    "rename-database": "rename-database",
    "second-stack": "second-stack",
    "new-secrets": "recover-secrets",
}


def anchor(title: str) -> str:
    """GitHub's anchor of a heading (tests/test_docs.py computes it the same way)."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def procedure_ref(procedure: str) -> str:
    title = PROCEDURES[procedure]
    return f"{DOC}, “{title}” ({DOC}#{anchor(title)})"
