"""Value types the constructs' props share, with the checks they carry.

A construct's props (beside the construct, in its own module) are frozen, keyword-only
dataclasses made with `@props` (constructs/checks.py): every field is checked on
construction. The few values several constructs take (resources, a volume, pod placement,
Sentry's mail, login and object-store settings) are the props classes here. The values
model (app/config.py) is generated from the same classes for these, and takes every other
default from the props, so each default and each check is written once, beside the
construct that uses it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import field
from typing import Annotated, Any, Literal

from constructs.checks import (
    Check,
    ConfigurationConflict,
    CpuQuantity,
    HostName,
    HostOrIp,
    KubeName,
    MemoryQuantity,
    Port,
    PullPolicy,
    VolumeSize,
    fail,
    props,
)
from constructs.quantities import parse_cpu, parse_memory

__all__ = [
    "ConfigurationConflict",
    "GcsFilestore",
    "GithubConfig",
    "GitlabConfig",
    "PodSettings",
    "PullPolicy",
    "ResourceAmounts",
    "Resources",
    "S3Filestore",
    "SmtpConfig",
    "Storage",
    "prop_default",
    "resources",
]


@props
class ResourceAmounts:
    """An amount of CPU and memory."""

    cpu: CpuQuantity
    """CPU: millicores like 250m, or cores like 1 or 0.5."""
    memory: MemoryQuantity
    """Memory: a number with an optional unit Ki, Mi, Gi, Ti, Pi, k, M, G, T or P (e.g. 512Mi)."""


@props
class Resources:
    """Requests reserve node capacity for scheduling; limits cap what the container may use."""

    requests: ResourceAmounts
    """What the scheduler reserves on the node."""
    limits: ResourceAmounts
    """What the container may use at most (at least the requests)."""

    def __post_init__(self) -> None:
        if parse_cpu(self.limits.cpu) < parse_cpu(self.requests.cpu):
            fail(
                self,
                "limits",
                f"limits.cpu {self.limits.cpu} is below requests.cpu {self.requests.cpu}: "
                "a limit must be at least the request",
            )
        if parse_memory(self.limits.memory) < parse_memory(self.requests.memory):
            fail(
                self,
                "limits",
                f"limits.memory {self.limits.memory} is below requests.memory {self.requests.memory}: "
                "a limit must be at least the request",
            )


def resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> Resources:
    return Resources(
        requests=ResourceAmounts(cpu=cpu_request, memory=memory_request),
        limits=ResourceAmounts(cpu=cpu_limit, memory=memory_limit),
    )


@props
class Storage:
    """A PersistentVolumeClaim's size, class and access mode."""

    size: VolumeSize
    """Requested capacity of the PersistentVolumeClaim."""
    storage_class: KubeName | None = None
    """StorageClass name; None uses the cluster's default class. Fixed once the volume exists
    (see docs/operations.md, Volumes). Default: None."""
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = "ReadWriteOnce"
    """PVC access mode. Default: ReadWriteOnce."""


_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_AFFINITY_KEYS = {"nodeAffinity", "podAffinity", "podAntiAffinity"}
_SPREAD_KEYS = {
    "maxSkew",
    "topologyKey",
    "whenUnsatisfiable",
    "labelSelector",
    "minDomains",
    "nodeAffinityPolicy",
    "nodeTaintsPolicy",
    "matchLabelKeys",
}
_SPREAD_REQUIRED = {"maxSkew", "topologyKey", "whenUnsatisfiable"}
_OWN_LABEL_PREFIX = "app.kubernetes.io/"


def _keys_within(
    items: list[Mapping[str, Any]], allowed: set[str], what: str, required: frozenset = frozenset()
) -> str:
    for index, item in enumerate(items):
        unknown = sorted(set(item) - allowed)
        missing = sorted(required - set(item))
        if unknown or missing:
            problem = f"unknown keys {unknown}" if unknown else f"missing {missing}"
            return f"{what}[{index}]: {problem} (allowed: {', '.join(sorted(allowed))})"
    return ""


