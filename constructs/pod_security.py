"""Pod hardening shared by every workload, applied in one pass, and the checkov skip table.

The workload constructs set what differs per image: the user and group each image
runs as, a read-only root filesystem with emptyDir mounts where the process writes,
no privilege escalation. `harden` adds the rest to the pod template; every workload
construct has it run when the chart is synthesized (workload.finish), so a construct used
on its own is hardened too, and so is a container added later through an escape hatch:
- seccompProfile RuntimeDefault on the pod (cdk8s-plus has no API for it);
- `capabilities: {drop: [ALL]}` on every container and init container: none of the
  images needs one once it starts as its own user (only the images' root-to-user
  step, chown + gosu, needs CAP_CHOWN/SETUID/SETGID, and that step is skipped). A
  non-root process with no_new_privs holds no capability anyway; dropping ALL also
  empties the bounding set, so none can be regained;
- the stack's own ServiceAccount (when given), with no token mounted: no pod calls the
  API server;
- `enableServiceLinks: false`: otherwise the kubelet gives every container Docker-link
  variables for every Service of the namespace, named after the Service (a Service
  `sentry-web` sets SENTRY_WEB_PORT=tcp://10.96.0.13:9000), which overwrite settings the
  images read from their environment (Sentry stopped at start with "SENTRY_WEB_PORT must be
  a whole number"). Nothing in the stack finds a Service other than by its DNS name;
- the checkov skips that apply to the object, as `checkov.io/skipN` annotations whose
  reasons come from CHECKOV_SKIPS below (docs/security.md's table is generated from it).

All of this together meets the Pod Security Standards' `restricted` level, which the
namespace enforces (POD_SECURITY_LABELS; tests/test_security.py checks the rules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cdk8s
from cdk8s_plus_27 import k8s

from constructs import Construct
from constructs.naming import Component

POD_SECURITY_LEVEL = "restricted"
# Enforce pinned to the API level the manifests are written for (cdk8s-plus-27), so a
# cluster upgrade never starts rejecting pods by itself; warn and audit follow the
# cluster's newest rules, so a tightened rule shows up as a warning first.
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": POD_SECURITY_LEVEL,
    "pod-security.kubernetes.io/enforce-version": "v1.27",
    "pod-security.kubernetes.io/warn": POD_SECURITY_LEVEL,
    "pod-security.kubernetes.io/warn-version": "latest",
    "pod-security.kubernetes.io/audit": POD_SECURITY_LEVEL,
    "pod-security.kubernetes.io/audit-version": "latest",
}

SECCOMP_PROFILE = {"type": "RuntimeDefault"}
CAPABILITIES = {"drop": ["ALL"]}
SERVICE_ACCOUNT_COMPONENT = "serviceaccount"
"""The ServiceAccount's component: it is named `<release>-serviceaccount`."""

_POD_SPEC_PATHS = {
    "Deployment": "/spec/template/spec",
    "StatefulSet": "/spec/template/spec",
    "DaemonSet": "/spec/template/spec",
    "Job": "/spec/template/spec",
    "CronJob": "/spec/jobTemplate/spec/template/spec",
}


def pod_spec_path(kind: str) -> str | None:
    """JSON pointer of the pod spec inside an object of this kind (None: not a workload)."""
    return _POD_SPEC_PATHS.get(kind)


def pod_specs(manifest: dict) -> list[dict]:
    """The pod spec inside a workload manifest, as a list (empty for other objects)."""
    return [_pod_spec(manifest)] if pod_spec_path(manifest.get("kind", "")) is not None else []


def _pod_spec(manifest: dict) -> dict:
    spec: dict = manifest
    for part in _POD_SPEC_PATHS[manifest["kind"]].strip("/").split("/"):
        spec = spec[part]
    return spec


def _containers(manifest: dict, init: bool = True) -> list[dict]:
    spec = _pod_spec(manifest)
    return (spec.get("initContainers", []) if init else []) + spec.get("containers", [])


