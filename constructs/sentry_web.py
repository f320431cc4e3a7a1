"""SentryWeb: the web UI and API, rolled out without downtime, behind a Service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Annotated, Literal

import cdk8s_plus_27 as kplus
from cdk8s_plus_27 import k8s

from constructs import Construct
from constructs.checks import IngressHost, KubeName, Range, fail, props
from constructs.kube import seconds, service_for
from constructs.naming import Component
from constructs.props import PodSettings, Resources, resources
from constructs.sentry_migrations import MigrationGate
from constructs.sentry_runtime import SENTRY_PORT, SentryRuntime
from constructs.workload import CpuAutoscaling, autoscale, disruption_budget, zero_downtime_rollout

HEALTH_PATH = "/_health/"
# Sentry 9.1.2's chunk upload (sentry/api/endpoints/chunk.py, MAX_REQUEST_SIZE) has sentry-cli
# send up to 32 MiB in one request (8 MiB chunks); release files and minidumps go whole, and a
# source map can be larger. ingress-nginx refuses a request body over 1 MiB unless told
# otherwise (413), so the Ingress says so for it, unless the user's own annotations do.
MAX_CHUNK_REQUEST = 32 * 2**20
NGINX_BODY_SIZE_ANNOTATION = "nginx.ingress.kubernetes.io/proxy-body-size"
NGINX_BODY_SIZE = "100m"


@props
class WebIngress:
    """An Ingress in front of the web Service."""

    host: IngressHost
    """The host name it serves (a DNS name; a leading '*.' is allowed)."""
    class_name: KubeName | None = None
    """IngressClass. Default: the cluster's default class."""
    tls_secret: KubeName | None = None
    """Secret with the host's TLS certificate. Default: none, plain HTTP."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Annotations of the Ingress (e.g. for cert-manager). With class nginx or the default
    class, nginx.ingress.kubernetes.io/proxy-body-size is 100m unless given here (Sentry's
    uploads exceed ingress-nginx's 1m). Default: none."""


@props
class SentryWebOptions:
    """What a user chooses about the web pods."""

    replicas: Annotated[int, Range(1, 50)] = 2
    """Pods serving the UI. Default: 2, so a rollout or a node drain keeps one serving."""
    resources: Resources = resources("100m", "400Mi", "600m", "3Gi")
    """Requests and limits of the web container. Default: 100m / 400Mi requested, 600m / 3Gi
    at most (Sentry's uWSGI workers grow on large events)."""
    service_type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = "ClusterIP"
    """Type of the web Service. Default: ClusterIP, reachable inside the cluster (put an Ingress
    in front, or choose NodePort)."""
    node_port: Annotated[int, Range(30000, 32767)] | None = None
    """The Service's nodePort (NodePort and LoadBalancer only). Default: None, the cluster picks one."""
    service_annotations: Mapping[str, str] = field(default_factory=dict)
    """Annotations of the web Service (e.g. a cloud load balancer's). Default: none."""
    ingress: WebIngress | None = None
    """An Ingress in front of the Service. Default: none."""
    autoscaling: CpuAutoscaling | None = None
    """Scale on CPU with a HorizontalPodAutoscaler instead of a fixed `replicas`. Default: off."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none, and a soft spread across nodes and zones."""

    def __post_init__(self) -> None:
        if self.node_port is not None and self.service_type == "ClusterIP":
            fail(self, "node_port", f"{self.node_port} needs service_type NodePort or LoadBalancer, not ClusterIP")


@props
class SentryWebProps(SentryWebOptions):
    """Props of SentryWeb: the options, and what the web pods run with."""

    component: Component
    """Names and labels of the web objects."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    migrations: MigrationGate
    """The migrations the pods wait for (SentryMigrations) before they start."""


class SentryWeb(Construct):
    """`sentry run web` behind a Service.

    Rolling updates add one new pod and remove an old one only after the new one is
    ready (maxSurge 1, maxUnavailable 0), so the UI never has fewer ready pods than
    replicas. A startup probe gives Sentry's slow start up to 5 minutes without a long
    initial delay on the readiness and liveness probes.
    """

    def __init__(self, scope: Construct, id: str, props: SentryWebProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp, rt = props.component, props.runtime

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
            **rt.pod_props(self, comp, [rt.wait_for_postgres(self), props.migrations.wait_container(self)]),
            spread=False,
            replicas=props.replicas,
            strategy=zero_downtime_rollout(),
            containers=[
                rt.container(
                    self,
                    "web",
                    ["sentry", "run", "web"],
                    props.resources,
                    port_number=SENTRY_PORT,
                    startup=health(failures=30, period=10),
                    readiness=health(failures=3, period=10),
                    liveness=health(failures=3, period=20),
                )
            ],
        )
        rt.finish(self.deployment, comp, props.pods, {"web": props.resources}, spread_by_default=True)
        if props.autoscaling is not None:
            autoscale(self, self.deployment, comp, props.autoscaling)

        service_type = {
            "NodePort": kplus.ServiceType.NODE_PORT,
            "ClusterIP": kplus.ServiceType.CLUSTER_IP,
            "LoadBalancer": kplus.ServiceType.LOAD_BALANCER,
        }[props.service_type]
        self.service = service_for(
            self,
            comp,
            [kplus.ServicePort(name="http", port=SENTRY_PORT, target_port=SENTRY_PORT, node_port=props.node_port)],
            service_type=service_type,
            annotations=props.service_annotations,
        )
        disruption_budget(self, comp)
        if props.ingress is not None:
            self._ingress(props.ingress, comp)

    def _ingress(self, ingress: WebIngress, comp: Component) -> None:
        annotations = dict(ingress.annotations)
        # The nginx class, or the cluster's default one, which often is ingress-nginx (any other
        # controller ignores the annotation). The user's own value wins.
        if ingress.class_name in (None, "nginx"):
            annotations.setdefault(NGINX_BODY_SIZE_ANNOTATION, NGINX_BODY_SIZE)
        backend = k8s.IngressBackend(
            service=k8s.IngressServiceBackend(name=comp.name, port=k8s.ServiceBackendPort(number=SENTRY_PORT))
        )
        k8s.KubeIngress(
            self,
            "ingress",
            metadata=k8s.ObjectMeta(name=comp.name, labels=comp.labels, annotations=annotations or None),
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
