"""Small helpers for the objects around the pods: metadata, Services, claims, environment
values, embedded scripts, durations and schedules.

Each exists to override one cdk8s-plus default in a single place, or to keep one fact:
- selectors use only cdk8s-plus's `cdk8s.io/metadata.addr` hash label: Services here select
  the standard `app.kubernetes.io/*` labels instead (naming.py);
- a claim's size must be a `k8s.Quantity` (a plain string is silently synthesized as null);
- every jsii call is a round trip to node, so immutable env values are made once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import cdk8s
import cdk8s_plus_27 as kplus
from cdk8s_plus_27 import k8s

from constructs import Construct
from constructs.checks import cron_fields
from constructs.naming import Component
from constructs.props import Storage

SCRIPTS_DIR = Path(__file__).parent / "scripts"
ADDR_LABEL_PATH = "cdk8s.io~1metadata.addr"  # JSON-pointer form of cdk8s's hash label


def script(name: str) -> str:
    """The text of a shell script shipped in constructs/scripts, embedded into a manifest."""
    return (SCRIPTS_DIR / f"{name}.sh").read_text(encoding="utf-8")


def shell_command(name: str) -> list[str]:
    return ["/bin/sh", "-ec", script(name)]


def bash_command(name: str) -> list[str]:
    """For scripts that need bash (pipefail); the postgres and sentry images have it."""
    return ["/bin/bash", "-c", script(name)]


def metadata(component: Component, name: str | None = None, **annotations: str) -> cdk8s.ApiObjectMetadata:
    return cdk8s.ApiObjectMetadata(
        name=name or component.name,
        labels=component.labels,
        annotations=dict(annotations) or None,
    )


def pod_metadata(component: Component, annotations: Mapping[str, str] | None = None) -> cdk8s.ApiObjectMetadata:
    return cdk8s.ApiObjectMetadata(labels=component.labels, annotations=dict(annotations or {}) or None)


def service_for(
    scope: Construct,
    component: Component,
    ports: Sequence[kplus.ServicePort],
    service_type: kplus.ServiceType = kplus.ServiceType.CLUSTER_IP,
    name: str | None = None,
    annotations: Mapping[str, str] | None = None,
    pods: Component | None = None,
) -> kplus.Service:
    """A Service of `component`, selecting the pods of `pods` (default: the same component)."""
    service = kplus.Service(
        scope,
        "service",
        metadata=metadata(component, name, **(annotations or {})),
        ports=list(ports),
        type=service_type,
    )
    for key, value in (pods or component).selector_labels.items():
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


def cron(expression: str) -> cdk8s.Cron:
    """A five-field schedule (a macro expanded; checked by constructs/checks.py) as a cdk8s Cron."""
    minute, hour, day, month, week_day = cron_fields(expression)
    return cdk8s.Cron.schedule(minute=minute, hour=hour, day=day, month=month, week_day=week_day)


def service_monitor(
    scope: Construct, comp: Component, port: str, path: str, interval_seconds: int, labels: Mapping[str, str]
) -> cdk8s.ApiObject:
    """A Prometheus Operator ServiceMonitor for the Service of `comp` (its selector labels), as
    a plain ApiObject: the stack imports no CRD, and the kind exists only where the Operator
    is installed."""
    monitor = cdk8s.ApiObject(
        scope,
        "service-monitor",
        api_version="monitoring.coreos.com/v1",
        kind="ServiceMonitor",
        metadata=cdk8s.ApiObjectMetadata(name=comp.name, labels={**comp.labels, **labels}),
    )
    monitor.add_json_patch(
        cdk8s.JsonPatch.add(
            "/spec",
            {
                "selector": {"matchLabels": comp.selector_labels},
                "endpoints": [{"port": port, "path": path, "interval": f"{interval_seconds}s"}],
            },
        )
    )
    return monitor


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
