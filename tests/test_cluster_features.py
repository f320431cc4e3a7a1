"""Beyond minikube: object-storage filestores, metrics, autoscaling, pod placement and custom
settings, each checked on the synthesized YAML (and the metric mapping against Sentry's
real metric names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from constructs.statsd_exporter import MAPPING
from tests.conftest import TEST_SECRETS, Dist, all_containers, find_container, pod_specs, synth

SENTRY_WORKLOADS = (("Deployment", "sentry-web"), ("Deployment", "sentry-worker"), ("Deployment", "sentry-cron"))


def _synth(tmp_path: Path, values: str, **secrets: str) -> Dist:
    code, dist = synth(tmp_path, values, secrets={**TEST_SECRETS, **secrets})
    assert code == 0
    return dist


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _sentry_containers(dist: Dist) -> list[dict]:
    sentry = ["/usr/local/bin/tini", "--", "sentry"]
    return [c for o in dist.objects for c in all_containers(o) if c.get("command", [])[:3] == sentry]


# --- filestore ----------------------------------------------------------------------------

S3 = """
sentry:
  filestore:
    backend: s3
    s3: {bucket: sentry-files, region: eu-central-1, endpoint_url: "https://minio.example.com:9000",
         access_key_id: AKIAFILES, addressing_style: path}
