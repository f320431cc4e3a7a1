"""dist/ would apply and passes a security scan: strict schemas on several Kubernetes
versions, and checkov with zero failed checks, for the default configuration and for
one that turns on every optional object.

The slow part is marked `validate` and left out of a plain `pytest` (pyproject.toml):
checkov (~6 s a run) and the strict schemas of the versions after the manifests' own
API level. `make validate` runs exactly those (`pytest -m validate`), after
tools/validate.py, so `make test` still runs every one of them.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from constructs.pod_security import CHECKOV_SKIPS
from tests.conftest import PROJECT_DIR, Dist
from tools.validate import (
    CHECKOV,
    KUBERNETES_VERSIONS,
    SKIP_TABLE_END,
    SKIP_TABLE_START,
    CheckovMissing,
    failed_checks,
    run_checkov,
    schema_errors,
    skip_table,
)


def test_the_full_configuration_has_every_optional_object(full_dist: Dist) -> None:
    assert full_dist.get("Ingress", "sentry-web")["spec"]["tls"]
    assert [f.name for f in full_dist.files][-1] == "90-restore.k8s.yaml"
    assert full_dist.get("Deployment", "sentry-web")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "sentry-k8s/sentry-auth:9.1.2"
    )
    backup = full_dist.get("CronJob", "sentry-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert [c["name"] for c in backup["containers"]] == ["offsite"]


def test_validated_versions_are_the_api_level_minikube_and_the_newest() -> None:
    assert API_LEVEL in KUBERNETES_VERSIONS  # cdk8s-plus-27 and imports/
    assert {"1.35.0", "1.36.0"} <= set(KUBERNETES_VERSIONS)  # minikube's default: released, next
    newest = max(KUBERNETES_VERSIONS, key=lambda v: tuple(map(int, v.split("."))))
    assert newest == kubernetes_validate.latest_version()


# The API level the manifests are written for stays in every pytest run; the newer
# versions (which differ by removed or tightened fields) run in `make validate`.
API_LEVEL = "1.27.0"


@pytest.mark.parametrize(
    "version",
    [v if v == API_LEVEL else pytest.param(v, marks=pytest.mark.validate) for v in KUBERNETES_VERSIONS],
)
def test_every_object_validates_strictly(any_dist: Dist, version: str) -> None:
    assert schema_errors(any_dist.path, [version]) == []


def test_strict_validation_rejects_unknown_fields(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, bogus: 1}\n")
    (error,) = schema_errors(tmp_path, ["1.27.0"])
    assert "bogus" in error


def _checkov(path: Path) -> dict:
    try:
        return run_checkov(path)
    except CheckovMissing:
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make test-setup` (tools/setup-test.sh makes it)")


@pytest.mark.validate
def test_checkov_finds_no_failed_check(any_dist: Dist) -> None:
    report = _checkov(any_dist.path)
    assert failed_checks(report) == []
    assert report["summary"]["failed"] == 0
    assert report["summary"]["passed"] > 500
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped <= {s.check for s in CHECKOV_SKIPS}


@pytest.mark.validate
def test_checkov_still_fails_without_the_hardening(default_dist: Dist, tmp_path: Path) -> None:
    # The scan is live: the same manifests without skips and seccomp fail it.
    text = default_dist.files[-1].read_text(encoding="utf-8")
    stripped = "\n".join(line for line in text.splitlines() if "checkov.io/skip" not in line)
    stripped = stripped.replace("type: RuntimeDefault", "type: Unconfined")
    (tmp_path / "20-sentry.k8s.yaml").write_text(stripped, encoding="utf-8")
    failed = {c.split()[0] for c in failed_checks(_checkov(tmp_path))}
    assert {"CKV_K8S_31", "CKV_K8S_43"} <= failed


def test_every_skip_is_an_annotation_with_its_reason_from_the_table(any_dist: Dist) -> None:
    reasons = {s.check: s.reason for s in CHECKOV_SKIPS}
    seen = set()
    for obj in any_dist.objects:
        for key, value in (obj["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert reasons[check] == reason, (obj["metadata"]["name"], check)
                seen.add(check)
    assert seen == set(reasons), "a skip in CHECKOV_SKIPS that no object needs: remove it"


def test_documented_skip_table_matches_the_code() -> None:
    doc = (PROJECT_DIR / "docs" / "security.md").read_text(encoding="utf-8")
    start, end = doc.index(SKIP_TABLE_START), doc.index(SKIP_TABLE_END) + len(SKIP_TABLE_END)
    assert doc[start:end] == skip_table(), "run: .venv/bin/python tools/validate.py --skip-table --write"


# The shipped examples (config/*.yaml) pass the same validation as the test configurations:
# strict schemas, checkov with no failed check, Pod Security `restricted`.
SHIPPED = sorted((PROJECT_DIR / "config").glob("*.yaml"))


@pytest.fixture(scope="module", params=SHIPPED, ids=lambda p: p.name)
def shipped_dist(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Dist:
    from tests.conftest import synth

    code, dist = synth(tmp_path_factory.mktemp(request.param.stem), request.param.read_text(encoding="utf-8"))
    assert code == 0
    return dist


def test_shipped_values_files_validate_strictly(shipped_dist: Dist) -> None:
    assert schema_errors(shipped_dist.path, [API_LEVEL]) == []


@pytest.mark.validate
def test_shipped_values_files_validate_on_newer_kubernetes_and_pass_checkov(shipped_dist: Dist) -> None:
    assert schema_errors(shipped_dist.path) == []
    report = _checkov(shipped_dist.path)
    assert failed_checks(report) == []


def test_shipped_values_files_meet_pod_security_restricted(shipped_dist: Dist) -> None:
    from tests.test_security import pods, restricted_violations

    found = pods(shipped_dist)
    assert found
    for obj, meta, spec in found:
        assert restricted_violations(meta.get("annotations", {}), spec) == [], obj["metadata"]["name"]
