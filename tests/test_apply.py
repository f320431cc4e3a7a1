"""`make apply` (app/applier.py): what leaves dist/ leaves the cluster, data stays, a record is kept.

Run against tests/fake_kubectl.py, a model of the API server where the cluster is
everything applied and not deleted, as with a real `kubectl apply`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.applier import ApplyError
from app.state import load_record
from tests.conftest import PROJECT_DIR, TEST_SECRETS, make_apply, synth
from tests.fake_kubectl import FakeCluster


class Stack:
    """One stack's values over time: synthesize, `make apply`, look at the model cluster."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.cluster = FakeCluster(tmp / "cluster.json")
        self.dist = tmp / "dist"

    def synth(self, values: str = "", **kwargs: object) -> int:
        return synth(self.tmp, values, outdir=self.dist, state=self.state, **kwargs)[0]  # type: ignore[arg-type]

    def apply(self, **options: object):
        return make_apply(self.dist, self.state, self.cluster, **options)

    def step(self, values: str = "", **options: object):
        assert self.synth(values) == 0
        return self.apply(**options)

    def has(self, kind: str, name: str, namespace: str = "sentry") -> bool:
        return f"{kind}|{namespace}|{name}" in self.cluster.objects


ALL_ON = """
capacity: {target: none}
secrets: {}
sentry:
  url_prefix: https://sentry.example.com
  filestore: {access_mode: ReadWriteMany}
  metrics: {enabled: true, service_monitor: true}
  web:
    service_type: ClusterIP
    ingress: {enabled: true, host: sentry.example.com, tls_secret: sentry-tls}
    autoscaling: {enabled: true}
  worker: {autoscaling: {enabled: true}}
"""

# Each "feature off" transition of issue 19 (item 3): what must leave the cluster.
FEATURE_OFF = {
    "cleanup": ("sentry: {cleanup: {enabled: false}}", [("CronJob", "sentry-cleanup")]),
    "ingress": ("sentry: {web: {ingress: {enabled: false}}}", [("Ingress", "sentry-web")]),
    "metrics": (
        "sentry: {metrics: {enabled: false}}",
        [("Deployment", "sentry-metrics"), ("Service", "sentry-metrics"), ("ServiceMonitor", "sentry-metrics")],
    ),
    "backups": ("postgres: {backup: {enabled: false}}", [("CronJob", "sentry-backup")]),
    "network policies": (
        "network: {policies: false}",
        [("NetworkPolicy", "sentry-default-deny"), ("NetworkPolicy", "sentry-web")],
    ),
    "autoscaling": (
        "sentry: {web: {autoscaling: {enabled: false}}, worker: {autoscaling: {enabled: false}}}",
        [("HorizontalPodAutoscaler", "sentry-web"), ("HorizontalPodAutoscaler", "sentry-worker")],
    ),
    "existing_secret": ("secrets: {existing_secret: my-secrets}", [("Secret", "sentry-secrets")]),
}


def _merge(*texts: str) -> str:
    import yaml

    from app.config import StackConfig
    from app.values import merge_onto_defaults

    data: dict = {}
    for text in texts:
        data = merge_onto_defaults(StackConfig, data, yaml.safe_load(text) or {})
    return yaml.safe_dump(data)


@pytest.mark.parametrize("feature", list(FEATURE_OFF))
def test_turning_a_feature_off_removes_its_objects_from_the_cluster(tmp_path: Path, feature: str) -> None:
    values, gone = FEATURE_OFF[feature]
    stack = Stack(tmp_path)
    stack.step(ALL_ON)
    for kind, name in gone:
        assert stack.has(kind, name), f"{kind} {name} should be on at first"
    if feature == "existing_secret":
        stack.cluster.create(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-secrets", "namespace": "sentry"}}
        )
    outcome = stack.step(_merge(ALL_ON, values))
    for kind, name in gone:
        assert not stack.has(kind, name), f"{feature} off: {kind} {name} is still in the cluster"
        assert (kind, "sentry", name) in outcome.deleted
    # Every object of the cluster is in dist/ now, but for the volumes kept with their data.
    in_dist = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in _dist_objects(stack)}
    left = {tuple(k.split("|")) for k in stack.cluster.objects} - in_dist - {("Secret", "sentry", "my-secrets")}
    assert all(kind == "PersistentVolumeClaim" for kind, _, _ in left), left


def _dist_objects(stack: Stack) -> list[dict]:
    from app.summary import load_objects

    return load_objects(stack.dist)