"""


def test_s3_filestore_has_no_claim_and_keeps_the_secret_key_in_the_secret(tmp_path: Path) -> None:
    dist = _synth(tmp_path, S3, **{"filestore-s3-secret-access-key": "s3-files-secret"})
    assert "sentry-filestore" not in {o["metadata"]["name"] for o in dist.of_kind("PersistentVolumeClaim")}
    containers = _sentry_containers(dist)
    assert len(containers) >= 3
    for container in containers:
        env = _env(container)
        assert env["SENTRY_S3_BUCKET"]["value"] == "sentry-files"
        assert env["SENTRY_S3_ADDRESSING_STYLE"]["value"] == "path"
        assert (
            env["SENTRY_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "filestore-s3-secret-access-key"
        )
        assert "SENTRY_FILESTORE_DIR" not in env
        assert all(m["mountPath"] != "/var/lib/sentry/files" for m in container["volumeMounts"])
    assert "s3-files-secret" not in dist.text().replace(
        dist.get("Secret", "sentry-secrets")["data"]["filestore-s3-secret-access-key"], ""
    )


def test_gcs_filestore_uses_the_project_image_and_a_mounted_key(tmp_path: Path) -> None:
    dist = _synth(
        tmp_path, "sentry:\n  filestore: {backend: gcs, gcs: {bucket: sentry-files}}\n", **{"gcs-credentials": "{}"}
    )
    for container in _sentry_containers(dist):
        # google-cloud-storage is not in the stock image (docker-sentry#148).
        assert container["image"] == "sentry-k8s/sentry-auth:9.1.2"
        path = Path(_env(container)["GOOGLE_APPLICATION_CREDENTIALS"]["value"])
        assert any(Path(m["mountPath"]) == path.parent for m in container["volumeMounts"])
    (spec,) = pod_specs(dist.get("Deployment", "sentry-web"))
    (key,) = [v for v in spec["volumes"] if "secret" in v]
    assert key["secret"]["items"] == [{"key": "gcs-credentials", "path": path.name}]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("sentry:\n  filestore: {backend: s3}\n", "s3.bucket is required"),
        ("capacity: {target: none}\n", "access_mode must be ReadWriteMany"),
        # No pod identity reaches a bucket (docs/cluster.md): the keyless forms are refused,
        # naming the field and why.
        (
            "sentry:\n  filestore: {backend: s3, s3: {bucket: sentry-files}}\n",
            "sentry.filestore.s3: S3Filestore.access_key_id: is required with a bucket: Sentry 9.1.2 cannot",
        ),
        (
            "sentry:\n  filestore: {backend: gcs, gcs: {bucket: sentry-files, key_file: false}}\n",
            "sentry.filestore.gcs: GcsFilestore.key_file: must be true",
        ),
    ],
)
def test_filestore_settings_that_cannot_work_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], values: str, message: str
) -> None:
    code, _ = synth(tmp_path, values)
    assert code == 2
    assert message in capsys.readouterr().err


# --- metrics ------------------------------------------------------------------------------

METRICS = "sentry:\n  metrics: {enabled: true, service_monitor: true, service_monitor_labels: {release: prom}}\n"


def test_metrics_go_to_the_exporter_that_prometheus_scrapes(tmp_path: Path) -> None:
    dist = _synth(tmp_path, METRICS)
    service = dist.get("Service", "sentry-metrics")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["statsd"]["protocol"] == "UDP"
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"]["port"])
    exporter = dist.get("Deployment", "sentry-metrics")
    assert service["spec"]["selector"].items() <= exporter["spec"]["template"]["metadata"]["labels"].items()
    for container in _sentry_containers(dist):
        env = _env(container)
        assert env["SENTRY_STATSD_HOST"]["value"] == service["metadata"]["name"]
        assert env["SENTRY_STATSD_PORT"]["value"] == str(ports["statsd"]["port"])
    monitor = dist.get("ServiceMonitor", "sentry-metrics")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # The Sentry pods may send to it, on UDP.
    web_egress = dist.get("NetworkPolicy", "sentry-web")["spec"]["egress"]
    assert any(
        p.get("protocol") == "UDP" and p["port"] == ports["statsd"]["port"] for r in web_egress for p in r["ports"]
    )


def test_every_statsd_sender_reaches_the_exporter_through_the_policies(tmp_path: Path) -> None:
    # Each pod whose environment names the exporter (Sentry's pods, and the backup for
    # its last-success gauge) may send to it on UDP, by its own egress and by the
    # exporter's ingress; nothing else reaches the statsd port.
    from tests.test_security import STRANGER, _pod, connects, pods

    dist = _synth(tmp_path, METRICS)
    policies = dist.of_kind("NetworkPolicy")
    service = dist.get("Service", "sentry-metrics")
    statsd = next(p for p in service["spec"]["ports"] if p["name"] == "statsd")
    port = statsd.get("targetPort", statsd["port"])
    (exporter,) = [
        _pod(meta["labels"])
        for obj, meta, _ in pods(dist)
        if obj["kind"] == "Deployment" and service["spec"]["selector"].items() <= meta["labels"].items()
    ]
    senders = set()
    for obj, meta, spec in pods(dist):
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = _env(container)
            for prefix in ("SENTRY", "BACKUP"):
                if f"{prefix}_STATSD_HOST" not in env:
                    continue
                assert env[f"{prefix}_STATSD_HOST"]["value"] == service["metadata"]["name"]
                assert env[f"{prefix}_STATSD_PORT"]["value"] == str(statsd["port"])
                sender = _pod(meta["labels"])
                assert connects(policies, sender, exporter, port, "UDP"), obj["metadata"]["name"]
                senders.add(meta["labels"]["app.kubernetes.io/component"])
    assert senders == {"web", "worker", "cron", "migrations", "cleanup", "backup"}
    assert not connects(policies, STRANGER, exporter, port, "UDP")


def test_metrics_are_off_by_default_and_count_in_the_capacity_when_on(default_dist: Dist, tmp_path: Path) -> None:
    from app.capacity import stack_requests

    assert not [o for o in default_dist.objects if "metrics" in o["metadata"]["name"]]
    with_metrics = _synth(tmp_path, METRICS)
    extra = stack_requests(with_metrics.objects).cpu_m - stack_requests(default_dist.objects).cpu_m
    deployment = with_metrics.get("Deployment", "sentry-metrics")
    exporter = find_container(deployment, "statsd-exporter")
    redis_exporter = find_container(with_metrics.get("StatefulSet", "sentry-redis"), "redis-exporter")
    # Its replica, and the surge pod of its own rolling update; and Redis's exporter.
    assert extra == 2 * int(exporter["resources"]["requests"]["cpu"].removesuffix("m")) + int(
        redis_exporter["resources"]["requests"]["cpu"].removesuffix("m")
    )


def test_redis_memory_use_is_a_metric_beside_the_in_cluster_redis(tmp_path: Path, default_dist: Dist) -> None:
    from constructs import images
    from tests.test_security import OTHER_NAMESPACE, STRANGER, _pod, connects, stack_pods

    dist = _synth(tmp_path, METRICS)
    statefulset = dist.get("StatefulSet", "sentry-redis")
    exporter = find_container(statefulset, "redis-exporter")
    assert exporter["image"] == images.REDIS_EXPORTER.image
    # Its image's own entrypoint and user; Redis over the pod's loopback, the password from the
    # Secret, never in an argument.
    assert "command" not in exporter and "args" not in exporter
    ids = (exporter["securityContext"]["runAsUser"], exporter["securityContext"]["runAsGroup"])
    assert ids == (images.REDIS_EXPORTER.uid, images.REDIS_EXPORTER.gid)
    env = _env(exporter)
    assert env["REDIS_ADDR"]["value"] == "redis://127.0.0.1:6379"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    port = exporter["ports"][0]["containerPort"]
    assert env["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"]["value"] == f":{port}"
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/health", "port": port, "scheme": "HTTP"}
    # Prometheus finds it through a Service of its own, which selects the Redis pod...
    service = dist.get("Service", "sentry-redis-metrics")
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": port}]
    annotations = service["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", str(port))
    monitor = dist.get("ServiceMonitor", "sentry-redis-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert "sentry-redis" not in {m["metadata"]["name"] for m in dist.of_kind("ServiceMonitor")}
    # ... and reaches it from anywhere, like the statsd exporter; Redis itself stays closed.
    policies, stack = dist.of_kind("NetworkPolicy"), stack_pods(dist)
    for client in (OTHER_NAMESPACE, {"ip": "203.0.113.50"}):
        assert connects(policies, client, stack["redis"], port)
        assert not connects(policies, client, stack["redis"], 6379)
    assert not connects(policies, STRANGER, stack["redis"], 6379)
    assert connects(policies, stack["worker"], stack["redis"], 6379)
    # Without metrics, none of it.
    assert [c["name"] for c in pod_specs(default_dist.get("StatefulSet", "sentry-redis"))[0]["containers"]] == ["redis"]
    default_redis = default_dist.get("NetworkPolicy", "sentry-redis")["spec"]["ingress"]
    assert not connects(default_dist.of_kind("NetworkPolicy"), OTHER_NAMESPACE, _pod(stack["redis"]["labels"]), port)
    assert len(default_redis) == 1


def test_an_external_redis_gets_no_exporter(tmp_path: Path) -> None:
    dist = _synth(tmp_path, METRICS + "redis:\n  external: {host: 10.0.9.15}\n")
    assert not [o for o in dist.objects if "redis" in o["metadata"]["name"]]


def _mapped(name: str) -> tuple[str, dict[str, str]] | None:
    """Which metric and labels the exporter's regex mapping makes of a statsd name (first
    matching rule wins, as in statsd_exporter)."""
    for rule in yaml.safe_load(MAPPING)["mappings"]:
        match = re.match(rule["match"], name)
        if match:

            def fill(text: str, m: re.Match[str] = match) -> str:
                return re.sub(r"\$\{?(\d)\}?", lambda g: m.group(int(g.group(1))), text)

            return fill(rule["name"]), {k: fill(v) for k, v in rule.get("labels", {}).items()}
    return None


@pytest.mark.parametrize(
    ("statsd_name", "metric", "labels"),
    [
        # Names as Sentry 9.1.2 sends them (sentry/metrics, sentry/tasks/base.py, web/api.py).
        (
            "sentry.jobs.started.sentry.tasks.store.save_event",
            "sentry_jobs_started_total",
            {"task": "sentry.tasks.store.save_event"},
        ),
        (
            "sentry.jobs.duration.sentry.tasks.post_process.post_process_group",
            "sentry_jobs_duration",
            {"task": "sentry.tasks.post_process.post_process_group"},
        ),
        ("sentry.events.processed", "sentry_events_processed_total", {}),
        ("sentry.events.processed.python", "sentry_events_processed_by_platform_total", {"platform": "python"}),
        ("sentry.client-api.all-versions.responses.429", "sentry_client_api_responses_total", {"status": "429"}),
    ],
)
def test_the_mapping_turns_sentry_metric_names_into_labels(statsd_name: str, metric: str, labels: dict) -> None:
    assert _mapped(statsd_name) == (metric, labels)


def test_every_mapping_rule_is_anchored() -> None:
    # statsd_exporter's regex rules are not anchored by themselves: without ^...$ a rule for
    # sentry.events.processed would also swallow sentry.events.processed.<platform>.
    for rule in yaml.safe_load(MAPPING)["mappings"]:
        assert rule["match"].startswith("^") and rule["match"].endswith("$"), rule["match"]


# --- autoscaling --------------------------------------------------------------------------

AUTOSCALING = """
capacity: {target: none}
sentry:
  filestore: {access_mode: ReadWriteMany}
  web:
    autoscaling: {enabled: true, min_replicas: 2, max_replicas: 5, target_cpu_percent: 60}
  worker:
    autoscaling: {enabled: true, max_replicas: 8}
