"""The Sentry tier: every number the issue fixes, and how the pieces fit together."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from app.capacity import Requests, pod_requests, stack_requests, target
from app.config import Resources, StackConfig
from app.values import merge_onto_defaults, parse_config
from constructs.quantities import parse_cpu, parse_memory
from tests.conftest import Dist, all_containers, find_container, pod_specs, synth

SENTRY_DEPLOYMENTS = ("sentry-web", "sentry-worker", "sentry-cron")


def _resources(container: dict) -> tuple[int, int, int, int]:
    res = container["resources"]
    return (
        parse_cpu(res["requests"]["cpu"]),
        parse_memory(res["requests"]["memory"]),
        parse_cpu(res["limits"]["cpu"]),
        parse_memory(res["limits"]["memory"]),
    )


MI = 2**20


@pytest.mark.parametrize(
    ("name", "container", "expected"),
    [
        ("sentry-web", "web", (100, 400 * MI, 600, 3072 * MI)),
        ("sentry-worker", "worker", (100, 288 * MI, 300, 3072 * MI)),
        ("sentry-cron", "cron", (50, 150 * MI, 250, 250 * MI)),
    ],
)
def test_sentry_resources(default_dist: Dist, name: str, container: str, expected: tuple) -> None:
    deployment = default_dist.get("Deployment", name)
    assert _resources(find_container(deployment, container)) == expected


def test_web_and_worker_roll_out_without_downtime(default_dist: Dist) -> None:
    for name in ("sentry-web", "sentry-worker"):
        spec = default_dist.get("Deployment", name)["spec"]
        assert spec["replicas"] == 2
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_exactly_one_cron_and_never_two_during_an_update(default_dist: Dist) -> None:
    spec = default_dist.get("Deployment", "sentry-cron")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    assert "rollingUpdate" not in spec["strategy"]


def test_web_probes_health_with_a_startup_probe_instead_of_a_long_delay(default_dist: Dist) -> None:
    web = find_container(default_dist.get("Deployment", "sentry-web"), "web")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"]["path"] == "/_health/"
        assert web[probe]["httpGet"]["port"] == 9000
        assert web[probe].get("initialDelaySeconds", 0) <= 10
    startup = web["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


def test_web_pods_keep_serving_until_their_endpoints_are_gone_then_drain(default_dist: Dist) -> None:
    # The real Sentry tier runs this stop sequence against uWSGI with requests in flight.
    from constructs.sentry_web import DRAIN_SECONDS, PRESTOP_DELAY_SECONDS, TERMINATION_GRACE_SECONDS

    spec = default_dist.get("Deployment", "sentry-web")["spec"]["template"]["spec"]
    web = find_container(default_dist.get("Deployment", "sentry-web"), "web")
    assert web["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sh", "-c", f"sleep {PRESTOP_DELAY_SECONDS}"]
    assert PRESTOP_DELAY_SECONDS >= 10
    assert spec["terminationGracePeriodSeconds"] == TERMINATION_GRACE_SECONDS > PRESTOP_DELAY_SECONDS + DRAIN_SECONDS


def test_web_service_is_a_nodeport_30000_selecting_the_web_pods(default_dist: Dist) -> None:
    service = default_dist.get("Service", "sentry-web")
    assert service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["nodePort"]) == (9000, 9000, 30000)
    labels = default_dist.get("Deployment", "sentry-web")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_disruption_budgets_select_their_deployments_pods(default_dist: Dist) -> None:
    budgets = {b["metadata"]["name"]: b for b in default_dist.of_kind("PodDisruptionBudget")}
    assert set(budgets) == {"sentry-web", "sentry-worker"}
    for name, budget in budgets.items():
        deployment = default_dist.get("Deployment", name)
        assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["maxUnavailable"] == 1


def test_worker_gets_time_to_finish_its_tasks(default_dist: Dist) -> None:
    spec = default_dist.get("Deployment", "sentry-worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 120


def test_sentry_pods_wait_for_postgres_then_for_their_migrations(default_dist: Dist) -> None:
    postgres_image = find_container(default_dist.get("StatefulSet", "sentry-postgresql"), "postgresql")["image"]
    for name in SENTRY_DEPLOYMENTS:
        (spec,) = pod_specs(default_dist.get("Deployment", name))
        inits = spec["initContainers"]
        assert [c["name"] for c in inits] == ["wait-for-postgres", "wait-for-migrations"]
        for init in inits:
            assert init["image"] == postgres_image  # psql matches the server's major version
        # It logs in with the pod's own credentials (a wrong password fails here, said so).
        assert "psql -X -q -t -A -c 'SELECT 1'" in init_script(inits[0])
        env = {e["name"]: e.get("value") for e in inits[1]["env"]}
        main_image = spec["containers"][0]["image"]
        assert env["SENTRY_MIGRATION_VERSION"] == main_image


def init_script(container: dict) -> str:
    return container["command"][-1]


def _job(dist: Dist) -> dict:
    (job,) = dist.of_kind("Job")
    return job


def test_migration_job_runs_upgrade_superuser_and_records_in_one_locked_step(default_dist: Dist) -> None:
    job = _job(default_dist)
    (spec,) = pod_specs(job)
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-postgres", "wait-for-redis"]
    # One container, so that one database session holds the advisory lock from `sentry
    # upgrade` to the records (tests/test_migration_script.py runs it).
    (migrate,) = spec["containers"]
    assert migrate["name"] == "migrate" and migrate["image"] == "sentry:9.1.2"
    assert spec["restartPolicy"] == "Never"
    script = migrate["command"][-1]
    assert "pg_try_advisory_lock" in script and '"upgrade", "--noinput"' in script and '"createuser"' in script
    _, _, _, memory_limit = _resources(migrate)
    assert memory_limit >= 3200 * MI
    env = {e["name"]: e for e in migrate["env"]}
    assert env["SENTRY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "admin-password"
    assert env["SENTRY_ADMIN_EMAIL"]["value"] == "admin@example.com"
    assert env["SENTRY_CREATE_ADMIN"]["value"] == "true"
    assert env["SENTRY_MIGRATION_VERSION"]["value"] == migrate["image"]


def test_without_create_admin_the_job_never_creates_a_superuser(tmp_path: Path) -> None:
    _, dist = synth(tmp_path, "sentry:\n  create_admin: false\n")
    migrate = find_container(_job(dist), "migrate")
    assert {"name": "SENTRY_CREATE_ADMIN", "value": "false"} in migrate["env"]


def test_migration_job_waits_for_redis_with_the_secret_password(default_dist: Dist) -> None:
    wait = find_container(_job(default_dist), "wait-for-redis")
    redis = default_dist.get("StatefulSet", "sentry-redis")
    assert wait["image"] == find_container(redis, "redis")["image"]  # redis-cli of the server's version
    env = {e["name"]: e for e in wait["env"]}
    service = default_dist.get("Service", env["REDIS_HOST"]["value"])
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"


def test_sentry_processes_run_under_the_images_tini(any_dist: Dist) -> None:
    sentry_images = {"sentry:9.1.2", "sentry-k8s/sentry-auth:9.1.2"}
    found = 0
    for obj in any_dist.objects:
        for container in all_containers(obj):
            if container["image"] in sentry_images:
                assert container["command"][:2] == ["/usr/local/bin/tini", "--"], container["name"]
                found += 1
    assert found >= 5  # web, worker, cron, migrate, cleanup


def test_migration_job_name_follows_any_change_of_its_pod_template(tmp_path: Path, default_dist: Dist) -> None:
    job = _job(default_dist)
    name = job["metadata"]["name"]
    # Turning on TLS changes only SENTRY_USE_SSL in the template; the postgres user is not
    # a migration setting at all, but it is in the template too: both must rename the Job.
    for index, values in enumerate(
        [
            "sentry:\n  web:\n    ingress: {enabled: true, tls_secret: sentry-tls}\n",
            "postgres:\n  user: sentry_owner\n",
        ]
    ):
        _, changed = synth(tmp_path, values, outdir=tmp_path / f"changed-{index}")
        assert _job(changed)["spec"]["template"] != job["spec"]["template"]
        assert _job(changed)["metadata"]["name"] != name, values
    # A change outside the Job's template (the cleanup's retention) keeps its name.
    _, other = synth(tmp_path, "sentry:\n  cleanup:\n    days: 30\n", outdir=tmp_path / "other")
    assert _job(other)["spec"]["template"] == job["spec"]["template"]
    assert _job(other)["metadata"]["name"] == name


def test_migration_job_name_is_stable_and_follows_the_image(tmp_path: Path, default_dist: Dist) -> None:
    name = _job(default_dist)["metadata"]["name"]
    assert name.startswith("sentry-migrations-")
    _, again = synth(tmp_path, outdir=tmp_path / "again")
    assert _job(again)["metadata"]["name"] == name
    _, upgraded = synth(tmp_path, "sentry:\n  image: sentry:9.1.3\n", outdir=tmp_path / "upgraded")
    job = _job(upgraded)
    assert job["metadata"]["name"] != name
    migrate = find_container(job, "migrate")
    assert {"name": "SENTRY_MIGRATION_VERSION", "value": "sentry:9.1.3"} in migrate["env"]


def test_config_checksum_on_every_sentry_pod_is_the_configmaps(default_dist: Dist) -> None:
    config_map = default_dist.get("ConfigMap", "sentry-config")
    assert set(config_map["data"]) == {"sentry.conf.py", "config.yml"}
    expected = hashlib.sha256(json.dumps(config_map["data"], sort_keys=True).encode()).hexdigest()
    sentry_workloads = [
        o for o in default_dist.objects if o["kind"] in {"Deployment", "Job", "CronJob"} and "sentry" in str(o)
    ]
    checked = 0
    for obj in sentry_workloads:
        if obj["metadata"]["labels"]["app.kubernetes.io/name"] != "sentry":
            continue
        template = (
            obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]
        )
        assert template["metadata"]["annotations"]["checksum/config"] == expected, obj["metadata"]["name"]
        checked += 1
    assert checked == 5  # web, worker, cron, migrations, cleanup


def test_config_is_mounted_at_etc_sentry_and_filestore_for_web_and_worker(default_dist: Dist) -> None:
    for name, container, filestore in (
        ("sentry-web", "web", True),
        ("sentry-worker", "worker", True),
        ("sentry-cron", "cron", False),
    ):
        mounts = {
            m["mountPath"]: m for m in find_container(default_dist.get("Deployment", name), container)["volumeMounts"]
        }
        assert mounts["/etc/sentry"]["readOnly"] is True
        assert ("/var/lib/sentry/files" in mounts) is filestore
    claim = default_dist.get("PersistentVolumeClaim", "sentry-filestore")
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_sentry_image_is_pinned_and_pulled_if_not_present(default_dist: Dist) -> None:
    for name in SENTRY_DEPLOYMENTS:
        (spec,) = pod_specs(default_dist.get("Deployment", name))
        assert spec["containers"][0]["image"] == "sentry:9.1.2"
        assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_cleanup_cronjob_keeps_90_days_by_default(default_dist: Dist) -> None:
    cronjob = default_dist.get("CronJob", "sentry-cleanup")
    container = find_container(cronjob, "cleanup")
    assert container["command"] == ["/usr/local/bin/tini", "--", "sentry", "cleanup", "--days", "90"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def test_github_login_switches_to_the_plugin_image_and_keeps_secrets_in_the_secret(tmp_path: Path) -> None:
    values = (
        "sentry:\n  github:\n    login_enabled: true\n    client_id: Iv1.abc\n    app_id: '12345'\n"
        "    app_name: my-sentry\n"
    )
    secrets = {
        "postgres-password": "p" * 20,
        "redis-password": "r" * 20,
        "sentry-secret-key": "s" * 50,
        "admin-password": "a" * 20,
        "github-client-secret": "gh-client-secret-value",
        "github-private-key": "-----BEGIN RSA PRIVATE KEY-----x",
        "github-webhook-secret": "gh-webhook-secret-value",
    }
    code, dist = synth(tmp_path, values, secrets=secrets)
    assert code == 0
    web = find_container(dist.get("Deployment", "sentry-web"), "web")
    assert web["image"] == "sentry-k8s/sentry-auth:9.1.2"
    env = {e["name"]: e for e in web["env"]}
    assert env["GITHUB_APP_ID"]["value"] == "Iv1.abc"
    assert env["GITHUB_APP_INTEGRATION_ID"]["value"] == "12345"
    for name, key in (
        ("GITHUB_API_SECRET", "github-client-secret"),
        ("GITHUB_APP_CLIENT_SECRET", "github-client-secret"),
        ("GITHUB_APP_PRIVATE_KEY", "github-private-key"),
        ("GITHUB_APP_WEBHOOK_SECRET", "github-webhook-secret"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == key
    text = "".join(f.read_text() for f in dist.files if f.name != "10-secrets.k8s.yaml")
    for value in ("gh-client-secret-value", "gh-webhook-secret-value", "BEGIN RSA"):
        assert value not in text


def test_ingress_with_tls_is_optional(tmp_path: Path, default_dist: Dist) -> None:
    assert not default_dist.of_kind("Ingress")
    _, dist = synth(
        tmp_path, "sentry:\n  web:\n    ingress: {enabled: true, host: sentry.example.com, tls_secret: sentry-tls}\n"
    )
    ingress = dist.get("Ingress", "sentry-web")
    assert ingress["spec"]["tls"] == [{"hosts": ["sentry.example.com"], "secretName": "sentry-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "sentry-web", "port": {"number": 9000}}
    web = find_container(dist.get("Deployment", "sentry-web"), "web")
    assert {"name": "SENTRY_USE_SSL", "value": "true"} in web["env"]


# --- capacity ---------------------------------------------------------------


def test_pod_request_is_the_larger_of_init_and_app_containers() -> None:
    def c(cpu: str, memory: str) -> dict:
        return {"resources": {"requests": {"cpu": cpu, "memory": memory}}}

    spec = {
        "initContainers": [c("10m", "16Mi"), c("500m", "100Mi")],
        "containers": [c("100m", "400Mi"), c("50m", "50Mi")],
    }
    assert pod_requests(spec) == Requests(500, 450 * MI)
    # And the other way round for each resource: an init container that needs more memory
    # (a migration run before the app starts) holds it, while the apps' CPU adds up.
    spec = {
        "initContainers": [c("10m", "2Gi")],
        "containers": [c("100m", "400Mi"), c("50m", "50Mi")],
    }
    assert pod_requests(spec) == Requests(150, 2048 * MI)


def _expected_peak(config: StackConfig) -> Requests:
    """The upgrade peak from the values alone: web and worker roll at once, each with one
    surge pod on top of its replicas; cron is recreated (never two); the new migration Job,
    a backup and a cleanup run; PostgreSQL and Redis keep running."""

    def req(res: Resources) -> Requests:
        return Requests(parse_cpu(res.requests.cpu), parse_memory(res.requests.memory))

    s, pg = config.sentry, config.postgres
    return (
        req(s.web.resources).times(s.web.replicas + 1)
        + req(s.worker.resources).times(s.worker.replicas + 1)
        + req(s.cron.resources)
        + req(s.migrations.resources)
        + req(s.cleanup.resources)
        + req(pg.resources)
        + req(pg.backup.resources)
        + req(config.redis.resources)
    )


def test_upgrade_peak_counts_both_rollouts_the_migration_and_the_jobs(default_dist: Dist) -> None:
    config = parse_config({})
    assert stack_requests(default_dist.objects) == _expected_peak(config)
    replicas = config.sentry.web.replicas + config.sentry.worker.replicas
    assert stack_requests(default_dist.objects, surge=False) != _expected_peak(config), replicas


def test_the_default_peak_fits_minikube_with_calico(default_dist: Dist) -> None:
    node = target(parse_config({}).capacity)
    assert node is not None
    # 2 CPUs less the control plane (750m) and calico-node (250m); 3891Mi less 170Mi.
    assert node.free == Requests(1000, (3891 - 170) * MI)
    peak = stack_requests(default_dist.objects)
    assert peak.cpu_m <= node.free.cpu_m, f"{peak.cpu_m}m of {node.free.cpu_m}m"
    assert peak.memory <= node.free.memory, f"{peak.memory // MI}Mi of {node.free.memory // MI}Mi"


def test_without_calico_the_node_has_its_250m_back() -> None:
    with_calico = target(parse_config({}).capacity)
    without = target(parse_config({"capacity": {"cni": "none"}}).capacity)
    assert with_calico and without
    assert without.free.cpu_m - with_calico.free.cpu_m == 250


ORIGINAL_MIGRATION_REQUEST = (
    "sentry:\n  migrations:\n    resources:\n"
    "      requests: {cpu: 200m, memory: 3000Mi}\n      limits: {cpu: '1', memory: 3200Mi}\n"
)


def test_a_stack_that_does_not_fit_fails_the_synth_naming_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The original task's 3000Mi migration request does not fit beside the rest of the stack.
    code, dist = synth(tmp_path, ORIGINAL_MIGRATION_REQUEST)
    err = capsys.readouterr().err
    assert code == 2
    assert "capacity:" in err and "--memory=4000mb --cpus=2 --cni=calico" in err and "memory" in err
    assert not dist.path.exists()


@pytest.mark.parametrize(
    ("extra", "warned"),
    [
        ({"capacity": {"on_exceed": "warn"}}, True),
        # A real cluster: no node budget (and the filestore must then be shareable).
        ({"capacity": {"target": "none"}, "sentry": {"filestore": {"access_mode": "ReadWriteMany"}}}, False),
    ],
)
def test_over_capacity_can_be_allowed_explicitly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict, warned: bool
) -> None:
    values = merge_onto_defaults(StackConfig, yaml.safe_load(ORIGINAL_MIGRATION_REQUEST), extra)
    code, _ = synth(tmp_path, yaml.safe_dump(values))
    assert code == 0
    assert ("warning: capacity:" in capsys.readouterr().err) == warned


def test_a_custom_node_target_is_measured_against(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = "capacity: {target: node, node_cpu: 900m, node_memory: 8Gi, cni: none}\n"
    code, _ = synth(tmp_path, small)
    assert code == 2
    assert "a node with 900m CPU / 8Gi allocatable" in capsys.readouterr().err


def test_init_containers_request_little(default_dist: Dist) -> None:
    for obj in default_dist.objects:
        for spec in pod_specs(obj):
            for init in spec.get("initContainers", []):
                if init["name"].startswith("wait-for"):
                    cpu, memory, _, _ = _resources(init)
                    assert cpu <= 10 and memory <= 16 * MI


def test_no_container_is_left_with_cdk8s_default_resources(default_dist: Dist) -> None:
    for obj in default_dist.objects:
        for container in all_containers(obj):
            assert container["resources"]["requests"] != {"cpu": "1000m", "memory": "512Mi"}