def test_a_volume_that_leaves_dist_is_kept_with_its_data_until_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack(tmp_path)
    stack.step()
    capsys.readouterr()
    assert stack.synth("postgres: {backup: {enabled: false}}") == 0
    err = capsys.readouterr().err
    assert "make apply keeps" in err and "PersistentVolumeClaim sentry/sentry-backup: a volume" in err
    outcome = stack.apply()
    assert stack.has("PersistentVolumeClaim", "sentry-backup")
    assert not stack.has("CronJob", "sentry-backup")
    assert (("PersistentVolumeClaim", "sentry", "sentry-backup"), "a volume: its data would go with it") in outcome.kept
    # Still reported by every synth while it is there, and deleted only when named.
    capsys.readouterr()
    assert stack.synth("postgres: {backup: {enabled: false}}") == 0
    assert "PersistentVolumeClaim sentry/sentry-backup" in capsys.readouterr().err
    with pytest.raises(ApplyError, match="--delete-claim data-sentry-postgresql-0: no such claim"):
        stack.apply(delete_claims=["data-sentry-postgresql-0"])
    outcome = stack.apply(delete_claims=["sentry-backup"])
    assert not stack.has("PersistentVolumeClaim", "sentry-backup")
    record = load_record(stack.state, "sentry", "sentry")
    assert record is not None and ("PersistentVolumeClaim", "sentry", "sentry-backup") not in record.by_key()