@props
class PodSettings:
    """Where and how pods are placed, and what they carry. Top-level `pods` is the default for
    every pod of the stack; `pods` under a workload (sentry.web, postgres, ...) replaces a key
    of it for that workload. Unset (None) keys inherit."""

    node_selector: dict[str, str] | None = field(default=None, metadata={"examples": [{"workload": "sentry"}]})
    """Node labels the pods must run on. Default: None."""
    tolerations: list[dict[str, Any]] | None = field(
        default=None,
        metadata={"examples": [[{"key": "dedicated", "operator": "Equal", "value": "sentry", "effect": "NoSchedule"}]]},
    )
    """Tolerations, as in a pod spec (key, operator, value, effect, tolerationSeconds). Default: None."""
    affinity: dict[str, Any] | None = field(
        default=None,
        metadata={
            "examples": [
                {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            ]
        },
    )
    """Affinity, as in a pod spec (nodeAffinity, podAffinity, podAntiAffinity). Default: None."""
    topology_spread_constraints: list[dict[str, Any]] | None = field(
        default=None,
        metadata={
            "examples": [
                [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}]
            ]
        },
    )
    """As in a pod spec; the labelSelector defaults to the workload's own pods. None: web and
    worker spread softly across nodes and zones, other pods are not spread; [] spreads none.
    Default: None."""
    priority_class_name: KubeName | None = None
    """PriorityClass of the pods. Default: None."""
    annotations: dict[str, str] | None = field(
        default=None, metadata={"examples": [{"example.com/team": "observability"}]}
    )
    """Extra pod annotations. Default: None."""
    labels: dict[str, str] | None = field(default=None, metadata={"examples": [{"cost-center": "ops"}]})
    """Extra pod labels (not app.kubernetes.io/*, which select the pods). Default: None."""
    image_pull_secrets: list[KubeName] | None = field(default=None, metadata={"examples": [["regcred"]]})
    """Secrets for pulling images from a private registry. Default: None."""

    def __post_init__(self) -> None:
        shapes = (
            ("tolerations", _keys_within(self.tolerations or [], _TOLERATION_KEYS, "tolerations")),
            ("affinity", _keys_within([self.affinity] if self.affinity else [], _AFFINITY_KEYS, "affinity")),
            (
                "topology_spread_constraints",
                _keys_within(
                    self.topology_spread_constraints or [],
                    _SPREAD_KEYS,
                    "topology_spread_constraints",
                    frozenset(_SPREAD_REQUIRED),
                ),
            ),
        )
        for prop, problem in shapes:
            if problem:
                fail(self, prop, problem)
        own = sorted(k for k in (self.labels or {}) if k.startswith(_OWN_LABEL_PREFIX))
        if own:
            fail(self, "labels", f"{own}: app.kubernetes.io/* labels are the stack's own (its selectors use them)")

    def over(self, default: PodSettings) -> PodSettings:
        """These settings, with every unset key taken from `default`."""
        return PodSettings(
            **{
                f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(default, f.name)
                for f in dataclasses.fields(PodSettings)
            }
        )


@props
class SmtpConfig:
    """Outgoing mail."""

    host: HostOrIp = ""
    """SMTP host; empty disables outgoing mail. Default: empty."""
    port: Port = 25
    """SMTP port. Default: 25."""
    user: str = ""
    """SMTP user; its password is `smtp-password` in the Secret. Default: empty (no login)."""
    use_tls: bool = False
    """STARTTLS. Default: false."""
    from_address: str = "sentry@localhost"
    """From address of Sentry's mail. Default: sentry@localhost."""


@props
class GithubConfig:
    """Sign in with GitHub, and the GitHub App integration."""

    login_enabled: bool = False
    """Offer 'Sign in with GitHub' (needs the plugin image, see docs/login.md). Default: false."""
    client_id: str = ""
    """OAuth client id of the GitHub App (not secret). Default: empty."""
    app_id: str = ""
    """GitHub App id, for the repository integration. Default: empty."""
    app_name: str = ""
    """GitHub App name (its URL slug). Default: empty."""
    require_verified_email: bool = True
    """Only a verified GitHub address signs in to the Sentry account that has it. Default: true."""

    def __post_init__(self) -> None:
        if self.login_enabled and not self.client_id:
            fail(self, "client_id", "is required when login_enabled is true")


