"""What the kubelet adds to a container's environment on its own, as Kubernetes does it
(kubernetes pkg/kubelet/envvars/envvars.go, pkg/kubelet/kubelet_pods.go): the API server's
Service always, and, unless the pod sets `enableServiceLinks: false`, Docker-link variables
for every Service of the pod's namespace. A container's own `env` wins over both.

Used by the tests that run what the manifests declare (sentry.conf.py, the real Sentry tier),
so that they see the environment a pod would see, not only the one its manifest writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# The `kubernetes` Service of the default namespace, as a kubelet of a minikube cluster sees it.
API_SERVER_IP = "10.96.0.1"
API_SERVER_PORT = 443


def _service_env(name: str, cluster_ip: str, ports: list[dict]) -> dict[str, str]:
    prefix = name.upper().replace("-", "_")
    first = ports[0]
    env = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(first["port"])}
    for port in ports:
        if port.get("name"):
            env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
    protocol = first.get("protocol", "TCP").lower()
    env[f"{prefix}_PORT"] = f"{protocol}://{cluster_ip}:{first['port']}"
    for port in ports:
        proto = port.get("protocol", "TCP")
        base = f"{prefix}_PORT_{port['port']}_{proto.upper()}"
        env[base] = f"{proto.lower()}://{cluster_ip}:{port['port']}"
        env[f"{base}_PROTO"] = proto.lower()
        env[f"{base}_PORT"] = str(port["port"])
        env[f"{base}_ADDR"] = cluster_ip
    return env


def cluster_ips(services: Iterable[dict]) -> dict[str, str]:
    """A made-up cluster IP for each Service that gets one (not headless), in file order."""
    ips: dict[str, str] = {}
    for index, service in enumerate(services):
        if service["spec"].get("clusterIP") != "None":
            ips[service["metadata"]["name"]] = f"10.96.{index // 250}.{10 + index % 250}"
    return ips


def injected_env(pod_spec: Mapping, services: Iterable[dict]) -> dict[str, str]:
    """The variables the kubelet adds to every container of a pod with this spec, in a
    namespace holding `services` (Service manifests)."""
    env = _service_env("kubernetes", API_SERVER_IP, [{"name": "https", "port": API_SERVER_PORT}])
    if pod_spec.get("enableServiceLinks", True) is False:
        return env
    services = list(services)
    ips = cluster_ips(services)
    for service in services:
        name = service["metadata"]["name"]
        if name in ips:
            env.update(_service_env(name, ips[name], service["spec"]["ports"]))
    return env