def test_turning_backups_on_again_adopts_the_kept_volume(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.step("postgres: {backup: {storage: {storage_class: fast}}}")
    stack.step("postgres: {backup: {enabled: false, storage: {storage_class: fast}}}")
    # The kept claim is still what the record compares with: another class is refused.
    assert stack.synth("postgres: {backup: {enabled: true, storage: {storage_class: slow}}}") == 2
    stack.step("postgres: {backup: {enabled: true, storage: {storage_class: fast}}}")
    assert stack.has("CronJob", "sentry-backup")


def test_a_secret_the_pods_still_read_is_never_deleted(tmp_path: Path) -> None:
    """existing_secret named like the generated Secret: the user took it over; it stays."""
    stack = Stack(tmp_path)
    stack.step()
    outcome = stack.step("secrets: {existing_secret: sentry-secrets}")
    assert stack.has("Secret", "sentry-secrets")
    assert ("Secret", "sentry", "sentry-secrets") not in outcome.deleted


def test_a_missing_existing_secret_stops_the_apply_before_anything_changes(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.step()
    assert stack.synth("secrets: {existing_secret: my-secrets}") == 0
    before = stack.cluster.objects
    with pytest.raises(ApplyError, match="Secret sentry/my-secrets, which does not exist"):
        stack.apply()
    assert stack.cluster.objects == before


def test_a_running_job_is_not_deleted_until_it_finished(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.step()
    (job,) = [k.split("|")[2] for k in stack.cluster.objects if k.startswith("Job|")]
    stack.cluster.mark_job_active("sentry", job)
    outcome = stack.step("sentry: {image: 'sentry:9.1.3'}")  # a new migration Job replaces it
    assert stack.has("Job", job) and outcome.skipped
    record = load_record(stack.state, "sentry", "sentry")
    assert record is not None and ("Job", "sentry", job) in record.by_key(), "still recorded: deleted later"
    # Finished now: the next apply deletes it.
    data = json.loads(stack.cluster.state.read_text())
    data["objects"][f"Job|sentry|{job}"]["active"] = False
    stack.cluster.state.write_text(json.dumps(data))
    stack.step("sentry: {image: 'sentry:9.1.3'}")
    assert not stack.has("Job", job)


def test_turning_autoscaling_on_keeps_the_pods(tmp_path: Path) -> None:
    off = "capacity: {target: none}\nsentry: {filestore: {access_mode: ReadWriteMany}}"
    on = _merge(off, "sentry: {web: {autoscaling: {enabled: true}}}")
    stack = Stack(tmp_path)
    stack.step(off)
    assert stack.cluster.live_replicas("sentry", "sentry-web") == 2
    stack.step(on)
    assert stack.cluster.live_replicas("sentry", "sentry-web") == 2, "no dip to 1 pod"
    # The model dips as kubectl does when the hand-over is skipped (plain kubectl apply):
    plain = Stack(tmp_path / "plain")
    plain.step(off)
    assert plain.synth(on) == 0
    plain.cluster.run(["kubectl", "apply", "-f", str(plain.dist)])
    assert plain.cluster.live_replicas("sentry", "sentry-web") == 1


def test_after_the_restore_runbook_autoscaled_deployments_come_back(tmp_path: Path) -> None:
    """The runbook scales Sentry to 0; an autoscaler never scales up from 0, and autoscaled
    Deployments carry no replicas: make apply scales them to the autoscaler's minimum."""
    values = _merge(
        "capacity: {target: none}\nsentry: {filestore: {access_mode: ReadWriteMany}}",
        "sentry: {web: {autoscaling: {enabled: true, min_replicas: 3}}}",
    )
    stack = Stack(tmp_path)
    stack.step(values)
    stack.cluster.set_replicas("sentry", "sentry-web", 0)
    stack.cluster.set_replicas("sentry", "sentry-worker", 0)
    outcome = stack.step(values)
    assert stack.cluster.live_replicas("sentry", "sentry-web") == 3
    assert stack.cluster.live_replicas("sentry", "sentry-worker") == 2, "replicas from the manifest"
    assert outcome.scaled == [("sentry-web", 3)]


def test_restore_mode_applies_the_database_and_the_restore_job_only(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.step("sentry: {cleanup: {enabled: false}}")
    stack.cluster.set_replicas("sentry", "sentry-web", 0)
    outcome = stack.step("sentry: {cleanup: {enabled: true}}\npostgres: {backup: {restore: {enabled: true}}}")
    assert outcome.mode == "restore" and not outcome.deleted
    assert stack.has("Job", "sentry-restore")
    assert stack.cluster.live_replicas("sentry", "sentry-web") == 0, "Sentry stays stopped"
    assert not stack.has("CronJob", "sentry-cleanup"), "nothing of Sentry is applied"
    # The server is up before the restore Job starts (it does not wait for it itself).
    calls = [" ".join(call) for call in stack.cluster.calls]
    rollout = next(i for i, c in enumerate(calls) if "rollout status statefulset/sentry-postgresql" in c)
    assert rollout < next(i for i, c in enumerate(calls) if "90-restore.k8s.yaml" in c)
    # Turning it off again: the restore Job goes, Sentry comes back.
    outcome = stack.step()
    assert not stack.has("Job", "sentry-restore")
    assert stack.cluster.live_replicas("sentry", "sentry-web") == 2


def test_a_dist_synthesized_before_the_last_apply_is_refused(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.step()
    other = tmp_path / "other"
    assert synth(tmp_path, "sentry: {cleanup: {enabled: false}}", outdir=other, state=stack.state)[0] == 0
    stack.step("sentry: {cleanup: {days: 30}}")
    with pytest.raises(ApplyError, match="synthesized against another apply record"):
        make_apply(other, stack.state, stack.cluster)


def test_another_kubectl_context_needs_its_own_state_folder(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.step()
    assert stack.synth("sentry: {cleanup: {days: 30}}") == 0
    data = json.loads(stack.cluster.state.read_text())
    data["context"] = "production"
    stack.cluster.state.write_text(json.dumps(data))
    with pytest.raises(ApplyError, match=r"applied to kubectl context 'fake'.*SENTRY_K8S_STATE_DIR"):
        stack.apply()


def test_the_record_keeps_digests_never_secret_values(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.step()
    path = stack.state / "applied" / "sentry-sentry.json"
    text = path.read_text()
    for value in TEST_SECRETS.values():
        assert value not in text
    import base64

    for value in TEST_SECRETS.values():
        assert base64.b64encode(value.encode()).decode() not in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    record = load_record(stack.state, "sentry", "sentry")
    assert record is not None
    assert record.matches("sentry-secrets", "postgres-password", TEST_SECRETS["postgres-password"])
    assert not record.matches("sentry-secrets", "postgres-password", "another")


def test_make_apply_runs_the_documented_command(tmp_path: Path) -> None:
    """The make target, with a kubectl on the PATH (the model, as a program)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{PROJECT_DIR / "tests" / "fake_kubectl.py"}" "$@"\n')
    kubectl.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_K8S_")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_KUBE_STATE": str(tmp_path / "cluster.json"),
        "SENTRY_K8S_STATE_DIR": str(tmp_path / "state"),
        "SENTRY_K8S_SECRETS_FILE": str(tmp_path / "secrets.yaml"),
    }
    dist = tmp_path / "dist"
    done = subprocess.run(
        [str(PROJECT_DIR / ".venv" / "bin" / "python"), "main.py", "--outdir", str(dist), "--quiet"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        ["make", "--no-print-directory", "apply", f"ARGS={dist}"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "applied 32 objects from dist/" in done.stderr
    cluster = FakeCluster(tmp_path / "cluster.json")
    assert ["apply", "-f", str(dist)] in cluster.calls
    assert (tmp_path / "state" / "applied" / "sentry-sentry.json").exists()
