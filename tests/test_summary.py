"""The summary a synth prints: which values file it used, where the output went (as the user
wrote it), what must exist before `kubectl apply`, the login page, and the next steps for
the mode it is in. Names in it come from the synthesized objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import main
from app.secrets_store import required_keys
from app.summary import summary
from app.values import parse_config
from tests.conftest import DEFAULT_CONFIG, FULL_SECRETS, FULL_VALUES, PROJECT_DIR, Dist, environment, secret_env

EXISTING = """
secrets: {existing_secret: sentry-credentials}
postgres:
  external: {host: db.internal, cidrs: [10.0.8.0/24], sslmode: verify-full, ca: {secret: db-ca, key: root.pem}}
sentry:
  web:
    service_type: ClusterIP
    ingress: {enabled: true, host: sentry.example.com, tls_secret: sentry-tls}
  smtp: {host: smtp.example.com, user: sentry}
"""


def _run(tmp_path: Path, argv: list[str], env: dict[str, str] | None = None) -> None:
    """main.py as a user runs it (no --quiet), from tmp_path; its stderr."""
    secrets = {"SENTRY_K8S_SECRETS_FILE": str(tmp_path / "secrets.yaml"), **secret_env(FULL_SECRETS)}
    with environment({**secrets, **(env or {})}):
        code = main.main(argv)
    assert code == 0


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_values_file_and_the_output_folder_are_named_as_given(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "mine.yaml").write_text("release: tools\n")
    _run(in_tmp, ["--config", "mine.yaml", "--outdir", "out/../built"])
    err = capsys.readouterr().err
    assert err.startswith("values: mine.yaml\n"), err
    assert "synthesized " in err and " objects into out/../built/:" in err
    assert "  kubectl apply -f out/../built/\n" in err
    assert "deployment/tools-web" in err


def test_a_values_file_not_given_is_named_with_where_it_came_from(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make synth config=x` (lower case) passes no --config: the summary says which file was used.
    _run(in_tmp, ["--outdir", "a"])
    first = capsys.readouterr().err.splitlines()[0]
    assert first == f"values: {DEFAULT_CONFIG} (the default: no --config, CONFIG= or SENTRY_K8S_CONFIG)"
    (in_tmp / "env.yaml").write_text("{}\n")
    _run(in_tmp, ["--outdir", "b"], {"SENTRY_K8S_CONFIG": "env.yaml"})
    assert capsys.readouterr().err.splitlines()[0] == "values: env.yaml (from SENTRY_K8S_CONFIG)"


def test_the_default_output_folder_is_shown_relative_to_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT_DIR)
    args = main._arguments([])
    assert (args.shown_outdir, args.values_file.split(" ")[0]) == ("dist", "config/minikube.yaml")


def _text(dist: Dist, values: str | None) -> str:
    config = parse_config(yaml.safe_load(values) if values else {})
    return summary(config, dist.path, values_file="v.yaml", shown_outdir="dist")


def test_with_an_existing_secret_it_says_what_must_exist_first(synth_once: Callable[..., Dist]) -> None:
    dist = synth_once(EXISTING, secrets={})
    text = _text(dist, EXISTING)
    config = parse_config(yaml.safe_load(EXISTING))
    keys = ", ".join(sorted(k.key for k in required_keys(config)))
    assert "must exist before kubectl apply (dist/ refers to them and does not make them):" in text
    assert f"  Secret sentry-credentials in sentry: keys {keys}\n" in text
    assert "  Secret db-ca in sentry: key root.pem\n" in text  # the external PostgreSQL's CA
    assert "  Secret sentry-tls in sentry: the Ingress's TLS certificate" in text
    assert "get secret sentry-credentials -o jsonpath='{.data.admin-password}'" in text


def test_the_default_needs_nothing_first_and_names_what_it_made(default_dist: Dist) -> None:
    text = _text(default_dist, None)
    assert "must exist" not in text
    names = {(o["kind"], o["metadata"]["name"]) for o in default_dist.objects}
    (deployment,) = re.findall(r"rollout status deployment/(\S+)", text)
    (secret,) = re.findall(r"get secret (\S+) ", text)
    assert ("Deployment", deployment) in names and ("Secret", secret) in names
    assert "login page: http://<minikube ip>:30000/auth/login/sentry/" in text


def test_the_login_page_is_the_public_url_or_the_ingress(synth_once: Callable[..., Dist]) -> None:
    text = _text(synth_once(EXISTING, secrets={}), EXISTING)
    assert "  login page: https://sentry.example.com/auth/login/sentry/\n" in text  # the Ingress, with TLS
    values = "sentry:\n  web:\n    ingress: {enabled: true, host: sentry.internal}\n"
    assert "  login page: http://sentry.internal/auth/login/sentry/\n" in _text(synth_once(values), values)
    values += "  url_prefix: http://sentry.example.org:8080\n"  # what people type wins
    assert "  login page: http://sentry.example.org:8080/auth/login/sentry/\n" in _text(synth_once(values), values)
    values = "sentry:\n  web: {service_type: ClusterIP}\n"
    assert "kubectl -n sentry port-forward service/sentry-web 9000" in _text(synth_once(values), values)


def test_no_summary_tells_to_run_open(default_dist: Dist, full_dist: Dist) -> None:
    # `open` is macOS's; on Linux it is another program or none: the summary prints URLs.
    for text in (_text(default_dist, None), _text(full_dist, FULL_VALUES)):
        assert not re.search(r"^\s*open ", text, flags=re.M)


def test_restore_mode_prints_only_the_restore_steps(full_dist: Dist) -> None:
    text = _text(full_dist, FULL_VALUES)
    steps = text.split("next:\n", 1)[1]
    assert "kubectl apply -f dist/90-restore.k8s.yaml" in steps
    assert "logs -f job/sentry-restore" in steps
    for first_start in ("get pods -w", "rollout status", "login", "kubectl apply -f dist/\n"):
        assert first_start not in steps, first_start


def test_a_shared_namespace_must_exist_first(synth_once: Callable[..., Dist]) -> None:
    text = _text(synth_once("namespace_shared: true\n"), "namespace_shared: true\n")
    assert "  namespace sentry (namespace_shared: the stack neither creates nor labels it)" in text
