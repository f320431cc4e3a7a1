"""RedisBroker: Redis as Sentry's Celery broker and cache, with a password and AOF on a PVC,
and optionally a redis_exporter beside it for Prometheus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Annotated

import cdk8s_plus_27 as kplus

from constructs import Construct, images
from constructs.checks import Image, PullPolicy, Range, props
from constructs.endpoints import NetworkTarget
from constructs.kube import (
    claim,
    claim_volume,
    metadata,
    plain_env,
    pod_metadata,
    seconds,
    secret_env,
    service_for,
    service_monitor,
    shell_command,
    statefulset_claim_name,
)
from constructs.naming import Component, own_component
from constructs.props import PodSettings, Resources, Storage, resources
from constructs.quantities import parse_memory
from constructs.secret_keys import SecretKeys
from constructs.workload import (
    command_probe,
    container_resources,
    container_security,
    finish,
    pod_security,
    pull_policy,
)

REDIS_PORT = 6379
# The redis image's own user and group (constructs/images.py). Run as them directly:
# the entrypoint's root-only step (chown of /data, then gosu) is not needed, because
# fsGroup makes the data volume group-writable. Redis writes only /data (the volume)
# and /run/redis (an emptyDir); the root filesystem is read-only.
REDIS_UID = images.REDIS.uid
DATA_MOUNT = images.REDIS.paths["data"]
# Half the container's memory limit: the other half is room for an AOF rewrite's forked
# child (copy-on-write pages of a busy dataset) and for client buffers, so Redis refuses
# writes (see redis-server.sh) long before the kernel would OOM-kill it.
MAXMEMORY_SHARE_OF_LIMIT = 0.5
# Never evict. Sentry 9.1.2 keeps each event's body in the cache with a one-hour TTL and
# queues only its key (sentry/coreapi.py); any policy that evicts would pick exactly those
# keys under a backlog, and the worker then drops the event with a log line
# (sentry/tasks/store.py). Full, Redis refuses writes instead: docs/operations.md says what
# Sentry does then.
MAXMEMORY_POLICY = "noeviction"
REDIS_GID = images.REDIS.gid
EXPORTER_PORT = 9121
EXPORTER_UID = images.REDIS_EXPORTER.uid
EXPORTER_RESOURCES = resources("10m", "16Mi", "100m", "64Mi")


@props
class RedisOptions:
    """What a user chooses about the in-cluster Redis."""

    image: Image = "redis:6.2.14-alpine"
    """Redis image. Default: redis:6.2.14-alpine (its uid/gid 999/1000 are the pod's)."""
    storage: Storage = Storage(size="1Gi")
    """The AOF volume (a claim of its own, so it can grow). Default: 1Gi, the cluster's default
    storage class."""
    resources: Resources = resources("50m", "160Mi", "250m", "256Mi")
    """Requests and limits; Redis's maxmemory is half the memory limit, and it evicts nothing:
    128 MiB holds an hour of events at one a second waiting for the workers (docs/operations.md).
    The memory request covers a full Redis, so a backlog never puts it over its request. Default:
    50m / 160Mi requested, 250m / 256Mi at most."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""
    exporter_image: Image = images.REDIS_EXPORTER.image
    """The redis_exporter beside Redis when metrics are on (its memory use for Prometheus).
    Default: oliver006/redis_exporter:v1.67.0."""
    exporter_resources: Resources = EXPORTER_RESOURCES
    """Requests and limits of the exporter. Default: 10m / 16Mi requested, 100m / 64Mi at most."""


@props
class RedisMetrics:
    """Prometheus metrics of Redis (its memory use, above all), served by a redis_exporter
    sidecar on port 9121 behind a Service of its own."""

    service_monitor: bool = False
    """Also make a ServiceMonitor (needs the Prometheus Operator's CRDs). Default: false."""
    service_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels your Prometheus selects ServiceMonitors by (e.g. release). Default: none."""
    scrape_interval_seconds: Annotated[int, Range(5, 600)] = 30
    """The ServiceMonitor's scrape interval. Default: 30."""


@props
class RedisBrokerProps(RedisOptions):
    """Props of RedisBroker: the options, and how it runs."""

    secret: kplus.ISecret
    """Secret holding the Redis password."""
    component: Component | None = None
    """Names and labels of the Redis objects. Default: derived from the construct's id
    (`<id>-redis`) and the image's tag."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy. Default: IfNotPresent, so minikube can use a preloaded image."""
    service_account: str | None = None
    """ServiceAccount of the pod. Default: the namespace's default (no token either way)."""
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret` (`redis_password`). Default: the stack's names."""
    metrics: RedisMetrics | None = None
    """Run the redis_exporter beside Redis. Default: none."""


class RedisBroker(Construct):
    """A one-replica Redis StatefulSet with a required password, AOF persistence and a Service.

    The password is read from a Secret into the environment and written to a config
    file by the start script: it never appears on a command line. With `metrics`, a
    redis_exporter sidecar reads Redis's INFO over the pod's loopback (with the same
    password, from the Secret) and serves it on port 9121, behind `<name>-metrics`.
    """

    def __init__(self, scope: Construct, id: str, props: RedisBrokerProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.component = comp = own_component(id, props.component, "redis", "redis", props.image)
        self.service = service_for(
            self, comp, [kplus.ServicePort(name="redis", port=REDIS_PORT, target_port=REDIS_PORT)]
        )
        self.host = comp.name
        self.port = REDIS_PORT
        self.image = props.image
        self.client_image = props.image
        self.db = 0
        self.secret = props.secret
        self.network = NetworkTarget(port=REDIS_PORT, pods=comp)
        self.metrics_port = EXPORTER_PORT if props.metrics is not None else None
        self.maxmemory = int(parse_memory(props.resources.limits.memory) * MAXMEMORY_SHARE_OF_LIMIT)

        self.data_claim = claim(self, "data-claim", statefulset_claim_name(comp), comp, props.storage)
        data = claim_volume(self, "data", self.data_claim.name, "data")
        ping = ["/bin/sh", "-c", f"redis-cli -h 127.0.0.1 -p {REDIS_PORT} ping | grep -q PONG"]
        self.statefulset = kplus.StatefulSet(
            self,
            "statefulset",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp),
            select=False,
            replicas=1,
            service=self.service,
            automount_service_account_token=False,
            security_context=pod_security(REDIS_UID, REDIS_GID),
            containers=[
                kplus.ContainerProps(
                    name="redis",
                    image=props.image,
                    image_pull_policy=pull_policy(props.image_pull_policy),
                    command=shell_command("redis-server"),
                    port_number=REDIS_PORT,
                    env_variables={
                        "REDIS_PASSWORD": secret_env(props.secret, props.secret_keys.redis_password),
                        # redis-cli reads the password from here, so probes pass no -a flag.
                        "REDISCLI_AUTH": secret_env(props.secret, props.secret_keys.redis_password),
                        "REDIS_PORT": kplus.EnvValue.from_value(str(REDIS_PORT)),
                        "REDIS_DATA_DIR": kplus.EnvValue.from_value(DATA_MOUNT),
                        "REDIS_MAXMEMORY": kplus.EnvValue.from_value(str(self.maxmemory)),
                        "REDIS_MAXMEMORY_POLICY": kplus.EnvValue.from_value(MAXMEMORY_POLICY),
                    },
                    resources=container_resources(props.resources),
                    security_context=container_security(REDIS_UID, REDIS_GID),
                    startup=command_probe(ping, period=2, failures=60, timeout=3),
                    readiness=command_probe(ping, period=5, failures=3, timeout=3),
                    liveness=command_probe(ping, period=10, failures=6),
                    volume_mounts=[
                        kplus.VolumeMount(
                            path="/run/redis",
                            volume=kplus.Volume.from_empty_dir(self, "run", "run"),
                        ),
                        kplus.VolumeMount(path=DATA_MOUNT, volume=data),
                    ],
                ),
                *([self._exporter()] if props.metrics is not None else []),
            ],
        )
        sizes = {"redis": props.resources}
        if props.metrics is not None:
            sizes["redis-exporter"] = props.exporter_resources
            self._metrics_service(props.metrics)
        finish(self.statefulset, comp, pods=props.pods, service_account=props.service_account, sizes=sizes)

    def _exporter(self) -> kplus.ContainerProps:
        """The redis_exporter (its image's own entrypoint and user): Redis over the pod's
        loopback, the password from the Secret in its environment (never an argument)."""
        props = self.props
        health = "/health"
        return kplus.ContainerProps(
            name="redis-exporter",
            image=props.exporter_image,
            image_pull_policy=pull_policy(props.image_pull_policy),
            port_number=EXPORTER_PORT,
            env_variables={
                "REDIS_ADDR": kplus.EnvValue.from_value(f"redis://127.0.0.1:{REDIS_PORT}"),
                "REDIS_PASSWORD": secret_env(props.secret, props.secret_keys.redis_password),
                "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": kplus.EnvValue.from_value(f":{EXPORTER_PORT}"),
            },
            resources=container_resources(props.exporter_resources),
            security_context=container_security(EXPORTER_UID, EXPORTER_UID),
            startup=kplus.Probe.from_http_get(
                health, port=EXPORTER_PORT, period_seconds=seconds(2), failure_threshold=30
            ),
            readiness=kplus.Probe.from_http_get(health, port=EXPORTER_PORT, period_seconds=seconds(10)),
            liveness=kplus.Probe.from_http_get(health, port=EXPORTER_PORT, period_seconds=seconds(20)),
        )

    def _metrics_service(self, metrics: RedisMetrics) -> None:
        """The exporter's own Service, with the usual `prometheus.io/*` scrape annotations (the
        Redis Service stays the clients' one), and a ServiceMonitor when asked."""
        comp = self.component.sibling("redis-metrics")
        scope = Construct(self, "metrics")
        path = "/metrics"
        service_for(
            scope,
            comp,
            [kplus.ServicePort(name="metrics", port=EXPORTER_PORT, target_port=EXPORTER_PORT)],
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(EXPORTER_PORT),
                "prometheus.io/path": path,
            },
            # The exporter runs in the Redis pod.
            pods=self.component,
        )
        if metrics.service_monitor:
            service_monitor(
                scope, comp, "metrics", path, metrics.scrape_interval_seconds, metrics.service_monitor_labels
            )

    def client_env(self, secret: kplus.ISecret | None = None) -> dict[str, kplus.EnvValue]:
        """What a redis-cli client of this server needs: host, port and the password
        (REDISCLI_AUTH, which redis-cli reads instead of an -a flag)."""
        return {
            **plain_env({"REDIS_HOST": self.host, "REDIS_PORT": str(self.port)}),
            "REDISCLI_AUTH": secret_env(secret or self.secret, self.props.secret_keys.redis_password),
        }
