"""Value types the constructs' props share, and the checks they carry.

A construct's props (beside the construct, in its own module) are frozen dataclasses whose
fields have documented defaults. The few values several constructs take, or that need
checking wherever they come from (resources, a volume, pod placement, Sentry's mail, login
and object-store settings), are the frozen, strict pydantic models here. The values model
(config.py) reuses them, and takes every other default from the props, so each default
is written once, beside the construct that uses it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from constructs.quantities import CPU_FORMAT, MEMORY_FORMAT, parse_cpu, parse_memory

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _dns_subdomain(value: str) -> str:
    """A Kubernetes object name (Secret, StorageClass, IngressClass): RFC 1123 subdomain."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes name: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return value


def host_name(value: str) -> str:
    """A DNS host name (RFC 1123), as an Ingress rule or a client connection names it."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value) or any(len(p) > 63 for p in value.split(".")):
        raise ValueError(
            f"{value!r} is not a host name: use lower-case letters, digits, '-' and '.', "
            "labels of at most 63 characters (e.g. sentry.example.com)"
        )
    return value


def host_or_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return host_name(value)
    return value


def _memory(value: str) -> str:
    parse_memory(value)
    return value


def _cpu(value: str) -> str:
    parse_cpu(value)
    return value


_CRON_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_CRON_ATOM = re.compile(r"^(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?$")
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _cron(value: str) -> str:
    """A five-field cron schedule as the CronJob controller accepts it."""
    text = value.strip()
    if text in _CRON_MACROS:
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"{value!r} is not a cron schedule: use five fields 'minute hour day-of-month month "
            f"day-of-week' (e.g. '0 3 * * *') or one of {', '.join(sorted(_CRON_MACROS))}"
        )
    for field, (low, high), name in zip(fields, _CRON_FIELD_RANGES, _CRON_NAMES, strict=True):
        for atom in field.split(","):
            match = _CRON_ATOM.match(atom)
            numbers = [int(n) for n in re.findall(r"[0-9]+", atom.split("/")[0])] if match else []
            if match is None or any(n < low or n > high for n in numbers):
                raise ValueError(
                    f"{value!r} is not a cron schedule: the {name} field {field!r} must use "
                    f"numbers {low}-{high}, '*', ranges a-b, lists a,b and steps /n"
                )
    return text


MemoryQuantity = Annotated[str, AfterValidator(_memory), Field(description=MEMORY_FORMAT)]
CpuQuantity = Annotated[str, AfterValidator(_cpu), Field(description=CPU_FORMAT)]
CronSchedule = Annotated[str, AfterValidator(_cron)]
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL, min_length=1, max_length=40)]
KubeName = Annotated[str, AfterValidator(_dns_subdomain)]


HostName = Annotated[str, AfterValidator(host_name)]
Image = Annotated[str, Field(min_length=1, pattern=r"^[^\s:@]+(:[A-Za-z0-9_.-]+)?(@sha256:[0-9a-f]{64})?$")]


class ConfigurationConflict(ValueError):
    """Settings that each validate but cannot be built together; the message names the field."""


class Model(BaseModel):
    """Base: frozen, unknown keys rejected, field names as written in values files.

    Strict: a value must already have the field's type. YAML turns `yes` into true and
    `1.5` into a float; lax validation would make those 1 and "1.5" without a word.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, strict=True)


class ResourceAmounts(Model):
    cpu: CpuQuantity = Field(description="CPU, e.g. 100m.")
    memory: MemoryQuantity = Field(description="Memory, e.g. 256Mi.")


class Resources(Model):
    """Requests reserve node capacity for scheduling; limits cap what the container may use."""

    requests: ResourceAmounts
    limits: ResourceAmounts

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        if parse_cpu(self.limits.cpu) < parse_cpu(self.requests.cpu):
            raise ValueError(
                f"limits.cpu {self.limits.cpu} is below requests.cpu {self.requests.cpu}: "
                "a limit must be at least the request"
            )
        if parse_memory(self.limits.memory) < parse_memory(self.requests.memory):
            raise ValueError(
                f"limits.memory {self.limits.memory} is below requests.memory "
                f"{self.requests.memory}: a limit must be at least the request"
            )
        return self


def resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> Resources:
    return Resources(
        requests=ResourceAmounts(cpu=cpu_request, memory=memory_request),
        limits=ResourceAmounts(cpu=cpu_limit, memory=memory_limit),
    )


class Storage(Model):
    size: MemoryQuantity = Field(description="Requested capacity of the PersistentVolumeClaim.")
    storage_class: KubeName | None = Field(
        default=None,
        description="StorageClass name; null uses the cluster's default class. Fixed once the volume "
        "exists (see docs/operations.md, Volumes).",
    )
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = Field(
        default="ReadWriteOnce", description="PVC access mode."
    )


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


def _keys_within(items: list[dict[str, Any]], allowed: set[str], what: str, required: set[str] = frozenset()) -> None:
    for index, item in enumerate(items):
        unknown = sorted(set(item) - allowed)
        missing = sorted(required - set(item))
        if unknown or missing:
            problem = f"unknown keys {unknown}" if unknown else f"missing {missing}"
            raise ValueError(f"{what}[{index}]: {problem} (allowed: {', '.join(sorted(allowed))})")


