"""StatsdExporter: Sentry's statsd metrics, as Prometheus metrics.

Sentry 9.1 sends counters and timers over statsd (UDP) with the instance folded into the
name (sentry.jobs.started.<task>, sentry.events.processed, ...): its statsd backend has no
tags. The Prometheus statsd exporter receives them on UDP 9125 and serves them on 9102,
turning the name parts into labels with the mapping in constructs/statsd_files/mapping.yml.
Its Service carries the usual `prometheus.io/*` scrape annotations; with the Prometheus
Operator, an optional ServiceMonitor selects it (a plain ApiObject: no CRD import).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.checks import Image, PullPolicy, Range, props
from constructs.kube import metadata, pod_metadata, seconds, service_for, service_monitor
from constructs.naming import Component, own_component
from constructs.props import PodSettings, Resources, resources
from constructs.workload import container_resources, container_security, finish, pod_security, pull_policy

MAPPING = (Path(__file__).parent / "statsd_files" / "mapping.yml").read_text(encoding="utf-8")
STATSD_PORT = 9125
METRICS_PORT = 9102
# The image's own user (prom/statsd-exporter: USER nobody).
EXPORTER_UID = 65534


@props
class StatsdExporterOptions:
    """What a user chooses about the metrics exporter."""

    image: Image = "prom/statsd-exporter:v0.26.1"
    """The exporter's image. Default: prom/statsd-exporter:v0.26.1."""
    resources: Resources = resources("10m", "32Mi", "100m", "128Mi")
    """Requests and limits. Default: 10m / 32Mi requested, 100m / 128Mi at most."""
    service_monitor: bool = False
    """Also make a ServiceMonitor (needs the Prometheus Operator's CRDs). Default: false."""
    service_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels your Prometheus selects ServiceMonitors by (e.g. release). Default: none."""
    scrape_interval_seconds: Annotated[int, Range(5, 600)] = 30
    """The ServiceMonitor's scrape interval. Default: 30."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""


@props
class StatsdExporterProps(StatsdExporterOptions):
    """Props of StatsdExporter: the options, and how it runs."""

    component: Component | None = None
    """Names and labels of the exporter's objects. Default: derived from the construct's id
    (`<id>-metrics`) and the image's tag."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy. Default: IfNotPresent."""
    service_account: str | None = None
    """ServiceAccount of the pod. Default: the namespace's default (no token either way)."""


class StatsdExporter(Construct):
    """One exporter pod (its state is a few counters: a restart only resets them, which
    Prometheus's rate() handles) behind a Service: statsd in on UDP, metrics out on HTTP."""

    def __init__(self, scope: Construct, id: str, props: StatsdExporterProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.component = comp = own_component(id, props.component, "statsd-exporter", "metrics", props.image)
        self.host = comp.name
        self.statsd_port = STATSD_PORT
        self.metrics_port = METRICS_PORT
        mapping = kplus.ConfigMap(self, "mapping", metadata=metadata(comp), data={"mapping.yml": MAPPING})
        mapping_volume = kplus.Volume.from_config_map(self, "mapping-volume", mapping, name="mapping")
        metrics_path = "/metrics"
        self.deployment = kplus.Deployment(
            self,
            "deployment",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp),
            select=False,
            spread=False,
            replicas=1,
            automount_service_account_token=False,
            security_context=pod_security(EXPORTER_UID, EXPORTER_UID),
            containers=[
                kplus.ContainerProps(
                    name="statsd-exporter",
                    image=props.image,
                    image_pull_policy=pull_policy(props.image_pull_policy),
                    args=[
                        f"--statsd.listen-udp=:{STATSD_PORT}",
                        "--statsd.listen-tcp=",
                        f"--web.listen-address=:{METRICS_PORT}",
                        f"--web.telemetry-path={metrics_path}",
                        "--statsd.mapping-config=/etc/statsd-exporter/mapping.yml",
                    ],
                    ports=[
                        kplus.ContainerPort(number=STATSD_PORT, protocol=kplus.Protocol.UDP, name="statsd"),
                        kplus.ContainerPort(number=METRICS_PORT, name="metrics"),
                    ],
                    resources=container_resources(props.resources),
                    security_context=container_security(EXPORTER_UID, EXPORTER_UID),
                    startup=kplus.Probe.from_http_get(
                        metrics_path, port=METRICS_PORT, period_seconds=seconds(2), failure_threshold=30
                    ),
                    readiness=kplus.Probe.from_http_get(metrics_path, port=METRICS_PORT, period_seconds=seconds(10)),
                    liveness=kplus.Probe.from_http_get(metrics_path, port=METRICS_PORT, period_seconds=seconds(20)),
                    volume_mounts=[
                        kplus.VolumeMount(path="/etc/statsd-exporter", volume=mapping_volume, read_only=True)
                    ],
                )
            ],
        )
        sizes = {"statsd-exporter": props.resources}
        finish(self.deployment, comp, pods=props.pods, service_account=props.service_account, sizes=sizes)
        self.service = service_for(
            self,
            comp,
            [
                kplus.ServicePort(
                    name="statsd", port=STATSD_PORT, target_port=STATSD_PORT, protocol=kplus.Protocol.UDP
                ),
                kplus.ServicePort(name="metrics", port=METRICS_PORT, target_port=METRICS_PORT),
            ],
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": metrics_path,
            },
        )
        if props.service_monitor:
            service_monitor(
                self,
                comp,
                "metrics",
                metrics_path,
                props.scrape_interval_seconds,
                props.service_monitor_labels,
            )
