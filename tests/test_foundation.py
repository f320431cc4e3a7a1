"""The project's foundation: layout, labels, selectors, storage, probes, resources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import PROJECT_DIR, Dist, all_containers, pod_specs

STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob"}


def test_constructs_folder_does_not_shadow_the_constructs_library() -> None:
    # An __init__.py would turn constructs/ into a regular package that hides the
    # library, and `import cdk8s` would fail with "No module named 'constructs._jsii'".
    assert not (PROJECT_DIR / "constructs" / "__init__.py").exists()
    code = "import cdk8s, constructs; from app.config import StackConfig; print(constructs.Construct)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "constructs.Construct" in result.stdout


def test_files_are_namespace_then_secrets_then_the_rest(default_dist: Dist) -> None:
    names = [f.name for f in default_dist.files]
    assert names == ["00-namespace.k8s.yaml", "10-secrets.k8s.yaml", "20-sentry.k8s.yaml"]
    first = yaml.safe_load(default_dist.files[0].read_text())
    assert first["kind"] == "Namespace" and first["metadata"]["name"] == "sentry"
    secrets_file = list(yaml.safe_load_all(default_dist.files[1].read_text()))
    assert [d["kind"] for d in secrets_file] == ["Secret"]
    rest = list(yaml.safe_load_all(default_dist.files[2].read_text()))
    assert "Secret" not in {d["kind"] for d in rest}


def test_every_object_carries_the_standard_labels(default_dist: Dist) -> None:
    for obj in default_dist.objects:
        labels = obj["metadata"].get("labels", {})
        missing = STANDARD_LABELS - set(labels)
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "cdk8s"
        assert labels["app.kubernetes.io/part-of"] == "sentry"
        assert labels["app.kubernetes.io/instance"] == "sentry"
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "sentry"


def _template_labels(obj: dict) -> dict[str, str]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def test_workload_selectors_use_the_standard_labels_and_match_their_pods(default_dist: Dist) -> None:
    workloads = [o for o in default_dist.objects if o["kind"] in {"Deployment", "StatefulSet"}]
    assert workloads
    for obj in workloads:
        selector = obj["spec"]["selector"]["matchLabels"]
        assert set(selector) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }, obj["metadata"]["name"]
        labels = _template_labels(obj)
        assert selector.items() <= labels.items()


def test_every_service_selects_exactly_one_workload_by_standard_labels(default_dist: Dist) -> None:
    workloads = [o for o in default_dist.objects if o["kind"] in {"Deployment", "StatefulSet"}]
    for service in default_dist.of_kind("Service"):
        selector = service["spec"]["selector"]
        assert all(key.startswith("app.kubernetes.io/") for key in selector), selector
        matched = [w for w in workloads if selector.items() <= _template_labels(w).items()]
        assert len(matched) == 1, f"Service {service['metadata']['name']} matches {len(matched)} workloads"
        ports = {p["containerPort"] for c in all_containers(matched[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_statefulset_services_are_named_like_their_statefulsets(default_dist: Dist) -> None:
    for sts in default_dist.of_kind("StatefulSet"):
        default_dist.get("Service", sts["spec"]["serviceName"])


def _claim_of(dist: Dist, statefulset: str, volume: str = "data") -> dict:
    """The PersistentVolumeClaim a StatefulSet's pod mounts as `volume`, found through the
    pod template (not by name)."""
    (spec,) = pod_specs(dist.get("StatefulSet", statefulset))
    (source,) = [v for v in spec["volumes"] if v["name"] == volume]
    return dist.get("PersistentVolumeClaim", source["persistentVolumeClaim"]["claimName"])


def test_volume_sizes_reach_the_yaml(default_dist: Dist) -> None:
    pg_claim = _claim_of(default_dist, "sentry-postgresql")
    redis_claim = _claim_of(default_dist, "sentry-redis")
    assert pg_claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert redis_claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    backup = default_dist.get("PersistentVolumeClaim", "sentry-backup")
    assert backup["spec"]["resources"]["requests"]["storage"] == "8Gi"
    for claim in (pg_claim, redis_claim):
        assert set(claim["metadata"]["labels"]) >= STANDARD_LABELS


def test_statefulsets_have_no_claim_templates_and_keep_the_template_claim_names(default_dist: Dist) -> None:
    # Claim templates are frozen after creation and never resize a claim; standalone claims
    # can grow by `kubectl apply`. They keep the names the templates gave (`data-<sts>-0`),
    # so a volume created by an earlier version is adopted, not replaced.
    for sts in default_dist.of_kind("StatefulSet"):
        assert "volumeClaimTemplates" not in sts["spec"]
        claim = _claim_of(default_dist, sts["metadata"]["name"])
        assert claim["metadata"]["name"] == f"data-{sts['metadata']['name']}-0"


def test_configured_volume_sizes_and_classes_reach_the_yaml(tmp_path: Path) -> None:
    from tests.conftest import synth

    code, dist = synth(
        tmp_path,
        "postgres:\n  storage: {size: 50Gi, storage_class: fast}\n  backup:\n    storage: {size: 120Gi}\n"
        "redis:\n  storage: {size: 2Gi}\n",
    )
    assert code == 0
    pg_claim = _claim_of(dist, "sentry-postgresql")
    assert pg_claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pg_claim["spec"]["storageClassName"] == "fast"
    assert _claim_of(dist, "sentry-redis")["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert dist.get("PersistentVolumeClaim", "sentry-backup")["spec"]["resources"]["requests"]["storage"] == "120Gi"


def test_postgres_keeps_pgdata_in_a_subdirectory_of_its_volume(default_dist: Dist) -> None:
    (container,) = all_containers(default_dist.get("StatefulSet", "sentry-postgresql"))
    env = {e["name"]: e for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert env["PGDATA"]["value"].startswith(mount["mountPath"] + "/")
    assert env["PGDATA"]["value"] != mount["mountPath"]
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "sentry-secrets",
        "key": "postgres-password",
    }


def test_postgres_is_9_6_and_probed_with_pg_isready(default_dist: Dist) -> None:
    (container,) = all_containers(default_dist.get("StatefulSet", "sentry-postgresql"))
    assert container["image"] == "postgres:9.6.24"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "pg_isready" in " ".join(container[probe]["exec"]["command"]), probe


def test_redis_requires_a_password_that_is_never_on_a_command_line(default_dist: Dist) -> None:
    (container,) = all_containers(default_dist.get("StatefulSet", "sentry-redis"))
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    script = container["command"][-1]
    assert "requirepass" in script and "appendonly yes" in script
    assert "--requirepass" not in script and " -a " not in script
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert "ping" in command and " -a " not in command


def test_every_long_running_server_has_probes(default_dist: Dist) -> None:
    # Containers that serve a port get all three probes. Sentry's worker and cron
    # serve none: when they fail they exit, and the kubelet restarts them.
    servers = 0
    for obj in default_dist.objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for spec in pod_specs(obj):
            for container in spec["containers"]:
                if not container.get("ports"):
                    continue
                servers += 1
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    assert probe in container, f"{obj['metadata']['name']}/{container['name']} lacks {probe}"
    assert servers >= 2


def test_every_container_has_requests_and_limits(default_dist: Dist) -> None:
    for obj in default_dist.objects:
        for container in all_containers(obj):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{obj['metadata']['name']}/{container['name']} lacks {kind}"
                )


def test_every_workload_pulls_if_not_present(default_dist: Dist) -> None:
    for obj in default_dist.objects:
        for container in all_containers(obj):
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_backup_cronjob_dumps_daily_to_its_own_claim(default_dist: Dist) -> None:
    cronjob = default_dist.get("CronJob", "sentry-backup")
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["startingDeadlineSeconds"] >= 60
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["backups"] == {
        "name": "backups",
        "persistentVolumeClaim": {"claimName": "sentry-backup", "readOnly": False},
    }
    (container,) = pod["containers"]
    assert "pg_dump --format=directory" in container["command"][-1]
    assert container["image"] == "postgres:9.6.24"
