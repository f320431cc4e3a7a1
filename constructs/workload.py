"""Building the stack's pods: containers, security, probes, rollouts, and the one way every
workload is completed (`finish`).

cdk8s-plus-27 has defaults that are wrong for this stack, and each helper here overrides one
of them in a single place:
- containers without `resources` get 1 CPU / 512Mi requests: we always set them, as written
  (cdk8s-plus rounds memory to whole Mi; the synth-time pass writes the quantity as given);
- `imagePullPolicy` defaults to Always: we pass the configured policy;
- a container with a port gets a 3-failure TCP startupProbe, which kills a slow Sentry
  before it is up: we always give an explicit startup probe;
- selectors use only the `cdk8s.io/metadata.addr` hash label: we select on the standard
  `app.kubernetes.io/*` labels instead.

`finish(...)` is the sequence every workload construct ends with: select the pods by their
standard labels now, and, when the chart is synthesized (a cdk8s validation, which runs
before any output is written), apply the pod settings, the hardening (pod_security.py) and,
for a Job, its name hashed from what the API server freezes. Done at synth time, these also
cover whatever was added through an escape hatch after construction (`add_container`, an
env var on a container).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Annotated, Any

import cdk8s
import cdk8s_plus_27 as kplus
import jsii
from cdk8s_plus_27 import k8s

from constructs import Construct, IValidation
from constructs.checks import Range, fail, props
from constructs.kube import ADDR_LABEL_PATH
from constructs.naming import Component
from constructs.placement import apply_pod_settings
from constructs.pod_security import harden, pod_spec_path
from constructs.props import PodSettings, Resources, resources
from constructs.quantities import parse_cpu, parse_memory

Workload = kplus.Deployment | kplus.StatefulSet | kplus.Job | kplus.CronJob

# Init containers only run a wait loop; tiny requests keep the pod's effective
# request (max of init containers vs. sum of app containers) unchanged.
WAIT_RESOURCES = resources("10m", "16Mi", "100m", "64Mi")

# What the API server freezes in a Job once it exists (kubernetes pkg/apis/batch/validation):
# a change there must make a new Job. app/apply_rules.py checks the same fields.
JOB_FROZEN_FIELDS = ("template", "selector", "completions")


@functools.cache  # Resources is frozen (hashable); see the note on jsii round trips in kube.py
def container_resources(res: Resources) -> kplus.ContainerResources:
    """cdk8s-plus resources for a container. Memory goes through cdk8s-plus in whole Mi (its
    Size type); `exact_resources` writes the quantities back exactly as configured."""
    mebibytes = 2**20

    def size(quantity: str) -> cdk8s.Size:
        return cdk8s.Size.mebibytes(max(1, parse_memory(quantity) // mebibytes))

    return kplus.ContainerResources(
        cpu=kplus.CpuResources(
            request=kplus.Cpu.millis(parse_cpu(res.requests.cpu)),
            limit=kplus.Cpu.millis(parse_cpu(res.limits.cpu)),
        ),
        memory=kplus.MemoryResources(request=size(res.requests.memory), limit=size(res.limits.memory)),
    )


def resources_manifest(res: Resources) -> dict[str, dict[str, dict[str, str]]]:
    """A container's `resources` exactly as configured (`400M` stays `400M`, `0.5` stays
    `0.5`), in the form a JSON patch of a cdk8s-plus workload takes: cdk8s-plus's Kubernetes
    bindings read each quantity's `value` (a plain string would be dropped)."""
    return {
        "limits": {"cpu": {"value": res.limits.cpu}, "memory": {"value": res.limits.memory}},
        "requests": {"cpu": {"value": res.requests.cpu}, "memory": {"value": res.requests.memory}},
    }


def pull_policy(policy: str) -> kplus.ImagePullPolicy:
    return {
        "IfNotPresent": kplus.ImagePullPolicy.IF_NOT_PRESENT,
        "Always": kplus.ImagePullPolicy.ALWAYS,
        "Never": kplus.ImagePullPolicy.NEVER,
    }[policy]


def pod_security(uid: int, gid: int) -> kplus.PodSecurityContextProps:
    """Run the pod as the image's own unprivileged user; fsGroup makes volumes writable
    for it without the root-only chown that the images' entrypoints would do."""
    return kplus.PodSecurityContextProps(ensure_non_root=True, user=uid, group=gid, fs_group=gid)


