"""NetworkPolicies: deny everything, then allow what the stack needs.

A connection needs an egress rule on the client's pod and an ingress rule on the
server's pod; pods are selected by the standard labels (naming.py).
- `<release>-default-deny`: every pod of the tier (or of the namespace, `namespace_wide`),
  no ingress, no egress;
- `<release>-dns`: those pods may query the cluster DNS on port 53 (UDP and TCP);
- web: ingress on its port from anywhere (Service, NodePort, LoadBalancer); when an Ingress
  is the only way in, from the Ingress controller's namespace only, as web then trusts the
  X-Forwarded-* headers a client could otherwise set itself (kubelet probes come from the
  node, which NetworkPolicies always allow);
- PostgreSQL: ingress only from the Sentry pods and the database clients (backup, restore);
- Redis: ingress only from the Sentry pods; its exporter's metrics port (with metrics) from
  anywhere, like the statsd exporter's;
  (with an external server, no such pods exist: the clients' egress goes to its addresses);
- each Sentry pod: egress to PostgreSQL and Redis; the `internet` ones (web, worker,
  cron) also to `sentry_egress_cidrs` on the configured ports (GitHub/GitLab login,
  integrations, mail);
- backup and restore: egress to PostgreSQL; the backup also to `offsite_egress_cidrs`
  when it copies dumps offsite.
No pod gets a rule to the Kubernetes API server: none of them calls it.

NetworkPolicies only work with a CNI that enforces them: minikube's default does not
(start it with `--cni=calico` or `--cni=cilium`); without one they are inert.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import field

from cdk8s_plus_27 import k8s

from constructs import Construct
from constructs.checks import Cidr, DnsLabel, Port, props
from constructs.endpoints import NetworkTarget
from constructs.naming import Component

# Private, shared (CGNAT) and link-local IPv4 ranges: pod, service and node networks
# live here, and so do cloud metadata endpoints (169.254.169.254).
PRIVATE_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")


@props
class NetworkPoliciesOptions:
    """What a user chooses about the NetworkPolicies."""

    dns_namespace: DnsLabel | None = "kube-system"
    """Namespace of the cluster DNS pods every pod may query on port 53. Default: kube-system;
    None allows port 53 to any address (e.g. NodeLocal DNSCache)."""
    dns_pod_labels: Mapping[str, str] = field(default_factory=lambda: {"k8s-app": "kube-dns"})
    """Labels of the cluster DNS pods. Default: k8s-app=kube-dns (CoreDNS keeps the label)."""
    sentry_egress_cidrs: Sequence[Cidr] = ("0.0.0.0/0",)
    """Where web, worker and cron may connect outside the stack on `sentry_egress_ports`
    (GitHub/GitLab login, integrations, mail). Default: anywhere but `egress_except_cidrs`;
    () for nowhere."""
    sentry_egress_ports: Sequence[Port] = (443,)
    """TCP ports for that (the SMTP port is added when mail is on). Default: 443."""
    offsite_egress_cidrs: Sequence[Cidr] = ("0.0.0.0/0",)
    """Where the pods copying backups offsite may connect, on the S3 endpoint's port. Default:
    anywhere but `egress_except_cidrs`."""
    egress_except_cidrs: Sequence[Cidr] = PRIVATE_CIDRS
    """Carved out of every egress CIDR above that contains them. Default: the private,
    shared and link-local IPv4 ranges (pod, service and node networks, cloud metadata)."""
    namespace_wide: bool = False
    """Whether the default-deny and DNS policies select every pod of the namespace (true: a
    namespace of the tier's own, where a pod anyone else starts is denied too) or only the
    tier's own pods, by their instance and part-of labels (false: a namespace shared with other
    workloads, which the tier's policies must leave alone). Default: false."""
    ingress_namespace: DnsLabel | None = "ingress-nginx"
    """Namespace of the Ingress controller's pods. When an Ingress is the only way in to web
    (a ClusterIP Service), only they may reach the web port: web then trusts the
    X-Forwarded-* headers, which any other pod could set. None lets any pod and address in (a
    controller on the host network, whose connections come from node addresses). Default:
    ingress-nginx, ingress-nginx's own namespace."""


@props
class NetworkPoliciesProps(NetworkPoliciesOptions):
    """Props of NetworkPolicies: the options, and the pods and servers they connect."""

    stack: Component
    """Names and labels of the default-deny and DNS policies; without `namespace_wide`, they
    select the pods of its release and part-of."""
    web: Component
    """The web pods: reachable from anywhere on `web_port`."""
    web_port: Port
    """The web pods' HTTP port."""
    web_behind_ingress: bool = False
    """Whether an Ingress is the only way in to web (which then trusts its X-Forwarded-*
    headers): the web port admits `ingress_namespace` only. Default: false, anywhere."""
    sentry: Sequence[Component]
    """Every Sentry pod (web, worker, cron, migrations, cleanup): clients of PostgreSQL and Redis."""
    internet: Sequence[Component]
    """The Sentry pods that may also reach `sentry_egress_cidrs` (web, worker, cron)."""
    postgres: NetworkTarget
    """Where PostgreSQL is: its pods here (which then accept only the clients), or its addresses."""
    redis: NetworkTarget
    """Where Redis is, likewise."""
    redis_metrics_port: Port | None = None
    """The metrics port of the exporter in the Redis pod, if any: open to all, as Prometheus may
    run anywhere. Default: none."""
    mail_ports: Sequence[Port] = ()
    """TCP ports of outgoing mail, added to `sentry_egress_ports`. Default: none."""
    database_clients: Sequence[Component] = ()
    """Non-Sentry PostgreSQL clients (backup, restore). Default: none."""
    offsite: Component | None = None
    """The pods copying dumps offsite (the backup), if enabled. Default: none."""
    offsite_port: Port = 443
    """TCP port of the S3 endpoint. Default: 443."""
    metrics: Component | None = None
    """The statsd exporter, if metrics are on: Sentry pods send to it, Prometheus scrapes it.
    Default: none."""
    metrics_ports: tuple[Port, Port] = (9125, 9102)
    """Its statsd (UDP) and metrics (TCP) ports. Default: 9125 and 9102, the exporter's own."""
    metrics_senders: Sequence[Component] = ()
    """Pods besides Sentry's that send statsd metrics (the backup). Default: none."""


def _peer(component: Component) -> k8s.NetworkPolicyPeer:
    """Pods of one component in this namespace."""
    return k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector(match_labels=component.selector_labels))


