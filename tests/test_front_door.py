"""The library as another cdk8s app uses it: the `Sentry` front door, the checks every props
class carries, and what happens to things added through escape hatches.

- A separate app in a folder of its own, with its own `imports/`, imports cdk8s first and
  builds web and worker on external PostgreSQL and Redis in about ten lines; its output
  passes the strict schemas and Pod Security `restricted` (checkov: tests/test_validation.py).
- Every construct refuses bad props at construction, naming the props class and the prop.
- A container or an env var added after construction is hardened, and renames the Job.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cdk8s
import cdk8s_plus_27 as kplus
import pytest
import yaml

from constructs.checks import PropsError
from constructs.endpoints import (
    CaCertificate,
    ExternalPostgres,
    ExternalPostgresProps,
    ExternalRedis,
    ExternalRedisProps,
)
from constructs.naming import Component
from constructs.pod_security import CAPABILITIES, unhardened
from constructs.postgres_backup import BackupOptions, OffsiteCopy
from constructs.props import GcsFilestore, PodSettings, Resources, S3Filestore, Storage, resources
from constructs.sentry import Sentry, SentryProps
from constructs.sentry_cleanup import SentryCleanupOptions
from constructs.sentry_runtime import SentryRuntimeOptions
from constructs.sentry_web import SentryWebOptions, WebIngress
from constructs.sentry_worker import SentryWorkerOptions
from constructs.workload import CpuAutoscaling
from tests.conftest import PROJECT_DIR, all_containers, pod_specs
from tests.test_security import restricted_violations
from tools.validate import schema_errors

# What a user writes in their own app (docs/constructs.md shows the same lines): Sentry's web
# and worker on a managed PostgreSQL and Redis, in their namespace, with their Secret.
USER_APP = """
import cdk8s, cdk8s_plus_27 as kplus
from constructs.endpoints import ExternalPostgres, ExternalPostgresProps, ExternalRedis, ExternalRedisProps
from constructs.sentry import S3Filestore, Sentry, SentryProps, SentryRuntimeOptions