def container_security(uid: int, gid: int) -> kplus.ContainerSecurityContextProps:
    """Non-root, read-only root filesystem, no privilege escalation. Capabilities and
    seccomp are added to every container by the hardening (`finish`)."""
    return kplus.ContainerSecurityContextProps(
        ensure_non_root=True,
        user=uid,
        group=gid,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
    )


def command_probe(command: Sequence[str], period: int, failures: int, timeout: int = 5) -> kplus.Probe:
    return kplus.Probe.from_command(
        list(command),
        period_seconds=cdk8s.Duration.seconds(period),
        failure_threshold=failures,
        timeout_seconds=cdk8s.Duration.seconds(timeout),
    )


def zero_downtime_rollout() -> kplus.DeploymentStrategy:
    """One extra pod first, an old one removed only when the new one is ready."""
    return kplus.DeploymentStrategy.rolling_update(
        max_surge=kplus.PercentOrAbsolute.absolute(1), max_unavailable=kplus.PercentOrAbsolute.absolute(0)
    )


# --- finishing a workload -------------------------------------------------------------------


def finish(
    workload: Workload,
    component: Component,
    *,
    pods: PodSettings,
    service_account: str | None,
    sizes: dict[str, Resources] | None = None,
    spread_by_default: bool = False,
    job_name: str | None = None,
) -> None:
    """Complete a workload the one way the stack does (module docstring). `sizes`: the
    configured resources of its containers by name, written exactly as given (the others keep
    what cdk8s-plus rendered); `job_name`: for a Job, the base of its name (`<job_name>-<hash>`)."""
    if isinstance(workload, kplus.Deployment | kplus.StatefulSet):
        workload.select(kplus.LabelSelector.of(labels=component.selector_labels))
    workload.node.add_validation(
        _FinishAtSynth(workload, component, pods, service_account, dict(sizes or {}), spread_by_default, job_name)
    )


@jsii.implements(IValidation)
class _FinishAtSynth:
    """Runs when the chart is synthesized (cdk8s validates every construct first). Idempotent:
    synthesizing twice, or once more after a change, adds only what is missing."""

    def __init__(
        self,
        workload: Workload,
        component: Component,
        pods: PodSettings,
        service_account: str | None,
        resources: dict[str, Resources],
        spread_by_default: bool,
        job_name: str | None,
    ) -> None:
        self.workload = workload
        self.component = component
        self.pods = pods
        self.service_account = service_account
        self.resources = resources
        self.spread_by_default = spread_by_default
        self.job_name = job_name
        self.placed = False

    def validate(self) -> list[str]:
        api_object = cdk8s.ApiObject.of(self.workload)
        if not self.placed:
            apply_pod_settings(self.workload, self.pods, self.component, self.spread_by_default)
            self._exact_resources(api_object)
            _drop_address_label(api_object)
            self.placed = True
        harden(self.workload, self.service_account)
        if self.job_name is not None:
            name_by_frozen_fields(api_object, self.job_name)
        return self._made_twice()

    def _made_twice(self) -> list[str]:
        """Objects of the workload's construct whose kind and name another object of the chart
        has too (two constructs given the same Component): `kubectl apply` would make one
        object of the two, silently."""
        chart = cdk8s.Chart.of(self.workload)
        every: dict[tuple[str, str], int] = {}
        for node in chart.node.find_all():
            if isinstance(node, cdk8s.ApiObject):
                key = (node.kind, node.name)
                every[key] = every.get(key, 0) + 1
        scope = self.workload.node.scope
        assert scope is not None
        own = {(n.kind, n.name) for n in scope.node.find_all() if isinstance(n, cdk8s.ApiObject)}
        return [
            f"{kind} {name} is made twice in chart {chart.node.id}: give each construct its own Component"
            for kind, name in sorted(own)
            if every[(kind, name)] > 1
        ]

    def _exact_resources(self, api_object: cdk8s.ApiObject) -> None:
        manifest = api_object.to_json()
        path = pod_spec_path(manifest["kind"])
        assert path is not None
        spec: Any = manifest
        for part in path.strip("/").split("/"):
            spec = spec[part]
        patches = [
            cdk8s.JsonPatch.add(f"{path}/{key}/{index}/resources", resources_manifest(self.resources[c["name"]]))
            for key in ("initContainers", "containers")
            for index, c in enumerate(spec.get(key, []))
            if c["name"] in self.resources
        ]
        if patches:
            api_object.add_json_patch(*patches)