class PodSettings(Model):
    """Where and how pods are placed, and what they carry. Top-level `pods` is the default for
    every pod of the stack; `pods` under a workload (sentry.web, postgres, ...) replaces a key
    of it for that workload. Unset (null) keys inherit."""

    node_selector: dict[str, str] | None = Field(
        default=None, description="Node labels the pods must run on.", examples=[{"workload": "sentry"}]
    )
    tolerations: list[dict[str, Any]] | None = Field(
        default=None,
        description="Tolerations, as in a pod spec (key, operator, value, effect, tolerationSeconds).",
        examples=[[{"key": "dedicated", "operator": "Equal", "value": "sentry", "effect": "NoSchedule"}]],
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Affinity, as in a pod spec (nodeAffinity, podAffinity, podAntiAffinity).",
        examples=[
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                        ]
                    }
                }
            }
        ],
    )
    topology_spread_constraints: list[dict[str, Any]] | None = Field(
        default=None,
        examples=[[{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}]],
        description="As in a pod spec; the labelSelector defaults to the workload's own pods. Null: web "
        "and worker spread softly across nodes and zones, other pods are not spread; [] spreads none.",
    )
    priority_class_name: KubeName | None = Field(default=None, description="PriorityClass of the pods.")
    annotations: dict[str, str] | None = Field(
        default=None, description="Extra pod annotations.", examples=[{"example.com/team": "observability"}]
    )
    labels: dict[str, str] | None = Field(
        default=None,
        description="Extra pod labels (not app.kubernetes.io/*, which select the pods).",
        examples=[{"cost-center": "ops"}],
    )
    image_pull_secrets: list[KubeName] | None = Field(
        default=None, description="Secrets for pulling images from a private registry.", examples=[["regcred"]]
    )

    @model_validator(mode="after")
    def _pod_spec_shapes(self) -> PodSettings:
        _keys_within(self.tolerations or [], _TOLERATION_KEYS, "tolerations")
        _keys_within([self.affinity] if self.affinity else [], _AFFINITY_KEYS, "affinity")
        _keys_within(
            self.topology_spread_constraints or [], _SPREAD_KEYS, "topology_spread_constraints", _SPREAD_REQUIRED
        )
        own = sorted(k for k in (self.labels or {}) if k.startswith(_OWN_LABEL_PREFIX))
        if own:
            raise ValueError(f"labels {own}: app.kubernetes.io/* labels are the stack's own (its selectors use them)")
        return self

    def over(self, default: PodSettings) -> PodSettings:
        """These settings, with every unset key taken from `default`."""
        return PodSettings.model_validate(
            {
                name: getattr(self, name) if getattr(self, name) is not None else getattr(default, name)
                for name in PodSettings.model_fields
            }
        )


class SmtpConfig(Model):
    host: Annotated[str, AfterValidator(lambda v: v and host_or_ip(v))] = Field(
        default="", description="SMTP host; empty disables outgoing mail."
    )
    port: int = Field(default=25, ge=1, le=65535)
    user: str = Field(default="")
    use_tls: bool = Field(default=False)
    from_address: str = Field(default="sentry@localhost", description="From address of Sentry's mail.")


class GithubConfig(Model):
    login_enabled: bool = Field(
        default=False,
        description="Offer 'Sign in with GitHub' (needs the plugin image, see README).",
    )
    client_id: str = Field(default="", description="OAuth client id of the GitHub App (not secret).")
    app_id: str = Field(default="", description="GitHub App id, for the repository integration.")
    app_name: str = Field(default="", description="GitHub App name (its URL slug).")
    require_verified_email: bool = Field(default=True)

    @model_validator(mode="after")
    def _client_id_when_enabled(self) -> GithubConfig:
        if self.login_enabled and not self.client_id:
            raise ValueError("client_id is required when login_enabled is true")
        return self


class GitlabConfig(Model):
    login_enabled: bool = Field(default=False, description="Offer 'Sign in with GitLab'.")
    application_id: str = Field(default="", description="GitLab OAuth application id (not secret).")
    base_domain: HostName = Field(default="gitlab.com", description="GitLab host.")

    @model_validator(mode="after")
    def _app_id_when_enabled(self) -> GitlabConfig:
        if self.login_enabled and not self.application_id:
            raise ValueError("application_id is required when login_enabled is true")
        return self


_BUCKET = r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"


class S3Filestore(Model):
    """Sentry's `s3` filestore (boto3, in the stock image). Objects are written private."""

    bucket: Annotated[str, Field(pattern=rf"^$|{_BUCKET}")] = Field(default="", description="Bucket name.")
    region: str = Field(default="", description="Bucket region; empty uses the endpoint's default.")
    endpoint_url: Annotated[str, Field(pattern=r"^$|^https?://[^\s/]+(/[^\s]*)?$")] = Field(
        default="", description="Endpoint of an S3-compatible store (MinIO, Ceph); empty for AWS."
    )
    access_key_id: str = Field(
        default="",
        description="Access key id (not secret; the secret key is `filestore-s3-secret-access-key` in the "
        "Secret); empty uses the pod's own identity (IAM role for service accounts).",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="path for most S3-compatible stores (MinIO)."
    )


class GcsFilestore(Model):
    """Sentry's `gcs` filestore. Its library (google-cloud-storage) is not in the stock image:
    the stack uses the project's image (images/sentry-auth), which installs it."""

    bucket: Annotated[str, Field(pattern=rf"^$|{_BUCKET}")] = Field(default="", description="Bucket name.")
    project_id: str = Field(default="", description="Google Cloud project; empty takes it from the credentials.")
    key_file: bool = Field(
        default=True,
        description="Read a service account key (`gcs-credentials` in the Secret); false uses the pod's "
        "own identity (GKE Workload Identity).",
    )


PullPolicy = Literal["IfNotPresent", "Always", "Never"]


def prop_default(props_type: type, name: str) -> Any:
    """The documented default of one prop of a construct, so the values model can offer the
    same default without a second copy of it."""
    for field in dataclasses.fields(props_type):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            raise TypeError(f"{props_type.__name__}.{name} is required: it has no default")
    raise AttributeError(f"{props_type.__name__} has no prop {name}")
