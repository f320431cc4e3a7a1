"""Pod settings (constructs/props.py PodSettings) applied to a workload's pod template.

cdk8s-plus models scheduling with its own objects; the settings here are given as plain
pod-spec fields by the user, so they are set with JSON patches on the synthesized pod
template, each field once. Web and worker spread softly across nodes and zones unless
told otherwise, so losing one node or zone never takes all of them.
"""

from __future__ import annotations

from typing import Any

import cdk8s
import cdk8s_plus_27 as kplus

from constructs.naming import Component
from constructs.pod_security import pod_spec_path
from constructs.props import PodSettings

SOFT_SPREAD_KEYS = ("kubernetes.io/hostname", "topology.kubernetes.io/zone")


def soft_spread(component: Component) -> list[dict[str, Any]]:
    """One pod per node and per zone where possible (ScheduleAnyway: never blocks scheduling,
    so a one-node minikube still runs every replica)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": component.selector_labels},
        }
        for key in SOFT_SPREAD_KEYS
    ]


def apply_pod_settings(
    workload: kplus.Deployment | kplus.StatefulSet | kplus.Job | kplus.CronJob,
    settings: PodSettings,
    component: Component,
    spread_by_default: bool = False,
) -> None:
    api_object = cdk8s.ApiObject.of(workload)
    manifest = api_object.to_json()
    spec_path = pod_spec_path(manifest["kind"])
    assert spec_path is not None
    meta_path = spec_path.removesuffix("/spec") + "/metadata"
    spread = settings.topology_spread_constraints
    if spread is None:
        spread = soft_spread(component) if spread_by_default else []
    else:
        selector = {"matchLabels": component.selector_labels}
        spread = [{"labelSelector": selector, **constraint} for constraint in spread]
    fields: dict[str, Any] = {
        "nodeSelector": settings.node_selector or None,
        "tolerations": settings.tolerations or None,
        "affinity": settings.affinity or None,
        "topologySpreadConstraints": spread or None,
        "priorityClassName": settings.priority_class_name,
        "imagePullSecrets": [{"name": n} for n in settings.image_pull_secrets or []] or None,
    }
    patches = [cdk8s.JsonPatch.add(f"{spec_path}/{key}", value) for key, value in fields.items() if value]
    template_meta = _at(manifest, meta_path)
    for key, extra in (("labels", settings.labels), ("annotations", settings.annotations)):
        if extra:
            patches.append(cdk8s.JsonPatch.add(f"{meta_path}/{key}", {**template_meta.get(key, {}), **extra}))
    if patches:
        api_object.add_json_patch(*patches)


def _at(manifest: dict[str, Any], pointer: str) -> dict[str, Any]:
    node: Any = manifest
    for part in pointer.strip("/").split("/"):
        node = node[part]
    return node
