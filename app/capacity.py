"""How much of a node the stack reserves: the sum of pod requests, as the scheduler sees it.

The peak is an image upgrade: web and worker roll at the same time, each with its
surge pods (which hold their requests while they wait for migrations), the new
migration Job runs, the old pods keep serving, and a scheduled backup or cleanup may
start meanwhile. The default target is a minikube started with `--memory=4000mb
--cpus=2 --cni=calico`: about 3.8 GiB allocatable memory and 2 CPUs, of which the
control plane already requests 750m CPU and 170Mi, and calico-node another 250m CPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from app.config import CapacityConfig, StackConfig
from constructs.pod_security import pod_specs
from constructs.quantities import parse_cpu, parse_memory

MI = 2**20
# The CNI's own pod on the node: calico-node requests 250m CPU and no memory.
CNI_REQUESTS_CPU_M = {"calico": 250, "none": 0}


@dataclass(frozen=True)
class Requests:
    cpu_m: int
    memory: int

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu_m + other.cpu_m, self.memory + other.memory)

    def times(self, n: int) -> Requests:
        return Requests(self.cpu_m * n, self.memory * n)


@dataclass(frozen=True)
class Target:
    """A node the stack must fit on, and what is already reserved on it."""

    description: str
    allocatable: Requests
    system: Requests
    cni: Requests

    @property
    def free(self) -> Requests:
        return Requests(
            self.allocatable.cpu_m - self.system.cpu_m - self.cni.cpu_m,
            self.allocatable.memory - self.system.memory - self.cni.memory,
        )


def target(cfg: CapacityConfig) -> Target | None:
    """The node the configuration measures against (None: no check)."""
    if cfg.target == "none":
        return None
    node = Requests(parse_cpu(cfg.node_cpu), parse_memory(cfg.node_memory))
    calico = cfg.cni == "calico"
    if cfg.target == "minikube":
        description = f"a minikube node (--memory=4000mb --cpus=2{' --cni=calico' if calico else ''})"
    else:
        description = f"a node with {cfg.node_cpu} CPU / {cfg.node_memory} allocatable{' and Calico' if calico else ''}"
    return Target(
        description=description,
        allocatable=node,
        system=Requests(parse_cpu(cfg.system_cpu), parse_memory(cfg.system_memory)),
        cni=Requests(CNI_REQUESTS_CPU_M[cfg.cni], 0),
    )


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


def replicas_of(obj: dict, autoscaled: dict[str, int]) -> int:
    """Pods of a workload at most: its replicas, or its autoscaler's maximum."""
    if obj["kind"] not in {"Deployment", "StatefulSet"}:
        return 1
    if obj["metadata"]["name"] in autoscaled and obj["kind"] == "Deployment":
        return autoscaled[obj["metadata"]["name"]]
    return obj["spec"].get("replicas", 1)


