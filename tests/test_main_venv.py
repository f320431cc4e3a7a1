"""`python main.py` as the README writes it: any python3 works, by handing over to the project's venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR, TEST_SECRETS, secret_env


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python without the project's packages, like a system python3 with no venv active."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import cdk8s"], capture_output=True, timeout=60)
    assert probe.returncode != 0, "the bare venv must not see cdk8s"
    return python


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_K8S_", "VIRTUAL_ENV", "PYTHON"))},
        **secret_env(TEST_SECRETS),
        "SENTRY_K8S_SECRETS_FILE": str(tmp_path / "secrets.yaml"),
    }


def test_main_hands_over_to_the_project_venv(bare_python: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    result = subprocess.run(
        [str(bare_python), str(PROJECT_DIR / "main.py"), "--outdir", str(out)],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "synthesized" in result.stderr
    assert sorted(p.name for p in out.glob("*.yaml")) == [
        "00-namespace.k8s.yaml",
        "10-secrets.k8s.yaml",
        "20-sentry.k8s.yaml",
    ]


def test_main_without_a_venv_says_to_run_make_setup(bare_python: Path, tmp_path: Path) -> None:
    # A copy of main.py with no .venv beside it: nothing to hand over to.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_DIR / "main.py", project / "main.py")
    result = subprocess.run(
        [str(bare_python), str(project / "main.py")],
        cwd=project,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "make setup" in result.stderr
    assert ".venv/bin/python main.py" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "dist").exists()
