"""`cdk8s synth` (the pinned CLI, app from cdk8s.yaml) and `python main.py` write the same dist/."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR, TEST_SECRETS, secret_env

CLI = PROJECT_DIR / "tools" / "node_modules" / ".bin" / "cdk8s"
VALUES_FILES = [None, "config/production.yaml"]


def _project_copy(tmp_path: Path) -> Path:
    """The app's files in a scratch folder, so the CLI's dist/ is not the project's."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("main.py", "cdk8s.yaml"):
        shutil.copy(PROJECT_DIR / name, copy / name)
    for name in ("app", "constructs", "config"):
        shutil.copytree(PROJECT_DIR / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    # imports/ keeps its bytecode (copied with the sources' times, so Python trusts it
    # exactly as in the project): compiling the 2.8 MB bindings costs each run ~0.5 s.
    shutil.copytree(PROJECT_DIR / "imports", copy / "imports")
    (copy / ".venv").symlink_to(PROJECT_DIR / ".venv")
    return copy


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.yaml"))}


@dataclass
class Runs:
    """Both synths of one values file, finished."""

    cli: subprocess.CompletedProcess[str]
    plain: subprocess.CompletedProcess[str]
    cli_dist: Path
    plain_dist: Path


def _start(tmp_path: Path, values_file: str | None) -> tuple[subprocess.Popen[str], subprocess.Popen[str], Path]:
    project = _project_copy(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_K8S_")},
        **secret_env(TEST_SECRETS),
        "SENTRY_K8S_SECRETS_FILE": str(tmp_path / "secrets.yaml"),
        # The values file is chosen the same way for both: SENTRY_K8S_CONFIG.
        **({"SENTRY_K8S_CONFIG": values_file} if values_file else {}),
    }
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return cli, plain, project


def _finish(process: subprocess.Popen[str], timeout: int) -> subprocess.CompletedProcess[str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, Runs]:
    """Every synth of this module started at once: they are independent, and the CLI
    mostly waits for node and Python to start, so together they take little longer
    than one."""
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: run `make setup` (npm ci --prefix tools)")
    started = {v: (tmp, _start(tmp, v)) for v in VALUES_FILES for tmp in [tmp_path_factory.mktemp("cli")]}
    finished = {}
    for values_file, (tmp, (cli, plain, project)) in started.items():
        finished[values_file] = Runs(_finish(cli, 180), _finish(plain, 120), project / "dist", tmp / "plain")
    return finished


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_cdk8s_synth_and_python_main_produce_the_same_dist(
    runs: dict[str | None, Runs], values_file: str | None
) -> None:
    run = runs[values_file]
    assert run.cli.returncode == 0, run.cli.stdout
    assert run.plain.returncode == 0, run.plain.stderr
    from_cli = _files(run.cli_dist)
    assert from_cli == _files(run.plain_dist)
    if values_file is None:
        assert set(from_cli) == {"00-namespace.k8s.yaml", "10-secrets.k8s.yaml", "20-sentry.k8s.yaml"}
    else:  # production.yaml: an existing Secret, three web replicas
        assert set(from_cli) == {"00-namespace.k8s.yaml", "20-sentry.k8s.yaml"}
        assert b"replicas: 3" in from_cli["20-sentry.k8s.yaml"]


def test_the_cli_route_compares_with_what_was_applied_and_takes_flags_through_make(tmp_path: Path) -> None:
    """Issue 22: `make synth-cli` deletes dist/ first, so only the apply record can tell what
    was applied; ARGS reaches the app (SENTRY_K8S_SYNTH_ARGS) as it does for `make synth`."""
    from tests.conftest import make_apply, synth
    from tests.fake_kubectl import FakeCluster

    project = _project_copy(tmp_path)
    shutil.copy(PROJECT_DIR / "Makefile", project / "Makefile")
    (project / "tools").mkdir()
    (project / "tools" / "node_modules").symlink_to(PROJECT_DIR / "tools" / "node_modules")
    state = tmp_path / "state"
    applied = tmp_path / "applied"
    assert synth(tmp_path, "redis: {storage: {storage_class: fast}}", outdir=applied, state=state)[0] == 0
    make_apply(applied, state, FakeCluster(tmp_path / "cluster.json"))
    (project / "values.yaml").write_text("redis: {storage: {storage_class: slow}}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_K8S_")},
        **secret_env(TEST_SECRETS),
        "SENTRY_K8S_SECRETS_FILE": str(tmp_path / "secrets.yaml"),
        "SENTRY_K8S_STATE_DIR": str(state),
    }

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "synth-cli", "CONFIG=values.yaml", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    refused = make()
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "PersistentVolumeClaim sentry/data-sentry-redis-0: spec.storageClassName" in output
    assert "--allow-apply-conflicts" in output
    done = make("ARGS=--allow-apply-conflicts --quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "storageClassName: slow" in (project / "dist" / "20-sentry.k8s.yaml").read_text()
