"""The set-up commands: `make help` lists every target; `make setup` checks its prerequisites first."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_DIR


def test_make_help_lists_every_target_with_its_description() -> None:
    targets = re.findall(r"^([a-z][a-z0-9-]*):", (PROJECT_DIR / "Makefile").read_text(), flags=re.M)
    assert {"setup", "test", "e2e", "help"} <= set(targets)
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    listed = dict(re.findall(r"^  make (\S+) +(\S.*)$", shown.stdout, flags=re.M))
    assert sorted(listed) == sorted(targets)


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _setup_copy(tmp_path: Path) -> Path:
    """tools/setup.sh in an empty project folder: if a check let it through, it would find nothing to install."""
    project = tmp_path / "project"
    (project / "tools").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "tools" / "setup.sh", project / "tools" / "setup.sh")
    return project


def _run_setup(project: Path, fake_bin: Path, python: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "PYTHON": python}
    return subprocess.run(
        ["bash", str(project / "tools" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def test_setup_refuses_node_18_and_says_what_to_install(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    _script(fake_bin / "node", "#!/bin/sh\necho v18.19.0\n")  # Debian 12's nodejs
    project = _setup_copy(tmp_path)
    result = _run_setup(project, fake_bin, sys.executable)
    assert result.returncode == 1
    assert "Node.js v18.19.0 is too old: 20 or newer is needed" in result.stderr
    assert "Debian 12" in result.stderr
    assert not (project / ".venv").exists()


def test_setup_says_to_install_python3_venv(tmp_path: Path) -> None:
    # A python3 whose venv module cannot bootstrap pip, as on Debian without python3-venv.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    _script(
        fake_bin / "python3",
        f'#!/bin/sh\ncase "$*" in *ensurepip*) echo "No module named ensurepip" >&2; exit 1 ;; esac\n'
        f'exec {sys.executable} "$@"\n',
    )
    project = _setup_copy(tmp_path)
    result = _run_setup(project, fake_bin, "python3")
    assert result.returncode == 1
    assert "install python3-venv" in result.stderr
    assert not (project / ".venv").exists()


def test_the_real_sentry_install_fails_loudly_without_python_2_7(tmp_path: Path) -> None:
    # The real Sentry tier must never be skipped: no Python 2.7, no tier, and a clear error.
    project = tmp_path / "project"
    (project / "tools").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "tools" / "setup-sentry.sh", project / "tools" / "setup-sentry.sh")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "SENTRY_K8S_CACHE": str(tmp_path / "cache")}
    assert not shutil.which("python2.7", path=env["PATH"]) and not shutil.which("pyenv", path=env["PATH"])
    result = subprocess.run(
        ["bash", str(project / "tools" / "setup-sentry.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "no Python 2.7 found" in result.stderr
    assert "pyenv install 2.7.18" in result.stderr
    assert not (tmp_path / "cache").exists()


def test_the_real_sentry_install_is_pinned_exactly() -> None:
    for name in ("requirements-sentry.txt", "requirements-sentry-auth.txt", "requirements-sentry-tools.txt"):
        lines = [
            line.strip()
            for line in (PROJECT_DIR / "tools" / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert lines and all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+]+", line) for line in lines), name
    sentry = (PROJECT_DIR / "tools" / "requirements-sentry.txt").read_text()
    for pin in ("sentry==9.1.2", "sentry-plugins==9.1.2", "sentry-sdk==0.13.0", "uWSGI==2.0.18"):
        assert pin in sentry.splitlines(), pin


def test_make_refuses_a_lower_case_config_instead_of_building_the_default() -> None:
    # `make synth config=...` would otherwise synthesize config/minikube.yaml without a word.
    for typed, meant in (("config", "CONFIG"), ("e2e_args", "E2E_ARGS")):
        done = subprocess.run(
            ["make", "-n", "synth", f"{typed}=config/production.yaml"], cwd=PROJECT_DIR, capture_output=True, text=True
        )
        assert done.returncode == 2
        assert f"write {meant}=config/production.yaml" in done.stderr
        assert "main.py" not in done.stdout
    done = subprocess.run(
        ["make", "-n", "synth", "CONFIG=config/production.yaml"], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0 and "--config config/production.yaml" in done.stdout


def test_setup_says_what_node_20_means_and_goes_on(tmp_path: Path) -> None:
    # jsii's end-of-life banner, said plainly once (the README's Prerequisites say the same).
    for version, noted in (("v20.11.1", True), ("v22.12.0", False)):
        fake_bin = tmp_path / version / "bin"
        fake_bin.mkdir(parents=True)
        _script(fake_bin / "node", f"#!/bin/sh\necho {version}\n")
        project = _setup_copy(tmp_path / version)
        # A venv that records that setup went on to install into it, and stops there.
        (project / ".venv" / "bin").mkdir(parents=True)
        _script(project / ".venv" / "bin" / "python", f"#!/bin/sh\ntouch {project}/installing\nexit 1\n")
        result = _run_setup(project, fake_bin, sys.executable)
        note = f"setup: note: Node.js {version} works (the tests run on it), but jsii supports only Node 22 and 24"
        assert (note in result.stderr) == noted, result.stderr
        assert "too old" not in result.stderr
        assert (project / "installing").exists(), "it goes on to install"