def autoscaler_maxima(objects: Iterable[dict]) -> dict[str, int]:
    """maxReplicas of each Deployment that a HorizontalPodAutoscaler scales."""
    return {
        o["spec"]["scaleTargetRef"]["name"]: o["spec"]["maxReplicas"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler" and o["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    }


def surge_pods(obj: dict, replicas: int | None = None) -> int:
    """Extra pods a Deployment's rolling update adds on top of its replicas (maxSurge)."""
    strategy = obj["spec"].get("strategy", {})
    if obj["kind"] != "Deployment" or strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    surge = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")
    replicas = replicas if replicas is not None else obj["spec"].get("replicas", 1)
    if isinstance(surge, str) and surge.endswith("%"):
        return math.ceil(replicas * int(surge[:-1]) / 100)
    return int(surge)


# The restore Job runs only while Sentry is scaled to 0 (the restore runbook in docs/operations.md), so it
# never adds to the upgrade peak: its own pod is far smaller than what it replaces.
RUNS_WITH_SENTRY_STOPPED = frozenset({"restore"})
COMPONENT_LABEL = "app.kubernetes.io/component"


def stack_requests(objects: Iterable[dict], surge: bool = True) -> Requests:
    """Requests of every pod that can exist at once: all replicas, one run of each Job and
    CronJob, and (with `surge`, an upgrade) every rolling Deployment's surge pods too."""
    objects = list(objects)
    autoscaled = autoscaler_maxima(objects)
    total = Requests(0, 0)
    for obj in objects:
        if obj["metadata"].get("labels", {}).get(COMPONENT_LABEL) in RUNS_WITH_SENTRY_STOPPED:
            continue
        for spec in pod_specs(obj):
            replicas = replicas_of(obj, autoscaled)
            if surge:
                replicas += surge_pods(obj, replicas)
            total += pod_requests(spec).times(replicas)
    return total


def percent(used: int, available: int) -> int:
    return math.ceil(100 * used / available) if available > 0 else 999


def capacity_report(config: StackConfig, objects: list[dict]) -> str:
    """One line for the synth summary: the peak and, if there is a target, how it fits."""
    peak, steady = stack_requests(objects), stack_requests(objects, surge=False)
    line = (
        f"requests at the upgrade peak: cpu {peak.cpu_m}m, memory {peak.memory // MI}Mi "
        f"(steady: {steady.cpu_m}m / {steady.memory // MI}Mi)"
    )
    node = target(config.capacity)
    if node is None:
        return line + "; capacity.target is none: not checked against a node"
    free = node.free
    return (
        f"{line}; {node.description} has {free.cpu_m}m / {free.memory // MI}Mi free after its system pods: "
        f"{percent(peak.cpu_m, free.cpu_m)}% / {percent(peak.memory, free.memory)}%"
    )


def capacity_problem(config: StackConfig, objects: list[dict]) -> str | None:
    """Why the stack does not fit its capacity target, if it does not (main.py fails or
    warns, as `capacity.on_exceed` says)."""
    node = target(config.capacity)
    if node is None:
        return None
    peak, free = stack_requests(objects), node.free
    over = [
        f"{what} {need} > {have}"
        for what, need, have, fits in (
            ("cpu", f"{peak.cpu_m}m", f"{free.cpu_m}m", peak.cpu_m <= free.cpu_m),
            ("memory", f"{peak.memory // MI}Mi", f"{free.memory // MI}Mi", peak.memory <= free.memory),
        )
        if not fits
    ]
    if not over:
        return None
    message = (
        f"capacity: the requests at the upgrade peak exceed what {node.description} has free "
        f"({', '.join(over)}): pods would stay Pending. Lower the requests, or set capacity.target "
        "(node with node_cpu/node_memory, or none for a real cluster)"
    )
    return message + ", or set capacity.on_exceed: warn"


def capacity_table(config: StackConfig, objects: list[dict]) -> str:
    """The README's capacity table (tools/capacity_table.py): every pod at the upgrade peak, and how the sum fits the
    configured target with and without the CNI's own pod."""
    lines = ["| pods (component) | at the upgrade peak | requests each | total |", "| --- | --- | --- | --- |"]
    autoscaled = autoscaler_maxima(objects)
    for obj in objects:
        component = obj["metadata"].get("labels", {}).get(COMPONENT_LABEL, obj["metadata"]["name"])
        if component in RUNS_WITH_SENTRY_STOPPED:
            continue
        for spec in pod_specs(obj):
            replicas = replicas_of(obj, autoscaled)
            surge = surge_pods(obj, replicas)
            pod = pod_requests(spec)
            total = pod.times(replicas + surge)
            count = f"{replicas}" + (f" + {surge} surge" if surge else "")
            kind = {"Job": "Job run", "CronJob": "one run"}.get(obj["kind"], obj["kind"])
            lines.append(
                f"| {component} ({kind}) | {count} | {pod.cpu_m}m / {pod.memory // MI}Mi | "
                f"{total.cpu_m}m / {total.memory // MI}Mi |"
            )
    peak = stack_requests(objects)
    lines.append(f"| **all at once** | | | **{peak.cpu_m}m / {peak.memory // MI}Mi** |")
    node = target(config.capacity)
    if node is not None:
        for cni in ("calico", "none"):
            free = target(config.capacity.model_copy(update={"cni": cni}))
            assert free is not None
            room = free.free
            lines.append(
                f"| free on {free.description} | | | {room.cpu_m}m / {room.memory // MI}Mi: "
                f"**{percent(peak.cpu_m, room.cpu_m)}% / {percent(peak.memory, room.memory)}%** used |"
            )
    return "\n".join(lines)