"""


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(tmp_path: Path) -> None:
    dist = _synth(tmp_path, AUTOSCALING)
    for name, low, high in (("sentry-web", 2, 5), ("sentry-worker", 2, 8)):
        deployment = dist.get("Deployment", name)
        assert "replicas" not in deployment["spec"], "kubectl apply would reset the autoscaler's count"
        hpa = dist.get("HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (low, high)
        # The disruption budget stays meaningful at any count from 2 up.
        assert dist.get("PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1
    web_hpa = dist.get("HorizontalPodAutoscaler", "sentry-web")
    # CPU, the resource the pods request and release: Sentry's memory only grows, so an
    # autoscaler on memory would never scale down.
    (metric,) = web_hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert "sentry-cron" not in {o["metadata"]["name"] for o in dist.of_kind("HorizontalPodAutoscaler")}


def test_the_capacity_counts_autoscaled_pods_at_their_maximum(tmp_path: Path) -> None:
    from app.capacity import stack_requests

    dist = _synth(tmp_path, AUTOSCALING)
    (tmp_path / "fixed").mkdir()
    fixed = _synth(tmp_path / "fixed", AUTOSCALING.replace("enabled: true", "enabled: false"))
    web = find_container(dist.get("Deployment", "sentry-web"), "web")
    worker = find_container(dist.get("Deployment", "sentry-worker"), "worker")
    web_cpu, worker_cpu = (int(c["resources"]["requests"]["cpu"].removesuffix("m")) for c in (web, worker))
    # web: 5 instead of 2 replicas, worker: 8 instead of 2 (each plus its surge pod).
    expected = 3 * web_cpu + 6 * worker_cpu
    assert stack_requests(dist.objects).cpu_m - stack_requests(fixed.objects).cpu_m == expected


def test_autoscaling_below_two_replicas_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = synth(tmp_path, "sentry:\n  web:\n    autoscaling: {enabled: true, min_replicas: 1}\n")
    assert code == 2
    assert "sentry.web.autoscaling.min_replicas" in capsys.readouterr().err


# --- placement and metadata -------------------------------------------------------------------

PLACEMENT = """
pods:
  node_selector: {pool: sentry}
  tolerations: [{key: dedicated, operator: Equal, value: sentry, effect: NoSchedule}]
  priority_class_name: sentry-high
  image_pull_secrets: [regcred]
  annotations: {team: observability}
  labels: {cost-center: ops}