app = cdk8s.App(outdir="dist")
chart = cdk8s.Chart(app, "tools", namespace="tools", disable_resource_name_hashes=True)
secret = kplus.Secret.from_secret_name(chart, "credentials", "sentry-credentials")
db = ExternalPostgres(
    chart,
    "db",
    ExternalPostgresProps(
        host="db.internal", secret=secret, client_image="postgres:15.8", sslmode="require", cidrs=["10.0.8.0/24"]
    ),
)
cache = ExternalRedis(chart, "cache", ExternalRedisProps(host="10.0.9.15", secret=secret))
# TLS to PostgreSQL and S3 (docs/cluster.md): the project's image, and a key for the bucket.
options = SentryRuntimeOptions(
    image="sentry-k8s/sentry-auth:9.1.2",
    filestore=S3Filestore(bucket="sentry-files", access_key_id="AKIAEXAMPLE"),
)
Sentry(
    chart,
    "sentry",
    SentryProps(secret=secret, postgres=db, redis=cache, sentry=options, cron=None, cleanup=None, backup=None),
)
app.synth()
"""


def _statements(code: str) -> int:
    return len(ast.parse(code).body)


@pytest.fixture(scope="module")
def user_app_output(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("user-app")
    (folder / "main.py").write_text(USER_APP, encoding="utf-8")
    # The user's own bindings, which the constructs must not pick up instead of theirs.
    own = folder / "imports" / "k8s"
    own.mkdir(parents=True)
    (own / "__init__.py").write_text('raise ImportError("the user\'s own imports/k8s was used")\n')
    env = {
        **os.environ,
        # How another app uses the constructs (docs/constructs.md): the project's root on the
        # path from the start (PYTHONPATH, or a .pth file), whatever is imported first.
        "PYTHONPATH": str(PROJECT_DIR),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    done = subprocess.run(
        [sys.executable, "main.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [o for f in sorted((folder / "dist").glob("*.yaml")) for o in yaml.safe_load_all(f.read_text()) if o]


def test_the_user_app_is_about_ten_statements() -> None:
    assert _statements(USER_APP) <= 11


def test_the_user_app_makes_web_worker_and_migrations_on_the_external_servers(user_app_output: list[dict]) -> None:
    kinds = {
        (o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["kind"] == "Job" else o["metadata"]["name"])
        for o in user_app_output
    }
    assert {("Deployment", "sentry-web"), ("Deployment", "sentry-worker"), ("Job", "sentry-migrations")} <= kinds
    assert not [o for o in user_app_output if o["kind"] in ("StatefulSet", "CronJob")], "servers are external"
    for obj in user_app_output:
        for container in all_containers(obj):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "SENTRY_POSTGRES_HOST" in env:
                assert (env["SENTRY_POSTGRES_HOST"], env["SENTRY_REDIS_HOST"]) == ("db.internal", "10.0.9.15")
    web = next(o for o in user_app_output if o["kind"] == "Service" and o["metadata"]["name"] == "sentry-web")
    assert web["spec"]["type"] == "ClusterIP", "a library user's web Service is not opened on every node"


def test_the_user_app_passes_strict_schemas_and_pod_security_restricted(
    user_app_output: list[dict], tmp_path: Path
) -> None:
    (tmp_path / "app.yaml").write_text(yaml.safe_dump_all(user_app_output), encoding="utf-8")
    assert schema_errors(tmp_path) == []
    assert not unhardened(user_app_output)
    for obj in user_app_output:
        for spec in pod_specs(obj):
            assert restricted_violations({}, spec) == [], obj["metadata"]["name"]


def test_the_user_apps_policies_leave_the_other_pods_of_its_namespace_alone(user_app_output: list[dict]) -> None:
    # A library user's namespace ("tools") holds their other workloads: no policy of the tier
    # may select every pod there (NetworkPoliciesOptions.namespace_wide is off by default).
    policies = [o for o in user_app_output if o["kind"] == "NetworkPolicy"]
    assert policies
    for policy in policies:
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        assert labels.get("app.kubernetes.io/instance") == "sentry", policy["metadata"]["name"]


# --- each construct's checks ----------------------------------------------------------------


def _chart() -> cdk8s.Chart:
    return cdk8s.Chart(cdk8s.App(), "bare", namespace="demo", disable_resource_name_hashes=True)


def _secret(chart: cdk8s.Chart) -> kplus.ISecret:
    return kplus.Secret.from_secret_name(chart, "secret", "demo")


BAD_PROPS: list[tuple[str, Callable[[], object], str]] = [
    ("autoscaling bounds", lambda: CpuAutoscaling(min_replicas=5, max_replicas=2), "max_replicas: 2 is below"),
    ("cron out of range", lambda: BackupOptions(schedule="0 25 * * *"), "hour field"),
    ("cron in words", lambda: BackupOptions(schedule="daily"), "five fields"),
    ("cron step 0", lambda: SentryCleanupOptions(schedule="*/0 * * * *"), "steps /n (n >= 1)"),
    ("a dict for a props type", lambda: SentryWebOptions(pods={"node_selector": {}}), "PodSettings(...), not a dict"),
    ("a dict for resources", lambda: SentryWorkerOptions(resources={"requests": {}}), "Resources(...), not a dict"),
    ("replicas as text", lambda: SentryWebOptions(replicas="2"), "must be a whole number"),
    ("replicas as bool", lambda: SentryWebOptions(replicas=True), "must be a whole number"),
    ("a limit below its request", lambda: resources("500m", "1Gi", "100m", "1Gi"), "limits.cpu 100m is below"),
    ("a memory typo", lambda: resources("100m", "3GB", "1", "4Gi"), "is not a memory quantity"),
    ("a zero volume", lambda: Storage(size="0"), "size above zero"),
    ("a node port with ClusterIP", lambda: SentryWebOptions(node_port=30001), "needs service_type NodePort"),
    ("an IP as Ingress host", lambda: WebIngress(host="10.0.0.1"), "must be a DNS name"),
    ("an unpinned image", lambda: SentryRuntimeOptions(image="sentry"), "is not pinned"),
    ("latest", lambda: SentryRuntimeOptions(image="sentry:latest"), "is not pinned"),
    ("an own label", lambda: PodSettings(labels={"app.kubernetes.io/name": "x"}), "are the stack's own"),
    ("a release that is no name", lambda: Component(release="My_Sentry", app="sentry", component="web"), "release"),
    ("a name starting with a digit", lambda: Component(release="1sentry", app="sentry", component="web"), "letter"),
    ("an env name the stack sets", lambda: SentryRuntimeOptions(extra_env={"SENTRY_SECRET_KEY": "x"}), "set by"),
    ("python that does not compile", lambda: SentryRuntimeOptions(conf_py_extra="x ="), "not valid Python"),
    ("an offsite copy without key", lambda: OffsiteCopy(bucket="backups", access_key_id=""), "is required"),
    # Sentry 9.1.2's boto3 1.4.5 knows no web identity, and no pod reaches a metadata service.
    ("an s3 bucket without a key", lambda: S3Filestore(bucket="files"), "access_key_id: is required with a bucket"),
    ("gcs without its key", lambda: GcsFilestore(bucket="files", key_file=False), "key_file: must be true"),
    # Sentry's libpq 11 matches an IP host only against the certificate's names.
    (
        "verify-full by IP address",
        lambda: ExternalPostgresProps(
            host="10.1.2.3", secret=_secret(_chart()), client_image="postgres:15.8", ca=CaCertificate(secret="db-ca")
        ),
        "sslmode: verify-full cannot verify a server reached by its IP address",
    ),
]


@pytest.mark.parametrize(("case", "make", "fragment"), BAD_PROPS, ids=[c[0] for c in BAD_PROPS])
def test_bad_props_are_refused_naming_the_prop(case: str, make: Callable[[], object], fragment: str) -> None:
    with pytest.raises(PropsError) as caught:
        make()
    message = str(caught.value)
    assert fragment in message, message
    assert "." in message.split(":")[0], f"{case}: the message names the props class and the prop: {message}"


def _external(chart: cdk8s.Chart) -> dict[str, Any]:
    secret = _secret(chart)
    return {
        "secret": secret,
        "postgres": ExternalPostgres(
            chart,
            "db",
            ExternalPostgresProps(host="db.internal", secret=secret, client_image="postgres:15.8", sslmode="disable"),
        ),
        "redis": ExternalRedis(chart, "cache", ExternalRedisProps(host="10.0.9.15", secret=secret)),
    }


def test_sentry_refuses_a_shared_read_write_once_filestore_across_nodes() -> None:
    chart = _chart()
    with pytest.raises(PropsError, match="ReadWriteMany"):
        SentryProps(**_external(chart))
    rwx = SentryRuntimeOptions(filestore=Storage(size="10Gi", access_mode="ReadWriteMany"))
    assert SentryProps(**_external(_chart()), sentry=rwx).single_node is False
    assert SentryProps(**_external(_chart()), single_node=True).single_node


def test_sentry_refuses_login_plugins_on_the_stock_image() -> None:
    from constructs.props import GithubConfig

    options = SentryRuntimeOptions(github=GithubConfig(login_enabled=True, client_id="Iv1.x"))
    with pytest.raises(PropsError, match="images/sentry-auth"):
        SentryProps(**_external(_chart()), sentry=options, single_node=True)


def test_a_missing_gate_or_runtime_is_named_not_an_attribute_error() -> None:
    from constructs.sentry_web import SentryWebProps

    with pytest.raises(PropsError, match=r"SentryWebProps\.component: is required"):
        SentryWebProps(component=None, runtime=None, migrations=None)  # type: ignore[arg-type]


def test_two_objects_of_one_kind_and_name_fail_the_synth() -> None:
    chart = _chart()
    sentry = Sentry(chart, "sentry", SentryProps(**_external(chart), single_node=True))
    from constructs.sentry_worker import SentryWorker, SentryWorkerProps

    SentryWorker(
        chart,
        "second-worker",
        SentryWorkerProps(
            component=sentry.sentry_component("worker"), runtime=sentry.runtime, migrations=sentry.migrations
        ),
    )
    with pytest.raises(Exception, match="Deployment sentry-worker is made twice"):
        chart.to_json()


# --- escape hatches, quantities --------------------------------------------------------------


def _sentry(chart: cdk8s.Chart, **props: Any) -> Sentry:
    return Sentry(chart, "sentry", SentryProps(**_external(chart), single_node=True, **props))


def _object(chart: cdk8s.Chart, kind: str, prefix: str) -> dict:
    (found,) = [o for o in chart.to_json() if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)]
    return found


def test_a_container_added_after_construction_is_hardened() -> None:
    chart = _chart()
    sentry = _sentry(chart)
    sentry.web.deployment.add_container(
        name="sidecar",
        image="busybox:1.36",
        resources=kplus.ContainerResources(cpu=kplus.CpuResources(request=kplus.Cpu.millis(5))),
    )
    web = _object(chart, "Deployment", "sentry-web")
    (sidecar,) = [c for c in web["spec"]["template"]["spec"]["containers"] if c["name"] == "sidecar"]
    assert sidecar["securityContext"]["capabilities"] == CAPABILITIES
    assert restricted_violations({}, web["spec"]["template"]["spec"]) == []


def test_an_env_var_added_to_the_migration_job_gives_it_a_new_name() -> None:
    chart = _chart()
    sentry = _sentry(chart)
    unchanged = _object(chart, "Job", "sentry-migrations")["metadata"]["name"]
    assert unchanged == _object(chart, "Job", "sentry-migrations")["metadata"]["name"], "synthesizing twice is stable"
    sentry.migrations.job.containers[0].env.add_variable("EXTRA", kplus.EnvValue.from_value("1"))
    renamed = _object(chart, "Job", "sentry-migrations")["metadata"]["name"]
    assert renamed != unchanged, "a changed pod template is a new Job: kubectl apply would refuse the old name"


@pytest.mark.parametrize("memory", ["400M", "500k", "1.5Gi", "3Gi"])
def test_quantities_reach_the_yaml_as_written(memory: str) -> None:
    chart = _chart()
    _sentry(chart, worker=SentryWorkerOptions(resources=resources("0.5", "100k", "1", memory)))
    (worker,) = _object(chart, "Deployment", "sentry-worker")["spec"]["template"]["spec"]["containers"]
    assert worker["resources"] == {
        "limits": {"cpu": "1", "memory": memory},
        "requests": {"cpu": "0.5", "memory": "100k"},
    }


def test_the_release_comes_from_the_construct_id_and_the_version_from_the_image() -> None:
    chart = _chart()
    secret = _secret(chart)
    Sentry(chart, "errors", SentryProps(secret=secret, single_node=True))
    web = _object(chart, "Deployment", "errors-web")
    labels = web["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "errors"
    assert labels["app.kubernetes.io/version"] == "9.1.2"
    postgres = _object(chart, "StatefulSet", "errors-postgresql")
    assert postgres["metadata"]["labels"]["app.kubernetes.io/version"] == "9.6.24"


def test_a_construct_id_that_is_no_name_needs_a_release() -> None:
    chart = _chart()
    with pytest.raises(ValueError, match="give a release"):
        Sentry(chart, "My_Sentry", SentryProps(secret=_secret(chart), single_node=True))


def test_resources_default_types_are_shared_frozen_values() -> None:
    assert isinstance(SentryWebOptions().resources, Resources)
    with pytest.raises(Exception, match="cannot assign"):
        SentryWebOptions().resources.requests.cpu = "1"  # type: ignore[misc]


def test_the_documented_user_app_is_the_tested_one() -> None:
    docs = (PROJECT_DIR / "docs" / "constructs.md").read_text(encoding="utf-8")
    assert textwrap.dedent(USER_APP).strip() in docs


@pytest.mark.validate
def test_the_user_app_passes_checkov(user_app_output: list[dict], tmp_path: Path) -> None:
    from tools.validate import failed_checks, run_checkov

    (tmp_path / "app.yaml").write_text(yaml.safe_dump_all(user_app_output), encoding="utf-8")
    assert failed_checks(run_checkov(tmp_path)) == []


def test_hardening_takes_a_token_away_even_from_a_pod_that_asked_for_one() -> None:
    from constructs.naming import Component
    from constructs.workload import finish

    chart = _chart()
    deployment = kplus.Deployment(
        chart,
        "raw",
        automount_service_account_token=True,
        containers=[kplus.ContainerProps(image="busybox:1.36", resources=kplus.ContainerResources())],
    )
    finish(deployment, Component(release="demo", app="raw", component="raw"), pods=PodSettings(), service_account=None)
    (obj,) = chart.to_json()
    spec = obj["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_sentry_refuses_tls_to_postgres_on_the_stock_image() -> None:
    chart = _chart()
    secret = _secret(chart)
    tls = ExternalPostgres(
        chart,
        "db",
        ExternalPostgresProps(host="db.internal", secret=secret, client_image="postgres:15.8", sslmode="require"),
    )
    with pytest.raises(PropsError, match=r"SentryProps\.postgres: a PostgreSQL reached over TLS needs another image"):
        SentryProps(secret=secret, postgres=tls, single_node=True)
    own_image = SentryRuntimeOptions(image="sentry-k8s/sentry-auth:9.1.2")
    assert SentryProps(secret=secret, postgres=tls, single_node=True, sentry=own_image).postgres is tls