def _tcp(port: int) -> k8s.NetworkPolicyPort:
    return k8s.NetworkPolicyPort(protocol="TCP", port=k8s.IntOrString.from_number(port))


def _ip_blocks(cidrs: Sequence[str], excepts: Sequence[str]) -> list[k8s.NetworkPolicyPeer]:
    """One ipBlock per CIDR, each carved by the excepts strictly inside it (the API
    rejects an except outside its block)."""
    peers = []
    for cidr in cidrs:
        block = ipaddress.ip_network(cidr)
        inside = [
            e
            for e in excepts
            if (net := ipaddress.ip_network(e)).version == block.version and net != block and net.subnet_of(block)
        ]
        peers.append(k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=cidr, except_=inside or None)))
    return peers


def _egress_to(target: NetworkTarget) -> k8s.NetworkPolicyEgressRule:
    """To a server's pods in this namespace, or to its own addresses as configured (no
    private ranges are carved out of those: they were named on purpose)."""
    peers = [_peer(target.pods)] if target.pods is not None else _ip_blocks(target.cidrs, ())
    return k8s.NetworkPolicyEgressRule(to=peers, ports=[_tcp(target.port)])


class NetworkPolicies(Construct):
    """The stack's NetworkPolicies; see the module docstring for what each allows."""

    def __init__(self, scope: Construct, id: str, props: NetworkPoliciesProps) -> None:
        super().__init__(scope, id)
        self.props = props
        stack = props.stack
        # Every pod of the tier carries its release's instance and part-of labels (naming.py).
        tier = {"app.kubernetes.io/instance": stack.release}
        if stack.part_of:
            tier["app.kubernetes.io/part-of"] = stack.part_of
        everyone = {} if props.namespace_wide else tier
        self._policy("default-deny", f"{stack.release}-default-deny", stack, everyone)
        dns_ports = [k8s.NetworkPolicyPort(protocol=p, port=k8s.IntOrString.from_number(53)) for p in ("UDP", "TCP")]
        dns_peers = None
        if props.dns_namespace is not None:
            dns_peers = [
                k8s.NetworkPolicyPeer(
                    namespace_selector=k8s.LabelSelector(
                        match_labels={"kubernetes.io/metadata.name": props.dns_namespace}
                    ),
                    pod_selector=k8s.LabelSelector(match_labels=dict(props.dns_pod_labels)),
                )
            ]
        self._policy(
            "dns",
            f"{stack.release}-dns",
            stack,
            everyone,
            egress=[k8s.NetworkPolicyEgressRule(to=dns_peers, ports=dns_ports)],
        )

        to_postgres = _egress_to(props.postgres)
        to_databases = [to_postgres, _egress_to(props.redis)]
        internet = []
        internet_ports = [*props.sentry_egress_ports, *props.mail_ports]
        if props.sentry_egress_cidrs and internet_ports:
            internet = [
                k8s.NetworkPolicyEgressRule(
                    to=_ip_blocks(props.sentry_egress_cidrs, props.egress_except_cidrs),
                    ports=[_tcp(p) for p in sorted(set(internet_ports))],
                )
            ]
        to_metrics = []
        if props.metrics is not None:
            statsd_port, metrics_port = props.metrics_ports
            udp = k8s.NetworkPolicyPort(protocol="UDP", port=k8s.IntOrString.from_number(statsd_port))
            to_metrics = [k8s.NetworkPolicyEgressRule(to=[_peer(props.metrics)], ports=[udp])]
            # Prometheus may run anywhere (another namespace, the node): the metrics port is
            # open to all, like web's; statsd only to the Sentry pods.
            self._policy(
                "metrics",
                props.metrics.name,
                props.metrics,
                props.metrics.selector_labels,
                ingress=[
                    k8s.NetworkPolicyIngressRule(
                        from_=[_peer(c) for c in [*props.sentry, *props.metrics_senders]], ports=[udp]
                    ),
                    k8s.NetworkPolicyIngressRule(ports=[_tcp(metrics_port)]),
                ],
            )
        for comp in props.sentry:
            ingress = None
            if comp == props.web:
                ingress = [k8s.NetworkPolicyIngressRule(from_=self._web_clients(), ports=[_tcp(props.web_port)])]
            egress = to_databases + to_metrics + (internet if comp in props.internet else [])
            self._policy(comp.component, comp.name, comp, comp.selector_labels, ingress=ingress, egress=egress)

        pg, redis = props.postgres, props.redis
        if pg.pods is not None:
            self._policy(
                "postgresql",
                pg.pods.name,
                pg.pods,
                pg.pods.selector_labels,
                ingress=[
                    k8s.NetworkPolicyIngressRule(
                        from_=[_peer(c) for c in [*props.sentry, *props.database_clients]], ports=[_tcp(pg.port)]
                    )
                ],
            )
        if redis.pods is not None:
            redis_ingress = [
                k8s.NetworkPolicyIngressRule(from_=[_peer(c) for c in props.sentry], ports=[_tcp(redis.port)])
            ]
            if props.redis_metrics_port is not None:
                redis_ingress.append(k8s.NetworkPolicyIngressRule(ports=[_tcp(props.redis_metrics_port)]))
            self._policy("redis", redis.pods.name, redis.pods, redis.pods.selector_labels, ingress=redis_ingress)
        for comp in props.database_clients:
            egress = [to_postgres]
            if comp in props.metrics_senders:
                egress += to_metrics
            if comp == props.offsite and props.offsite_egress_cidrs:
                egress.append(
                    k8s.NetworkPolicyEgressRule(
                        to=_ip_blocks(props.offsite_egress_cidrs, props.egress_except_cidrs),
                        ports=[_tcp(props.offsite_port)],
                    )
                )
            self._policy(comp.component, comp.name, comp, comp.selector_labels, egress=egress)

    def _web_clients(self) -> list[k8s.NetworkPolicyPeer] | None:
        """Who may reach the web port: anyone (None), or the Ingress controller's pods when the
        Ingress is the only way in."""
        props = self.props
        if not props.web_behind_ingress or props.ingress_namespace is None:
            return None
        namespace = {"kubernetes.io/metadata.name": props.ingress_namespace}
        return [k8s.NetworkPolicyPeer(namespace_selector=k8s.LabelSelector(match_labels=namespace))]

    def _policy(
        self,
        id: str,
        name: str,
        component: Component,
        pod_labels: Mapping[str, str],
        ingress: list[k8s.NetworkPolicyIngressRule] | None = None,
        egress: list[k8s.NetworkPolicyEgressRule] | None = None,
    ) -> k8s.KubeNetworkPolicy:
        """Both policy types always: a type without rules denies that direction, so a pod
        selected here stays denied in any direction this policy does not allow."""
        return k8s.KubeNetworkPolicy(
            self,
            id,
            metadata=k8s.ObjectMeta(name=name, labels=component.labels),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels=dict(pod_labels) or None),
                policy_types=["Ingress", "Egress"],
                ingress=ingress,
                egress=egress,
            ),
        )