sentry:
  web:
    service_annotations: {service.beta.kubernetes.io/aws-load-balancer-internal: "true"}
    ingress: {enabled: true, annotations: {cert-manager.io/cluster-issuer: letsencrypt}}
    pods:
      node_selector: {pool: web}
      topology_spread_constraints: [{maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}]
"""


@pytest.fixture(scope="module")
def placed(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    return _synth(tmp_path_factory.mktemp("placed"), PLACEMENT)


def test_global_pod_settings_reach_every_pod(placed: Dist) -> None:
    checked = 0
    for obj in placed.objects:
        for spec in pod_specs(obj):
            name = obj["metadata"]["name"]
            expected_pool = "web" if name == "sentry-web" else "sentry"
            assert spec["nodeSelector"] == {"pool": expected_pool}, name
            assert spec["tolerations"][0]["key"] == "dedicated", name
            assert spec["priorityClassName"] == "sentry-high", name
            assert spec["imagePullSecrets"] == [{"name": "regcred"}], name
            checked += 1
    assert checked >= 7


def test_pod_labels_and_annotations_add_to_the_stacks_own(placed: Dist) -> None:
    web = placed.get("Deployment", "sentry-web")["spec"]["template"]["metadata"]
    assert web["labels"]["cost-center"] == "ops"
    assert web["labels"]["app.kubernetes.io/component"] == "web", "the selector labels stay"
    assert web["annotations"]["team"] == "observability"
    assert "checksum/config" in web["annotations"], "the config checksum stays"


def test_web_and_worker_spread_softly_by_default(default_dist: Dist, placed: Dist) -> None:
    for name in ("sentry-web", "sentry-worker"):
        (spec,) = pod_specs(default_dist.get("Deployment", name))
        keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in spec["topologySpreadConstraints"]:
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"  # never blocks a one-node minikube
            labels = default_dist.get("Deployment", name)["spec"]["selector"]["matchLabels"]
            assert constraint["labelSelector"]["matchLabels"] == labels
    (cron,) = pod_specs(default_dist.get("Deployment", "sentry-cron"))
    assert "topologySpreadConstraints" not in cron
    # A workload's own constraints replace the default; their selector defaults to its pods.
    (web,) = pod_specs(placed.get("Deployment", "sentry-web"))
    (constraint,) = web["topologySpreadConstraints"]
    assert constraint["whenUnsatisfiable"] == "DoNotSchedule"
    assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"


def _nginx_size(value: str) -> int:
    """An nginx size (client_max_body_size): bytes, or k/m/g."""
    match = re.fullmatch(r"([0-9]+)([kKmMgG]?)", value)
    assert match, value
    return int(match[1]) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match[2].lower()]


@pytest.mark.parametrize(
    ("ingress", "body_size"),
    [
        ("{enabled: true, class_name: nginx}", "100m"),
        ("{enabled: true}", "100m"),  # the default class: often ingress-nginx
        ("{enabled: true, class_name: traefik}", None),  # another controller: its own settings
        (
            "{enabled: true, class_name: nginx, annotations: {nginx.ingress.kubernetes.io/proxy-body-size: 500m}}",
            "500m",  # the user's own value wins
        ),
    ],
)
def test_uploads_larger_than_ingress_nginx_default_pass_the_ingress(
    tmp_path: Path, ingress: str, body_size: str | None
) -> None:
    from constructs.sentry_web import MAX_CHUNK_REQUEST

    dist = _synth(tmp_path, f"sentry:\n  web:\n    service_type: ClusterIP\n    ingress: {ingress}\n")
    annotations = dist.get("Ingress", "sentry-web")["metadata"].get("annotations") or {}
    assert annotations.get("nginx.ingress.kubernetes.io/proxy-body-size") == body_size
    if body_size is not None:
        # Above what one chunk-upload request carries (8 MiB chunks, 32 MiB a request), with room
        # for the multipart envelope and for files sent whole.
        assert _nginx_size(body_size) >= 2 * MAX_CHUNK_REQUEST


def test_service_and_ingress_annotations(placed: Dist) -> None:
    service = placed.get("Service", "sentry-web")
    assert service["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
    assert (
        placed.get("Ingress", "sentry-web")["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
        == "letsencrypt"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("pods: {labels: {app.kubernetes.io/name: x}}\n", "app.kubernetes.io/* labels are the stack's own"),
        ("pods: {tolerations: [{key: a, efect: NoSchedule}]}\n", "tolerations[0]: unknown keys ['efect']"),
        ("pods: {topology_spread_constraints: [{maxSkew: 1}]}\n", "missing ['topologyKey', 'whenUnsatisfiable']"),
        ("sentry: {extra_env: {SENTRY_DB_USER: x}}\n", "SENTRY_DB_USER are set by the stack itself"),
        ("sentry: {conf_py_extra: 'X = (1'}\n", "sentry.conf_py_extra: is not valid Python"),
        ("sentry: {conf_py_extra: \"X = 'caf\u00e9'\"}\n", "must be ASCII"),
        ("sentry: {config_yml_extra: '- a list'}\n", "must be a YAML mapping"),
    ],
)
def test_bad_pod_and_custom_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], values: str, message: str
) -> None:
    code, _ = synth(tmp_path, values)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err


# --- custom settings ----------------------------------------------------------------------


def test_custom_settings_come_after_the_projects_and_roll_the_pods(default_dist: Dist, tmp_path: Path) -> None:
    values = (
        "sentry:\n"
        "  extra_env: {SENTRY_WEB_WORKERS: '4'}\n"
        "  conf_py_extra: \"SENTRY_FEATURES['auth:register'] = False\\n\"\n"
        "  config_yml_extra: 'system.admin-email: ops@example.com'\n"
    )
    dist = _synth(tmp_path, values)
    files = dist.get("ConfigMap", "sentry-config")["data"]
    ours = default_dist.get("ConfigMap", "sentry-config")["data"]
    assert files["sentry.conf.py"].startswith(ours["sentry.conf.py"])
    assert files["sentry.conf.py"].rstrip().endswith("SENTRY_FEATURES['auth:register'] = False")
    assert yaml.safe_load(files["config.yml"]) == {"system.admin-email": "ops@example.com"}
    checksum = dist.get("Deployment", "sentry-web")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    old = default_dist.get("Deployment", "sentry-web")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum != old
    for container in _sentry_containers(dist):
        assert _env(container)["SENTRY_WEB_WORKERS"]["value"] == "4"


def test_the_backup_reports_its_newest_backup_to_the_exporter(tmp_path: Path) -> None:
    import socket
    import time

    from tests.test_backup import Script, new_server

    dist = _synth(tmp_path, METRICS)
    cronjob = dist.get("CronJob", "sentry-backup")
    env = _env(find_container(cronjob, "backup"))
    service = dist.get("Service", "sentry-metrics")
    statsd = next(p for p in service["spec"]["ports"] if p["name"] == "statsd")
    assert env["BACKUP_STATSD_HOST"]["value"] == service["metadata"]["name"]
    assert env["BACKUP_STATSD_PORT"]["value"] == str(statsd["port"])
    egress = dist.get("NetworkPolicy", "sentry-backup")["spec"]["egress"]
    assert any(p.get("protocol") == "UDP" and p["port"] == statsd["port"] for r in egress for p in r["ports"])

    # The script, for real: a verified backup of a real server, then one datagram of gauges.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        server = new_server()
        try:
            server.psql("CREATE DATABASE sentry")
            (tmp_path / "backups").mkdir()
            script = Script.of(
                cronjob,
                "backup",
                PGHOST=server.host,
                PGPORT=str(server.port),
                BACKUP_DIR=str(tmp_path / "backups"),
                BACKUP_FILESTORE_DIR="",
                BACKUP_STATSD_HOST="127.0.0.1",
                BACKUP_STATSD_PORT=str(receiver.getsockname()[1]),
            )
            started = int(time.time())
            result = script.run(server.path())
        finally:
            server.cleanup()
        assert result.returncode == 0, result.stderr
        # One datagram per gauge or both in one: statsd reads lines either way.
        received = receiver.recv(4096).decode()
        if "size_bytes" not in received:
            received += receiver.recv(4096).decode()
        lines = dict(line.split(":", 1) for line in received.splitlines())
    stamp, kind = lines["sentry_backup.last_success_timestamp_seconds"].split("|")
    assert kind == "g" and started <= int(stamp) <= int(time.time())
    size, kind = lines["sentry_backup.size_bytes"].split("|")
    assert kind == "g" and int(size) > 0


def test_the_service_account_carries_its_annotations(tmp_path: Path) -> None:
    # Annotations only: a cloud identity given here reaches no bucket (the filestores take keys).
    role = "arn:aws:iam::123456789012:role/sentry"
    dist = _synth(tmp_path, f"service_account_annotations: {{eks.amazonaws.com/role-arn: '{role}'}}\n")
    (account,) = dist.of_kind("ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}
    for name in ("sentry-web", "sentry-worker"):
        (spec,) = pod_specs(dist.get("Deployment", name))
        assert spec["serviceAccountName"] == account["metadata"]["name"]
