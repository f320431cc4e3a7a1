"""SentryWeb: the web UI and API, rolled out without downtime and reachable on a NodePort."""

from __future__ import annotations

from dataclasses import dataclass, field

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import PodSettings, WebConfig
from constructs.naming import Component
from constructs.placement import apply_pod_settings
from constructs.pod_security import harden
from constructs.sentry_runtime import SENTRY_PORT, SentryRuntime
from constructs.workload import (
    autoscale,
    disruption_budget,
    seconds,
    select,
    service_for,
    zero_downtime_rollout,
)
from imports import k8s

HEALTH_PATH = "/_health/"


@dataclass(frozen=True)
class SentryWebProps:
    """Props of SentryWeb."""

    component: Component
    """Names and labels of the web objects."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    config: WebConfig = field(default_factory=WebConfig)
    """Replicas, resources, Service type and nodePort, Ingress (defaults: see WebConfig)."""
    pods: PodSettings = field(default_factory=PodSettings)
    """Placement and pod metadata. Default: none, and a soft spread across nodes and zones."""


class SentryWeb(Construct):
    """`sentry run web` behind a Service.

    Rolling updates add one new pod and remove an old one only after the new one is
    ready (maxSurge 1, maxUnavailable 0), so the UI never has fewer ready pods than
    replicas. A startup probe gives Sentry's slow start up to 5 minutes without a long
    initial delay on the readiness and liveness probes.
    """

    def __init__(self, scope: Construct, id: str, props: SentryWebProps) -> None:
        super().__init__(scope, id)
        cfg, comp, rt = props.config, props.component, props.runtime

        def health(failures: int, period: int) -> kplus.Probe:
            return kplus.Probe.from_http_get(
                HEALTH_PATH,
                port=SENTRY_PORT,
                period_seconds=seconds(period),
                failure_threshold=failures,
                timeout_seconds=seconds(5),
            )

        self.deployment = kplus.Deployment(
            self,
            "deployment",
            **rt.pod_props(self, comp),
            spread=False,
            replicas=cfg.replicas,
            strategy=zero_downtime_rollout(),
            containers=[
                rt.container(
                    self,
                    "web",
                    ["sentry", "run", "web"],
                    cfg.resources,
                    port_number=SENTRY_PORT,
                    startup=health(failures=30, period=10),
                    readiness=health(failures=3, period=10),
                    liveness=health(failures=3, period=20),
                )
            ],
        )
        select(self.deployment, comp)
        harden(self.deployment, rt.props.service_account)
        apply_pod_settings(self.deployment, props.pods, comp, spread_by_default=True)
        if cfg.autoscaling.enabled:
            autoscale(self, self.deployment, comp, cfg.autoscaling)

        service_type = {
            "NodePort": kplus.ServiceType.NODE_PORT,
            "ClusterIP": kplus.ServiceType.CLUSTER_IP,
            "LoadBalancer": kplus.ServiceType.LOAD_BALANCER,
        }[cfg.service_type]
        node_port = cfg.node_port if cfg.service_type != "ClusterIP" else None
        self.service = service_for(
            self,
            comp,
            [kplus.ServicePort(name="http", port=SENTRY_PORT, target_port=SENTRY_PORT, node_port=node_port)],
            service_type=service_type,
            annotations=cfg.service_annotations,
        )
        disruption_budget(self, comp)
        if cfg.ingress.enabled:
            self._ingress(cfg, comp)

    def _ingress(self, cfg: WebConfig, comp: Component) -> None:
        ingress = cfg.ingress
        backend = k8s.IngressBackend(
            service=k8s.IngressServiceBackend(name=comp.name, port=k8s.ServiceBackendPort(number=SENTRY_PORT))
        )
        k8s.KubeIngress(
            self,
            "ingress",
            metadata=k8s.ObjectMeta(name=comp.name, labels=comp.labels, annotations=dict(ingress.annotations) or None),
            spec=k8s.IngressSpec(
                ingress_class_name=ingress.class_name,
                tls=[k8s.IngressTls(hosts=[ingress.host], secret_name=ingress.tls_secret)]
                if ingress.tls_secret
                else None,
                rules=[
                    k8s.IngressRule(
                        host=ingress.host,
                        http=k8s.HttpIngressRuleValue(
                            paths=[k8s.HttpIngressPath(path="/", path_type="Prefix", backend=backend)]
                        ),
                    )
                ],
            ),
        )
