"""Moving the backups to a new volume keeps the backups (docs/operations.md).

The procedure copies the backup volume into a temporary claim and back with the Job of
tools/volume_copy.py. Here its script runs on directories that stand for the volumes
(each with the file system's lost+found), on backups the CronJob's own script wrote
from a real PostgreSQL; after the round trip the restore Job's script restores the
newest of them into a fresh server.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Dist, synth
from tests.servers import PostgresServer
from tests.test_backup import backup_script, backups, new_server, restore_script
from tools.validate import schema_errors
from tools.volume_copy import job_name, manifests


def _volume(root: Path, name: str) -> Path:
    volume = root / name
    (volume / "lost+found").mkdir(parents=True)
    return volume


def _copy_job() -> dict:
    (job,) = [
        o for o in manifests("sentry", "postgres:9.6.24", "sentry-backup", "sentry-backup-move") if o["kind"] == "Job"
    ]
    return job


def _copy(source: Path, target: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    container = _copy_job()["spec"]["template"]["spec"]["containers"][0]
    env = {"FROM_DIR": str(source), "TO_DIR": str(target), "PATH": path or "/usr/bin:/bin"}
    return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def restore_dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    code, dist = synth(tmp_path_factory.mktemp("restore"), "postgres: {backup: {restore: {enabled: true}}}")
    assert code == 0
    return dist


@pytest.fixture(scope="module")
def backup_volume(restore_dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The backup volume with two backups of a small Sentry database."""
    server = new_server()
    try:
        server.psql("CREATE DATABASE sentry")
        server.psql(
            "CREATE TABLE sentry_project (id serial PRIMARY KEY, name text);"
            "INSERT INTO sentry_project (name) SELECT 'p' || g FROM generate_series(1, 50) g",
            database="sentry",
        )
        volume = _volume(tmp_path_factory.mktemp("volumes"), "sentry-backup")
        for _ in range(2):
            result = backup_script(restore_dist, server, volume).run(server.path())
            assert result.returncode == 0, result.stderr
            server.psql("INSERT INTO sentry_project (name) VALUES ('later')", database="sentry")
            time.sleep(1.1)  # a backup is named after its second
        yield volume
    finally:
        server.cleanup()


def test_the_backups_survive_the_move_through_a_temporary_volume(
    restore_dist: Dist, backup_volume: Path, tmp_path: Path
) -> None:
    original = tmp_path / "sentry-backup"
    shutil.copytree(backup_volume, original, symlinks=True)
    names = backups(original)
    assert len(names) == 2
    temporary = _volume(tmp_path, "sentry-backup-move")
    first = _copy(original, temporary)
    assert first.returncode == 0, first.stderr
    assert "every checksum matches" in first.stdout
    # The old claim is deleted and a new, empty one made (the new storage class).
    shutil.rmtree(original)
    new = _volume(tmp_path, "sentry-backup")
    back = _copy(temporary, new)
    assert back.returncode == 0, back.stderr
    assert backups(new) == names
    target: PostgresServer = new_server()
    try:
        result = restore_script(restore_dist, target, new).run(target.path())
        assert result.returncode == 0, result.stdout + result.stderr
        assert "done in" in result.stdout and names[-1] in result.stdout
        assert target.psql("SELECT count(*) FROM sentry_project", database="sentry") == "51"
    finally:
        target.cleanup()


def test_the_copy_refuses_a_volume_that_is_not_empty(backup_volume: Path, tmp_path: Path) -> None:
    target = _volume(tmp_path, "other")
    (target / "something").write_text("x")
    result = _copy(backup_volume, target)
    assert result.returncode == 1
    assert "is not empty" in result.stderr and sorted(p.name for p in target.iterdir()) == ["lost+found", "something"]


def test_a_copy_that_changed_a_byte_fails(backup_volume: Path, tmp_path: Path) -> None:
    """cp that damages what it writes (a full or failing volume can): the check catches it."""
    shims = tmp_path / "shims"
    shims.mkdir()
    real_cp = shutil.which("cp")
    (shims / "cp").write_text(
        f'#!/bin/sh\n"{real_cp}" "$@" || exit\nfind "$(eval echo \\${{$#}})" -name "*.dat.gz" | head -n 1 | '
        'while read -r f; do printf x >> "$f"; done\n'
    )
    (shims / "cp").chmod(0o755)
    result = _copy(backup_volume, _volume(tmp_path, "damaged"), path=f"{shims}:/usr/bin:/bin")
    assert result.returncode == 1
    assert "FAILED: the copy" in result.stderr and ".dat.gz" in result.stderr


def test_the_copy_job_is_hardened_and_valid(tmp_path: Path) -> None:
    objects = manifests("sentry", "postgres:9.6.24", "sentry-backup", "sentry-backup-move", "8Gi", "fast")
    import yaml

    (tmp_path / "copy.yaml").write_text(yaml.safe_dump_all(objects))
    assert schema_errors(tmp_path, ["1.27.0"]) == []
    job = objects[-1]
    assert job["metadata"]["name"] == job_name("sentry-backup", "sentry-backup-move")
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert {"name": "from", "mountPath": "/from", "readOnly": True} in container["volumeMounts"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "sentry-backup", "readOnly": True}
    assert objects[0]["spec"]["storageClassName"] == "fast"