@props
class GitlabConfig:
    """Sign in with GitLab."""

    login_enabled: bool = False
    """Offer 'Sign in with GitLab'. Default: false."""
    application_id: str = ""
    """GitLab OAuth application id (not secret). Default: empty."""
    base_domain: HostName = "gitlab.com"
    """GitLab host. Default: gitlab.com."""

    def __post_init__(self) -> None:
        if self.login_enabled and not self.application_id:
            fail(self, "application_id", "is required when login_enabled is true")


_BUCKET = r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"


def _bucket(value: str) -> None:
    if value and not re.fullmatch(_BUCKET, value):
        raise ValueError(f"{value!r} is not a bucket name: lower-case letters, digits, '.', '_' and '-'")


def _endpoint(value: str) -> None:
    if value and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
        raise ValueError(f"{value!r} is not an endpoint URL such as https://minio.example.com:9000")


Bucket = Annotated[str, Check(_bucket)]
Endpoint = Annotated[str, Check(_endpoint)]


# Why a bucket needs a key: Sentry 9.1.2 pins boto3<1.4.6 and botocore<1.5.71. That botocore
# finds credentials in the environment, config files, or the ECS (169.254.170.2) and EC2
# (169.254.169.254) metadata services; IAM roles for service accounts (a web identity token)
# arrived in botocore 1.12.200 / boto3 1.9.220, and EKS Pod Identity later still. Both
# metadata addresses are link-local, which the NetworkPolicies deny to every pod (on purpose:
# on EC2 the instance's credentials are the node's). GKE Workload Identity is served by the
# metadata server too (169.254.169.254, port 80), which google-auth's compute-engine
# credentials call. So no pod identity reaches a bucket: docs/cluster.md.
KEYLESS = (
    "Sentry 9.1.2 cannot reach a bucket with the pods' own identity: its boto3 1.4.5 / botocore "
    "1.5.70 know no web identity (IAM roles for service accounts need botocore 1.12.200), and the "
    "metadata service at 169.254.169.254, their only other source (and GKE Workload Identity's), "
    "is denied to every pod by the NetworkPolicies (docs/cluster.md)"
)


@props
class S3Filestore:
    """Sentry's `s3` filestore (boto3, in the stock image). Objects are written private."""

    bucket: Bucket = ""
    """Bucket name (required for this backend). Default: empty."""
    region: str = ""
    """Bucket region; empty uses the endpoint's default. Default: empty."""
    endpoint_url: Endpoint = ""
    """Endpoint of an S3-compatible store (MinIO, Ceph); empty for AWS. Default: empty."""
    access_key_id: str = ""
    """Access key id (not secret; the secret key is `filestore-s3-secret-access-key` in the
    Secret), required with a bucket: Sentry 9.1.2's boto3 cannot use the pods' own identity (IAM
    roles for service accounts). Default: empty."""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """path for most S3-compatible stores (MinIO). Default: auto."""

    def __post_init__(self) -> None:
        if self.bucket and not self.access_key_id:
            fail(self, "access_key_id", f"is required with a bucket: {KEYLESS}")


@props
class GcsFilestore:
    """Sentry's `gcs` filestore. Its library (google-cloud-storage) is not in the stock image:
    the stack uses the project's image (images/sentry-auth), which installs it."""

    bucket: Bucket = ""
    """Bucket name (required for this backend). Default: empty."""
    project_id: str = ""
    """Google Cloud project; empty takes it from the credentials. Default: empty."""
    key_file: bool = True
    """Read a service account key (`gcs-credentials` in the Secret). It must stay true: false
    (GKE Workload Identity, the pods' own identity) is refused, as no pod reaches the metadata
    server it needs. Default: true."""

    def __post_init__(self) -> None:
        if not self.key_file:
            fail(self, "key_file", f"must be true (a service account key, gcs-credentials): {KEYLESS}")


def prop_default(props_type: type, name: str) -> Any:
    """The documented default of one prop of a construct, so the values model can offer the
    same default without a second copy of it."""
    for f in dataclasses.fields(props_type):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{props_type.__name__}.{name} is required: it has no default")
    raise AttributeError(f"{props_type.__name__} has no prop {name}")
