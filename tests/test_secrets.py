"""Secrets: where values come from, that they stay put, and that they never leak."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import yaml

from tests.conftest import TEST_SECRETS, Dist, all_containers, synth


def _leak_forms(value: str) -> set[str]:
    return {value, base64.b64encode(value.encode()).decode()}


def test_no_secret_value_appears_outside_the_secret_object(default_dist: Dist) -> None:
    outside = [f for f in default_dist.files if f.name != "10-secrets.k8s.yaml"]
    text = "".join(f.read_text() for f in outside)
    for value in TEST_SECRETS.values():
        for form in _leak_forms(value):
            assert form not in text
    secret = default_dist.get("Secret", "sentry-secrets")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == TEST_SECRETS


def test_secrets_are_referenced_never_inlined(default_dist: Dist) -> None:
    # Every env var whose name says it is a secret must come from a secretKeyRef.
    for obj in default_dist.objects:
        for container in all_containers(obj):
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("PASSWORD", "SECRET", "AUTH", "KEY")):
                    assert "valueFrom" in env and "value" not in env, f"{container['name']}: {env['name']}"


def test_two_synths_in_a_row_are_byte_identical(tmp_path: Path) -> None:
    first_code, first = synth(tmp_path, outdir=tmp_path / "a")
    second_code, second = synth(tmp_path, outdir=tmp_path / "b")
    assert first_code == second_code == 0
    assert [f.name for f in first.files] == [f.name for f in second.files]
    for a, b in zip(first.files, second.files, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_missing_secrets_are_generated_once_and_then_reused(tmp_path: Path) -> None:
    code, first = synth(tmp_path, secrets={}, outdir=tmp_path / "a")
    assert code == 0
    stored = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    assert set(stored) == {"postgres-password", "redis-password", "sentry-secret-key", "admin-password"}
    assert all(len(v) >= 20 for v in stored.values())
    assert len(set(stored.values())) == 4
    assert stat.S_IMODE((tmp_path / "secrets.yaml").stat().st_mode) == 0o600

    code, second = synth(tmp_path, secrets={}, outdir=tmp_path / "b")
    assert code == 0
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text()) == stored
    assert first.files[1].read_bytes() == second.files[1].read_bytes()


def test_environment_overrides_the_file_and_is_not_written_to_it(tmp_path: Path) -> None:
    synth(tmp_path, secrets={}, outdir=tmp_path / "a")
    stored = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    code, dist = synth(tmp_path, secrets={"postgres-password": "from-the-environment"}, outdir=tmp_path / "b")
    assert code == 0
    data = dist.get("Secret", "sentry-secrets")["data"]
    assert base64.b64decode(data["postgres-password"]).decode() == "from-the-environment"
    assert base64.b64decode(data["redis-password"]).decode() == stored["redis-password"]
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text()) == stored


def test_existing_secret_leaves_no_secret_material_in_dist(tmp_path: Path) -> None:
    code, dist = synth(tmp_path, "secrets:\n  existing_secret: my-sentry-secrets\n", secrets={})
    assert code == 0
    assert not dist.of_kind("Secret")
    assert not (tmp_path / "secrets.yaml").exists()
    refs = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for obj in dist.objects
        for c in all_containers(obj)
        for env in c.get("env", [])
        if "valueFrom" in env and "secretKeyRef" in env["valueFrom"]
    }
    assert refs == {"my-sentry-secrets"}


def test_a_secret_that_cannot_be_generated_must_be_supplied(tmp_path: Path, capsys) -> None:
    values = "sentry:\n  gitlab:\n    login_enabled: true\n    application_id: abc\n"
    code, _ = synth(tmp_path, values)
    assert code == 2
    err = capsys.readouterr().err
    assert "gitlab-application-secret" in err and "SENTRY_K8S_GITLAB_APPLICATION_SECRET" in err


def test_an_unknown_sentry_k8s_variable_is_warned_about_by_name(tmp_path: Path, capsys) -> None:
    # A typo: without the warning, the password would silently come from the file instead.
    code, _ = synth(tmp_path, extra_env={"SENTRY_K8S_POSTGRES_PASWORD": "typo-test-secret"})
    assert code == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "SENTRY_K8S_POSTGRES_PASWORD" in line]
    assert warning.startswith("warning: SENTRY_K8S_POSTGRES_PASWORD: not read by the synth")
    for known in ("SENTRY_K8S_POSTGRES_PASSWORD", "SENTRY_K8S_CONFIG", "SENTRY_K8S_SECRETS_FILE"):
        assert known in warning
    assert "typo-test-secret" not in err
    code, _ = synth(tmp_path, outdir=tmp_path / "again")
    assert code == 0 and "not read by the synth" not in capsys.readouterr().err
