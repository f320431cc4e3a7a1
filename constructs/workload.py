"""Small helpers shared by the workload constructs.

cdk8s-plus-27 has defaults that are wrong for this stack, and each helper here
exists to override one of them in a single place:
- containers without `resources` get 1 CPU / 512Mi requests: we always set them;
- `imagePullPolicy` defaults to Always: we pass the configured policy;
- a container with a port gets a 3-failure TCP startupProbe, which kills a slow
  Sentry before it is up: we always give an explicit startup probe;
- selectors use only the `cdk8s.io/metadata.addr` hash label: we select on the
  standard `app.kubernetes.io/*` labels instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cdk8s
import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.naming import Component
from constructs.props import Resources, Storage
from constructs.quantities import parse_cpu, parse_memory
from imports import k8s

SCRIPTS_DIR = Path(__file__).parent / "scripts"


def script(name: str) -> str:
    """The text of a shell script shipped in constructs/scripts, embedded into a manifest."""
    return (SCRIPTS_DIR / f"{name}.sh").read_text(encoding="utf-8")


def shell_command(name: str) -> list[str]:
    return ["/bin/sh", "-ec", script(name)]


def bash_command(name: str) -> list[str]:
    """For scripts that need bash (pipefail); the postgres and sentry images have it."""
    return ["/bin/bash", "-c", script(name)]


@functools.cache  # Resources is frozen (hashable); see the note on jsii round trips below
def container_resources(res: Resources) -> kplus.ContainerResources:
    return kplus.ContainerResources(
        cpu=kplus.CpuResources(
            request=kplus.Cpu.millis(parse_cpu(res.requests.cpu)),
            limit=kplus.Cpu.millis(parse_cpu(res.limits.cpu)),
        ),
        memory=kplus.MemoryResources(
            request=cdk8s.Size.mebibytes(parse_memory(res.requests.memory) // 2**20),
            limit=cdk8s.Size.mebibytes(parse_memory(res.limits.memory) // 2**20),
        ),
    )


# Init containers only run a wait loop; tiny requests keep the pod's effective
# request (max of init containers vs. sum of app containers) unchanged.
WAIT_RESOURCES = Resources.model_validate(
    {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
)


def pull_policy(policy: str) -> kplus.ImagePullPolicy:
    return {
        "IfNotPresent": kplus.ImagePullPolicy.IF_NOT_PRESENT,
        "Always": kplus.ImagePullPolicy.ALWAYS,
        "Never": kplus.ImagePullPolicy.NEVER,
    }[policy]


def metadata(component: Component, name: str | None = None, **annotations: str) -> cdk8s.ApiObjectMetadata:
    return cdk8s.ApiObjectMetadata(
        name=name or component.name,
        labels=component.labels,
        annotations=dict(annotations) or None,
    )


def pod_metadata(component: Component, annotations: Mapping[str, str] | None = None) -> cdk8s.ApiObjectMetadata:
    return cdk8s.ApiObjectMetadata(labels=component.labels, annotations=dict(annotations or {}) or None)


ADDR_LABEL_PATH = "cdk8s.io~1metadata.addr"  # JSON-pointer form of cdk8s's hash label


def select(workload: kplus.Deployment | kplus.StatefulSet, component: Component) -> None:
    """Select pods by the stable standard labels (see naming.py)."""
    workload.select(kplus.LabelSelector.of(labels=component.selector_labels))


def service_for(
    scope: Construct,
    component: Component,
    ports: Sequence[kplus.ServicePort],
    service_type: kplus.ServiceType = kplus.ServiceType.CLUSTER_IP,
    name: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> kplus.Service:
    service = kplus.Service(
        scope,
        "service",
        metadata=metadata(component, name, **(annotations or {})),
        ports=list(ports),
        type=service_type,
    )
    for key, value in component.selector_labels.items():
        service.select_label(key, value)
    # Binding a StatefulSet to its Service adds the hash label to the selector; the
    # standard labels above already select exactly these pods.
    cdk8s.ApiObject.of(service).add_json_patch(cdk8s.JsonPatch.remove(f"/spec/selector/{ADDR_LABEL_PATH}"))
    return service


# Every jsii call is a round trip to the node process (~0.4 ms). The same env values
# appear in many containers, and an EnvValue is immutable, so each is made once.
# The cache holds the secret object itself, so its id() cannot be reused by another.
_SECRET_ENV: dict[tuple[int, str], tuple[kplus.ISecret, kplus.EnvValue]] = {}


def secret_env(secret: kplus.ISecret, key: str) -> kplus.EnvValue:
    cache_key = (id(secret), key)
    if cache_key not in _SECRET_ENV:
        value = kplus.EnvValue.from_secret_value(kplus.SecretValue(secret=secret, key=key))
        _SECRET_ENV[cache_key] = (secret, value)
    return _SECRET_ENV[cache_key][1]


@functools.cache
def _value_env(value: str) -> kplus.EnvValue:
    return kplus.EnvValue.from_value(value)


def plain_env(values: Mapping[str, str]) -> dict[str, kplus.EnvValue]:
    return {k: _value_env(v) for k, v in values.items()}


@functools.cache
def seconds(value: int) -> cdk8s.Duration:
    return cdk8s.Duration.seconds(value)


def patch(construct: Construct, path: str, value: object) -> None:
    """Set a field cdk8s-plus has no API for (e.g. volumeClaimTemplates, seccompProfile)."""
    cdk8s.ApiObject.of(construct).add_json_patch(cdk8s.JsonPatch.add(path, value))


JOB_FROZEN_FIELDS = ("template", "selector", "completions")


def name_by_pod_template(job: kplus.Job, base_name: str) -> str:
    """Name a Job `<base_name>-<hash>` after everything the API server freezes in it (its
    pod template, selector and completions), as rendered with every patch applied: call
    it after the chart is complete (hardening included). Any change there gives a new Job,
    which `kubectl apply` creates, rather than a changed one, which it would refuse."""
    api_object = cdk8s.ApiObject.of(job)
    spec = api_object.to_json()["spec"]
    frozen = {field: spec.get(field) for field in JOB_FROZEN_FIELDS}
    digest = hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{base_name}-{digest}"
    api_object.add_json_patch(cdk8s.JsonPatch.replace("/metadata/name", name))
    return name


def claim(scope: Construct, id: str, name: str, comp: Component, storage: Storage) -> k8s.KubePersistentVolumeClaim:
    """A PersistentVolumeClaim managed as an object of its own, so that `kubectl apply` can
    grow it (a StatefulSet's volumeClaimTemplates are frozen, and never resize a claim).
    The size must be a k8s.Quantity: a plain string is silently synthesized as null."""
    return k8s.KubePersistentVolumeClaim(
        scope,
        id,
        metadata=k8s.ObjectMeta(name=name, labels=comp.labels),
        spec=k8s.PersistentVolumeClaimSpec(
            access_modes=[storage.access_mode],
            storage_class_name=storage.storage_class,
            resources=k8s.ResourceRequirements(requests={"storage": k8s.Quantity.from_string(storage.size)}),
        ),
    )


def statefulset_claim_name(comp: Component, volume: str = "data") -> str:
    """The name a claim template `volume` would give the StatefulSet's only pod. The stack's
    own claims keep it, so that volumes made by earlier volumeClaimTemplates are adopted."""
    return f"{volume}-{comp.name}-0"


def claim_volume(scope: Construct, id: str, claim_name: str, name: str, read_only: bool = False) -> kplus.Volume:
    ref = kplus.PersistentVolumeClaim.from_claim_name(scope, f"{id}-ref", claim_name)
    return kplus.Volume.from_persistent_volume_claim(scope, id, ref, name=name, read_only=read_only)


_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def cron(expression: str) -> cdk8s.Cron:
    """A validated five-field schedule (config.py checks it) as a cdk8s Cron."""
    minute, hour, day, month, week_day = _CRON_MACROS.get(expression, expression).split()
    return cdk8s.Cron.schedule(minute=minute, hour=hour, day=day, month=month, week_day=week_day)


@dataclass(frozen=True)
class CpuAutoscaling:
    """A HorizontalPodAutoscaler on CPU, for a Deployment that has one."""

    min_replicas: int = 2
    """Fewest pods. Default: 2, so a rollout or a node drain never leaves none ready."""
    max_replicas: int = 6
    """Most pods. Default: 6."""
    target_cpu_percent: int = 75
    """The average CPU use it scales to keep, in % of the pods' CPU requests. Default: 75."""


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


def pod_security(uid: int, gid: int) -> kplus.PodSecurityContextProps:
    """Run the pod as the image's own unprivileged user; fsGroup makes volumes writable
    for it without the root-only chown that the images' entrypoints would do."""
    return kplus.PodSecurityContextProps(ensure_non_root=True, user=uid, group=gid, fs_group=gid)


def container_security(uid: int, gid: int) -> kplus.ContainerSecurityContextProps:
    """Non-root, read-only root filesystem, no privilege escalation. Capabilities and
    seccomp are added to every container by pod_security.harden_workloads."""
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
        list(command), period_seconds=seconds(period), failure_threshold=failures, timeout_seconds=seconds(timeout)
    )


def zero_downtime_rollout() -> kplus.DeploymentStrategy:
    """One extra pod first, an old one removed only when the new one is ready."""
    return kplus.DeploymentStrategy.rolling_update(
        max_surge=kplus.PercentOrAbsolute.absolute(1), max_unavailable=kplus.PercentOrAbsolute.absolute(0)
    )