def _drop_address_label(api_object: cdk8s.ApiObject) -> None:
    """cdk8s-plus labels pod templates with the construct's path (`cdk8s.io/metadata.addr`).
    Nothing selects on it here (selectors use the standard labels), and it would change, and
    roll every pod, whenever the constructs are arranged differently in a chart."""
    manifest = api_object.to_json()
    path = pod_spec_path(manifest["kind"])
    assert path is not None
    meta_path = path.removesuffix("/spec") + "/metadata/labels"
    labels: Any = manifest
    for part in meta_path.strip("/").split("/"):
        labels = labels.get(part, {})
    if "cdk8s.io/metadata.addr" in labels:
        api_object.add_json_patch(cdk8s.JsonPatch.remove(f"{meta_path}/{ADDR_LABEL_PATH}"))


def name_by_frozen_fields(api_object: cdk8s.ApiObject, base_name: str) -> str:
    """Name a Job `<base_name>-<hash>` after everything the API server freezes in it (its
    pod template, selector and completions), as rendered with every patch applied. Any change
    there gives a new Job, which `kubectl apply` creates, rather than a changed one, which it
    would refuse."""
    spec = api_object.to_json()["spec"]
    frozen = {field: spec.get(field) for field in JOB_FROZEN_FIELDS}
    digest = hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{base_name}-{digest}"
    api_object.add_json_patch(cdk8s.JsonPatch.replace("/metadata/name", name))
    return name


# --- scaling and disruptions ----------------------------------------------------------------


@props
class CpuAutoscaling:
    """A HorizontalPodAutoscaler on CPU, for a Deployment that has one."""

    min_replicas: Annotated[int, Range(2, 50)] = 2
    """Fewest pods. Default: 2, so a rollout or a node drain never leaves none ready."""
    max_replicas: Annotated[int, Range(2, 100)] = 6
    """Most pods. Default: 6."""
    target_cpu_percent: Annotated[int, Range(10, 100)] = 75
    """The average CPU use it scales to keep, in % of the pods' CPU requests. Default: 75."""

    def __post_init__(self) -> None:
        if self.max_replicas < self.min_replicas:
            fail(self, "max_replicas", f"{self.max_replicas} is below min_replicas {self.min_replicas}")


def autoscale(
    scope: Construct, deployment: kplus.Deployment, component: Component, autoscaling: CpuAutoscaling
) -> k8s.KubeHorizontalPodAutoscalerV2:
    """A CPU-based HorizontalPodAutoscaler for `deployment`, which then leaves `replicas`
    out of its manifest: with it, every `kubectl apply` would reset the autoscaler's count."""
    cdk8s.ApiObject.of(deployment).add_json_patch(cdk8s.JsonPatch.remove("/spec/replicas"))
    return k8s.KubeHorizontalPodAutoscalerV2(
        scope,
        "autoscaler",
        metadata=k8s.ObjectMeta(name=component.name, labels=component.labels),
        spec=k8s.HorizontalPodAutoscalerSpecV2(
            scale_target_ref=k8s.CrossVersionObjectReferenceV2(
                api_version="apps/v1", kind="Deployment", name=deployment.name
            ),
            min_replicas=autoscaling.min_replicas,
            max_replicas=autoscaling.max_replicas,
            metrics=[
                k8s.MetricSpecV2(
                    type="Resource",
                    resource=k8s.ResourceMetricSourceV2(
                        name="cpu",
                        target=k8s.MetricTargetV2(
                            type="Utilization", average_utilization=autoscaling.target_cpu_percent
                        ),
                    ),
                )
            ],
        ),
    )


def disruption_budget(scope: Construct, component: Component) -> k8s.KubePodDisruptionBudget:
    """At most one pod of the component down at a time for voluntary disruptions (drains).

    maxUnavailable rather than minAvailable: with a single replica, minAvailable 1
    would block every node drain forever.
    """
    return k8s.KubePodDisruptionBudget(
        scope,
        "disruption-budget",
        metadata=k8s.ObjectMeta(name=component.name, labels=component.labels),
        spec=k8s.PodDisruptionBudgetSpec(
            max_unavailable=k8s.IntOrString.from_number(1),
            selector=k8s.LabelSelector(match_labels=component.selector_labels),
        ),
    )


__all__ = [
    "JOB_FROZEN_FIELDS",
    "WAIT_RESOURCES",
    "CpuAutoscaling",
    "autoscale",
    "command_probe",
    "container_resources",
    "container_security",
    "disruption_budget",
    "finish",
    "name_by_frozen_fields",
    "pod_security",
    "pull_policy",
    "resources_manifest",
    "zero_downtime_rollout",
]
