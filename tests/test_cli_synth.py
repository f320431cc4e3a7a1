"""`cdk8s synth` (the pinned CLI, app from cdk8s.yaml) and `python main.py` write the same dist/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR, TEST_SECRETS, secret_env

CLI = PROJECT_DIR / "tools" / "node_modules" / ".bin" / "cdk8s"


def _project_copy(tmp_path: Path) -> Path:
    """The app's files in a scratch folder, so the CLI's dist/ is not the project's."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("main.py", "cdk8s.yaml"):
        shutil.copy(PROJECT_DIR / name, copy / name)
    for name in ("constructs", "imports", "config"):
        shutil.copytree(PROJECT_DIR / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / ".venv").symlink_to(PROJECT_DIR / ".venv")
    return copy


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.yaml"))}


@pytest.mark.parametrize("values_file", [None, "config/production.yaml"])
def test_cdk8s_synth_and_python_main_produce_the_same_dist(tmp_path: Path, values_file: str | None) -> None:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: run `make setup` (npm ci --prefix tools)")
    project = _project_copy(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_K8S_")},
        **secret_env(TEST_SECRETS),
        "SENTRY_K8S_SECRETS_FILE": str(tmp_path / "secrets.yaml"),
        # The values file is chosen the same way for both: SENTRY_K8S_CONFIG.
        **({"SENTRY_K8S_CONFIG": values_file} if values_file else {}),
    }
    # The two are independent: run them side by side (the machine has two cores).
    cli = subprocess.Popen(
        [str(CLI), "synth", "--no-check-upgrade"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    plain = subprocess.Popen(
        [str(project / ".venv" / "bin" / "python"), "main.py", "--outdir", str(tmp_path / "plain"), "--quiet"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cli_output, _ = cli.communicate(timeout=180)
        _, plain_errors = plain.communicate(timeout=120)
    finally:
        cli.kill()
        plain.kill()
    assert cli.returncode == 0, cli_output
    assert plain.returncode == 0, plain_errors
    from_cli = _files(project / "dist")
    assert from_cli == _files(tmp_path / "plain")
    if values_file is None:
        assert set(from_cli) == {"00-namespace.k8s.yaml", "10-secrets.k8s.yaml", "20-sentry.k8s.yaml"}
    else:  # production.yaml: an existing Secret, three web replicas
        assert set(from_cli) == {"00-namespace.k8s.yaml", "20-sentry.k8s.yaml"}
        assert b"replicas: 3" in from_cli["20-sentry.k8s.yaml"]