def _long_running(manifest: dict) -> bool:
    return manifest["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}


@dataclass(frozen=True)
class CheckovSkip:
    """A checkov check the stack does not meet, why, and on which objects."""

    check: str
    title: str
    """checkov's own title of the check."""
    reason: str
    """Why it cannot be met; written into the object's annotation and the README."""
    where: str
    """Which objects it is skipped on, in words (docs/security.md)."""
    applies: Callable[[dict], bool]
    """Whether the skip is needed on this synthesized workload object."""


CHECKOV_SKIPS: tuple[CheckovSkip, ...] = (
    CheckovSkip(
        "CKV_K8S_8",
        "Liveness Probe Should be Configured",
        "Celery worker and beat serve no port to probe; a failed process exits and the kubelet restarts it",
        "Deployments with a container that serves no port (worker, cron)",
        lambda m: _long_running(m) and any("livenessProbe" not in c for c in _containers(m, init=False)),
    ),
    CheckovSkip(
        "CKV_K8S_9",
        "Readiness Probe Should be Configured",
        "Celery worker and beat serve no port and no Service routes to them, so there is nothing to be ready for",
        "Deployments with a container that serves no port (worker, cron)",
        lambda m: _long_running(m) and any("readinessProbe" not in c for c in _containers(m, init=False)),
    ),
    CheckovSkip(
        "CKV_K8S_15",
        "Image Pull Policy should be Always",
        "images are pinned by tag and the login image exists only inside the cluster's runtime "
        "(minikube image build), so the policy is sentry.image_pull_policy, IfNotPresent by default",
        "every workload, unless `sentry.image_pull_policy` is Always",
        lambda m: any(c.get("imagePullPolicy") != "Always" for c in _containers(m)),
    ),
    CheckovSkip(
        "CKV_K8S_35",
        "Prefer using secrets as files over secrets as environment variables",
        "Sentry 9.1's settings, libpq and the PostgreSQL and Redis start-up read credentials from "
        "the environment; every value comes from the Secret by secretKeyRef, none is in the manifest",
        "every workload that reads the Secret",
        lambda m: any("secretKeyRef" in e.get("valueFrom", {}) for c in _containers(m) for e in c.get("env", [])),
    ),
    CheckovSkip(
        "CKV_K8S_40",
        "Containers should run as a high UID to avoid host conflict",
        "the pods run as the images' own unprivileged users, uid 999 in the sentry, postgres and redis "
        "images, so files keep the owner the images expect; never root, no capabilities, no privilege escalation",
        "every workload running as uid 999",
        lambda m: any(
            c.get("securityContext", {}).get("runAsUser", _pod_spec(m).get("securityContext", {}).get("runAsUser", 0))
            < 10000
            for c in _containers(m)
        ),
    ),
    CheckovSkip(
        "CKV_K8S_43",
        "Image should use digest",
        "no digest is known for the images pinned by tag (the login image is built locally); "
        "give an image as name:tag@sha256:... in the values file and this skip disappears",
        "every workload with an image given without a digest",
        lambda m: any("@sha256:" not in c["image"] for c in _containers(m)),
    ),
)


def checkov_skip_annotations(manifest: dict) -> dict[str, str]:
    """`checkov.io/skipN: CHECK=reason` for each skip that applies to this workload object."""
    if pod_spec_path(manifest["kind"]) is None:
        return {}
    needed = [s for s in CHECKOV_SKIPS if s.applies(manifest)]
    return {f"checkov.io/skip{i}": f"{s.check}={s.reason}" for i, s in enumerate(needed, start=1)}


def checkov_skip_table() -> str:
    """The docs' table of skips (docs/security.md), generated from CHECKOV_SKIPS."""
    lines = ["| check | title | skipped on | reason |", "| --- | --- | --- | --- |"]
    lines += [f"| {s.check} | {s.title} | {s.where} | {s.reason} |" for s in CHECKOV_SKIPS]
    return "\n".join(lines)


def service_account(
    scope: Construct, component: Component, annotations: dict[str, str] | None = None
) -> k8s.KubeServiceAccount:
    """The stack's own ServiceAccount: no RBAC binding, no token mounted by default, with the
    given `annotations` (a cloud identity in them goes unused: Sentry 9.1.2's buckets take keys,
    see constructs/props.py)."""
    return k8s.KubeServiceAccount(
        scope,
        "service-account",
        metadata=k8s.ObjectMeta(name=component.name, labels=component.labels, annotations=annotations or None),
        automount_service_account_token=False,
    )


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def harden(workload: Construct, service_account: str | None) -> None:
    """Apply the shared hardening (module docstring) to one workload, as it is now: each field
    is added only where it is missing, so running it again after a container was added
    hardens that container and changes nothing else. `service_account`: the pods'
    ServiceAccount; None keeps the namespace's default one (with no token mounted either way)."""
    api_object = cdk8s.ApiObject.of(workload)
    manifest = api_object.to_json()
    path = pod_spec_path(manifest["kind"])
    assert path is not None, manifest["kind"]
    spec = _pod_spec(manifest)
    patches = [
        cdk8s.JsonPatch.add(f"{path}/{field}", False)
        for field in ("automountServiceAccountToken", "enableServiceLinks")
        if spec.get(field) is not False
    ]
    if service_account is not None and spec.get("serviceAccountName") != service_account:
        patches.append(cdk8s.JsonPatch.add(f"{path}/serviceAccountName", service_account))
    context = spec.get("securityContext")
    if context is None:
        patches.append(cdk8s.JsonPatch.add(f"{path}/securityContext", {"seccompProfile": dict(SECCOMP_PROFILE)}))
    elif context.get("seccompProfile") != SECCOMP_PROFILE:
        patches.append(cdk8s.JsonPatch.add(f"{path}/securityContext/seccompProfile", dict(SECCOMP_PROFILE)))
    for key in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(key, [])):
            drop = {"drop": list(CAPABILITIES["drop"])}
            own = container.get("securityContext")
            if own is None:
                patches.append(cdk8s.JsonPatch.add(f"{path}/{key}/{index}/securityContext", {"capabilities": drop}))
            elif own.get("capabilities") != CAPABILITIES:
                patches.append(cdk8s.JsonPatch.add(f"{path}/{key}/{index}/securityContext/capabilities", drop))
    annotations = manifest["metadata"].get("annotations")
    skips = checkov_skip_annotations(manifest)
    if skips and annotations is None:
        patches.append(cdk8s.JsonPatch.add("/metadata/annotations", skips))
    elif skips:
        patches += [
            cdk8s.JsonPatch.add(f"/metadata/annotations/{_pointer(k)}", v)
            for k, v in skips.items()
            if annotations.get(k) != v
        ]
    if patches:
        api_object.add_json_patch(*patches)


def unhardened(manifests: list[dict]) -> list[str]:
    """Workloads (as synthesized) that miss part of the hardening: the stack checks its
    charts with this, so a construct that forgot to call `harden` fails the synth."""
    missing = []
    for manifest in manifests:
        if pod_spec_path(manifest.get("kind", "")) is None:
            continue
        spec = _pod_spec(manifest)
        containers = spec.get("initContainers", []) + spec.get("containers", [])
        if (
            spec.get("securityContext", {}).get("seccompProfile") != SECCOMP_PROFILE
            or spec.get("automountServiceAccountToken") is not False
            or spec.get("enableServiceLinks") is not False
            or any(c.get("securityContext", {}).get("capabilities") != CAPABILITIES for c in containers)
        ):
            missing.append(f"{manifest['kind']} {manifest['metadata']['name']}")
    return missing
