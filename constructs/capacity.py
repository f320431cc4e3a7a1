"""How much of a node the stack reserves: the sum of pod requests, as the scheduler sees it.

The reference node is a minikube started with `--memory=4000mb --cpus=2`: about
3.8 GiB allocatable memory and 2 CPUs, of which the control plane (apiserver, etcd,
scheduler, controller-manager, coredns, ...) already requests about 750m CPU and 170Mi.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from constructs.quantities import parse_cpu, parse_memory

MI = 2**20
MINIKUBE_CPU_M = 2000
MINIKUBE_MEMORY = int(3.8 * 2**30)
CONTROL_PLANE_CPU_M = 750
CONTROL_PLANE_MEMORY = 170 * MI


@dataclass(frozen=True)
class Requests:
    cpu_m: int
    memory: int

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu_m + other.cpu_m, self.memory + other.memory)

    def times(self, n: int) -> Requests:
        return Requests(self.cpu_m * n, self.memory * n)


MINIKUBE_BUDGET = Requests(MINIKUBE_CPU_M - CONTROL_PLANE_CPU_M, MINIKUBE_MEMORY - CONTROL_PLANE_MEMORY)


def pod_specs(obj: dict) -> list[dict]:
    """The pod spec inside a workload object, whatever its kind (empty for non-workloads)."""
    spec = obj.get("spec", {})
    if obj["kind"] in {"Deployment", "StatefulSet", "Job", "DaemonSet"}:
        return [spec["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def container_requests(container: dict) -> Requests:
    requests = container.get("resources", {}).get("requests", {})
    return Requests(parse_cpu(requests.get("cpu", "0")), parse_memory(requests.get("memory", "0")))


def pod_requests(spec: dict) -> Requests:
    """Kubernetes' effective pod request: per resource, the larger of the biggest init
    container and the sum of the app containers. Init containers' requests are held
    while they run, which is why the waits request almost nothing."""
    apps = [container_requests(c) for c in spec["containers"]]
    inits = [container_requests(c) for c in spec.get("initContainers", [])]
    return Requests(
        max([sum(a.cpu_m for a in apps), *(i.cpu_m for i in inits)]),
        max([sum(a.memory for a in apps), *(i.memory for i in inits)]),
    )


def stack_requests(objects: Iterable[dict], surge: bool = True) -> Requests:
    """Requests of every pod that can exist at once: all replicas, one run of each Job and
    CronJob, plus (during a rollout) the surge pod of the largest rolling Deployment."""
    total = Requests(0, 0)
    largest_surge = Requests(0, 0)
    for obj in objects:
        for spec in pod_specs(obj):
            pod = pod_requests(spec)
            replicas = obj["spec"].get("replicas", 1) if obj["kind"] in {"Deployment", "StatefulSet"} else 1
            total += pod.times(replicas)
            strategy = obj["spec"].get("strategy", {}).get("type") if obj["kind"] == "Deployment" else None
            if strategy == "RollingUpdate" and pod.memory > largest_surge.memory:
                largest_surge = pod
    return total + largest_surge if surge else total
