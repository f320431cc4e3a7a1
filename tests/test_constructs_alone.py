"""Each construct synthesized alone, in a bare chart, with only its required props: it
makes what it promises, hardened and with resources set, without the SentryStack around it.

The front door (`Sentry`) and a user's own app: tests/test_front_door.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import cdk8s
import cdk8s_plus_27 as kplus
import pytest

from constructs import Construct
from constructs.endpoints import ExternalPostgres, ExternalPostgresProps, ExternalRedis, ExternalRedisProps
from constructs.naming import Component
from constructs.pod_security import unhardened
from constructs.postgres_with_backup import PostgresWithBackup, PostgresWithBackupProps
from constructs.redis_broker import RedisBroker, RedisBrokerProps
from constructs.sentry_cleanup import SentryCleanup, SentryCleanupProps
from constructs.sentry_cron import SentryCron, SentryCronProps
from constructs.sentry_migrations import MigrationGate, SentryMigrations, SentryMigrationsProps
from constructs.sentry_runtime import SentryRuntime, SentryRuntimeProps
from constructs.sentry_web import SentryWeb, SentryWebProps
from constructs.sentry_worker import SentryWorker, SentryWorkerProps
from constructs.statsd_exporter import StatsdExporter, StatsdExporterProps
from constructs.workload import WAIT_RESOURCES, container_resources, container_security
from tests.conftest import PROJECT_DIR, all_containers, pod_specs


def part(component: str, app: str = "sentry") -> Component:
    return Component(release="demo", app=app, component=component, version="1.0")


def runtime(chart: cdk8s.Chart) -> SentryRuntime:
    secret = kplus.Secret.from_secret_name(chart, "secret", "demo-secrets")
    postgres = ExternalPostgres(
        chart,
        "pg",
        ExternalPostgresProps(host="10.1.2.3", secret=secret, client_image="postgres:15.8", sslmode="require"),
    )
    redis = ExternalRedis(chart, "redis", ExternalRedisProps(host="10.1.2.4", secret=secret))
    return SentryRuntime(
        chart,
        "runtime",
        SentryRuntimeProps(
            config_component=part("config"),
            filestore_component=part("filestore"),
            postgres=postgres,
            redis=redis,
            secret=secret,
        ),
    )


def migrations(chart: cdk8s.Chart) -> SentryMigrations:
    return SentryMigrations(
        chart, "migrations", SentryMigrationsProps(component=part("migrations"), runtime=runtime(chart))
    )


class ExternalMigrations:
    """A MigrationGate that is not SentryMigrations (say, migrations a pipeline runs): the
    workloads depend on the interface, and wait for whatever gate they are given."""

    def wait_container(self, scope: Construct) -> kplus.ContainerProps:
        return kplus.ContainerProps(
            name="wait-for-pipeline",
            image="busybox:1.36",
            command=["/bin/sh", "-c", "until [ -e /tmp/migrated ]; do sleep 5; done"],
            resources=container_resources(WAIT_RESOURCES),
            security_context=container_security(1000, 1000),
        )


def gate() -> MigrationGate:
    return ExternalMigrations()


def redis_broker(chart: cdk8s.Chart) -> Construct:
    secret = kplus.Secret.from_secret_name(chart, "secret", "demo-secrets")
    return RedisBroker(chart, "redis", RedisBrokerProps(component=part("redis", "redis"), secret=secret))


def postgres(chart: cdk8s.Chart) -> Construct:
    secret = kplus.Secret.from_secret_name(chart, "secret", "demo-secrets")
    return PostgresWithBackup(
        chart,
        "postgres",
        PostgresWithBackupProps(
            component=part("postgresql", "postgresql"), backup_component=part("backup", "postgresql"), secret=secret
        ),
    )


CONSTRUCTS: dict[str, tuple[Callable[[cdk8s.Chart], object], set[str]]] = {
    "RedisBroker": (redis_broker, {"StatefulSet", "Service", "PersistentVolumeClaim"}),
    "PostgresWithBackup": (postgres, {"StatefulSet", "Service", "PersistentVolumeClaim", "CronJob"}),
    "SentryWeb": (
        lambda c: SentryWeb(c, "web", SentryWebProps(component=part("web"), runtime=runtime(c), migrations=gate())),
        {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "PersistentVolumeClaim"},
    ),
    "SentryWorker": (
        lambda c: SentryWorker(
            c, "worker", SentryWorkerProps(component=part("worker"), runtime=runtime(c), migrations=gate())
        ),
        {"Deployment", "PodDisruptionBudget", "ConfigMap", "PersistentVolumeClaim"},
    ),
    "SentryCron": (
        lambda c: SentryCron(c, "cron", SentryCronProps(component=part("cron"), runtime=runtime(c), migrations=gate())),
        {"Deployment", "ConfigMap", "PersistentVolumeClaim"},
    ),
    "SentryCleanup": (
        lambda c: SentryCleanup(
            c, "cleanup", SentryCleanupProps(component=part("cleanup"), runtime=runtime(c), migrations=gate())
        ),
        {"CronJob", "ConfigMap", "PersistentVolumeClaim"},
    ),
    "SentryMigrations": (
        migrations,
        {"Job", "ConfigMap", "PersistentVolumeClaim"},
    ),
    "StatsdExporter": (
        lambda c: StatsdExporter(c, "metrics", StatsdExporterProps(component=part("metrics"))),
        {"Deployment", "Service", "ConfigMap"},
    ),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_a_construct_alone_makes_its_objects_hardened_and_with_resources(name: str) -> None:
    make, kinds = CONSTRUCTS[name]
    chart = cdk8s.Chart(cdk8s.App(), "bare", namespace="demo", disable_resource_name_hashes=True)
    make(chart)
    objects = chart.to_json()
    assert {o["kind"] for o in objects} == kinds
    assert not unhardened(objects), "secure by default: the construct hardens its own pods"
    workloads = [o for o in objects if pod_specs(o)]
    assert workloads
    for obj in workloads:
        (spec,) = pod_specs(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert "serviceAccountName" not in spec  # no account given: the namespace's default, without a token
        for container in all_containers(obj):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, container["name"]
            assert {"requests", "limits"} <= set(container["resources"]), container["name"]
            # Not cdk8s-plus's own defaults (1 CPU / 512Mi requests), which every construct overrides.
            assert container["resources"]["requests"] != {"cpu": "1000m", "memory": "512Mi"}, container["name"]


@pytest.mark.parametrize("name", ["SentryWeb", "SentryWorker", "SentryCron", "SentryCleanup"])
def test_sentry_workloads_wait_for_the_database_and_the_migrations_they_name(name: str) -> None:
    make, _ = CONSTRUCTS[name]
    chart = cdk8s.Chart(cdk8s.App(), "bare", namespace="demo", disable_resource_name_hashes=True)
    make(chart)
    (workload,) = [o for o in chart.to_json() if pod_specs(o)]
    (spec,) = pod_specs(workload)
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-postgres", "wait-for-pipeline"]


def test_constructs_do_not_depend_on_the_application_layer() -> None:
    # constructs/ holds the constructs and the files they embed; values files, the secrets
    # store, the capacity check and the summary live in app/, and main.py joins the two.
    for module in (PROJECT_DIR / "constructs").glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) app\b", text, flags=re.M), module.name


def test_the_namespace_alone_is_restricted_and_the_secret_alone_holds_its_values() -> None:
    from constructs.namespace import SentryNamespace, SentryNamespaceProps
    from constructs.stack_secrets import StackSecrets, StackSecretsProps

    chart = cdk8s.Chart(cdk8s.App(), "bare", disable_resource_name_hashes=True)
    SentryNamespace(chart, "ns", SentryNamespaceProps(name="demo", component=part("namespace")))
    StackSecrets(chart, "secret", StackSecretsProps(name="demo-secrets", component=part("secrets"), values={"a": "b"}))
    namespace, secret = chart.to_json()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert secret["data"] == {"a": "Yg=="}

    opted_out = cdk8s.Chart(cdk8s.App(), "bare", disable_resource_name_hashes=True)
    SentryNamespace(opted_out, "ns", SentryNamespaceProps(name="demo", component=part("namespace"), restricted=False))
    (namespace,) = opted_out.to_json()
    assert not any(key.startswith("pod-security.") for key in namespace["metadata"]["labels"])
