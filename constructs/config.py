"""The typed configuration of a Sentry stack.

Every knob a user can turn lives here, with its default and a description.
Defaults target a laptop minikube (`minikube start --memory=4000mb --cpus=2`);
`config/production.yaml` shows a real cluster. Models are frozen and reject
unknown keys, so a typo in a values file is an error rather than a silently
ignored setting.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

import yaml
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


def _host(value: str) -> str:
    """A DNS host name (RFC 1123), as an Ingress rule or a client connection names it."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value) or any(len(p) > 63 for p in value.split(".")):
        raise ValueError(
            f"{value!r} is not a host name: use lower-case letters, digits, '-' and '.', "
            "labels of at most 63 characters (e.g. sentry.example.com)"
        )
    return value


def _host_or_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return _host(value)
    return value


def _ingress_host(value: str) -> str:
    """An Ingress host: a host name, optionally with a leading '*.' wildcard label."""
    _host(value.removeprefix("*."))
    return value


def _url_origin(value: str) -> str:
    """system.url-prefix: Sentry 9.1 is served from the root of its host, so an origin only."""
    if value and not re.match(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$", value):
        raise ValueError(
            f"{value!r} is not a public URL: use http:// or https://, a host and an optional "
            "port, with no path and no trailing slash (e.g. https://sentry.example.com)"
        )
    return value


def _python_settings(value: str) -> str:
    """Extra sentry.conf.py lines: ASCII (Python 2 rejects other bytes without a coding line)
    and valid syntax, so a typo fails the synth instead of every Sentry pod's start."""
    if not value.isascii():
        raise ValueError("must be ASCII: Python 2.7 rejects other characters in a file without a coding line")
    try:
        compile(value, "sentry.conf_py_extra", "exec")
    except SyntaxError as exc:
        raise ValueError(f"is not valid Python: line {exc.lineno}: {exc.msg}") from None
    return value


def _yaml_mapping(value: str) -> str:
    if not value.strip():
        return value
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"must be a YAML mapping of option names to values, not {type(data).__name__}")
    return value


def _namespace(value: str) -> str:
    # The cluster's own namespaces: the stack would label one for Pod Security
    # `restricted` and put a default-deny NetworkPolicy into it.
    if value.startswith("kube-"):
        raise ValueError(
            f"{value!r} is one of the cluster's own namespaces (kube-*): choose a namespace of "
            "the stack's own, such as sentry"
        )
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
Namespace = Annotated[DnsLabel, AfterValidator(_namespace)]
KubeName = Annotated[str, AfterValidator(_dns_subdomain)]


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block such as 0.0.0.0/0 or 10.0.0.0/8: {exc}") from None


Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]

HostName = Annotated[str, AfterValidator(_host)]
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


class SecretsConfig(Model):
    existing_secret: KubeName | None = Field(
        default=None,
        description=(
            "Name of a Secret you create yourself in the namespace, holding the keys listed in "
            "the README. When set, no Secret is synthesized and dist/ holds no secret material."
        ),
    )


class OffsiteBackup(Model):
    """A copy of each verified dump in S3-compatible storage, made by the backup Job itself."""

    enabled: bool = Field(default=False, description="Also copy each verified dump to S3-compatible storage.")
    image: Image = Field(
        default="amazon/aws-cli:2.15.30", description="Image with the aws CLI (pin a tag, or a digest with @sha256:)."
    )
    bucket: str = Field(
        default="",
        pattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket name (required when enabled).",
    )
    prefix: str = Field(
        default="sentry-postgres/",
        pattern=r"^$|^[^/\s][^\s]*/$",
        description="Key prefix inside the bucket: empty, or ending in '/' and not starting with one.",
    )
    endpoint_url: str = Field(
        default="",
        pattern=r"^$|^https?://[^\s]+$",
        description="S3 endpoint for non-AWS storage (MinIO, Ceph); empty for AWS.",
    )
    region: str = Field(default="us-east-1", description="Bucket region.")
    access_key_id: str = Field(
        default="", description="Access key id (not secret); the secret key lives in the Secret."
    )
    resources: Resources = Field(
        default_factory=lambda: resources("50m", "128Mi", "500m", "512Mi"), description="The upload container."
    )

    @model_validator(mode="after")
    def _bucket_when_enabled(self) -> OffsiteBackup:
        if self.enabled and not self.bucket:
            raise ValueError("bucket is required when offsite backup is enabled")
        if self.enabled and not self.access_key_id:
            raise ValueError("access_key_id is required when offsite backup is enabled")
        return self


BACKUP_NAME_PATTERN = r"^sentry-[0-9]{8}T[0-9]{6}Z$"


class RestoreConfig(Model):
    """The on-demand restore Job (see the restore runbook in docs/operations.md)."""

    enabled: bool = Field(
        default=False,
        description=(
            "Synthesize the restore Job into dist/90-restore.k8s.yaml. It replaces every database "
            "with the dump: stop Sentry first, and turn this off again afterwards."
        ),
    )
    file: Annotated[str, Field(pattern=rf"^latest$|{BACKUP_NAME_PATTERN}")] = Field(
        default="latest",
        description="'latest' (the newest backup on the backup volume) or a backup's name, "
        "e.g. sentry-20240101T030000Z.",
    )
    jobs: int = Field(default=2, ge=1, le=16, description="Parallel pg_restore workers.")
    roles: Literal["auto", "yes", "no"] = Field(
        default="auto",
        description="Restore the backup's roles: auto does when the backup has them and the user is a superuser.",
    )
    filestore: bool = Field(
        default=False,
        description="Also replace the filestore's contents with the backup's archive (the Job mounts it read-write).",
    )
    wait_for_clients_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="How long the Job waits for other database sessions to end before it refuses to restore.",
    )
    active_deadline_seconds: int = Field(default=6 * 3600, ge=300, description="Kill a restore that takes longer.")
    # Two CPUs for pg_restore's two workers (tools/bench_backup.py); Sentry is stopped meanwhile.
    resources: Resources = Field(default_factory=lambda: resources("100m", "64Mi", "2", "256Mi"))


class BackupConfig(Model):
    enabled: bool = Field(default=True, description="Run the backup CronJob.")
    schedule: CronSchedule = Field(default="0 3 * * *", description="Cron schedule, UTC.")
    keep: int = Field(default=7, ge=1, le=1000, description="How many verified backups to keep (the newest N).")
    # zlib 2 costs about what 1 does on Sentry's (already compressed) event payloads and
    # packs them a little tighter: as small as gzip -1 of a plain dump (tools/bench_backup.py).
    compression_level: int = Field(
        default=2,
        ge=1,
        le=9,
        description="zlib level of the per-table files and the filestore archive: 1-3 are the fast ones "
        "(see tools/bench_backup.py).",
    )
    jobs: int = Field(
        default=2, ge=1, le=16, description="Parallel pg_dump workers (one table is dumped by one worker)."
    )
    roles: Literal["auto", "yes", "no"] = Field(
        default="auto",
        description="Back up the roles too (pg_dumpall --globals-only): auto does when the user is a superuser.",
    )
    filestore: bool = Field(
        default=True, description="Archive the Sentry filestore volume with each backup (mounted read-only)."
    )
    starting_deadline_seconds: int = Field(default=3600, ge=60, description="How late a missed run may still start.")
    active_deadline_seconds: int = Field(default=3 * 3600, ge=60, description="Kill a run that takes longer.")
    backoff_limit: int = Field(default=2, ge=0, le=10, description="Retries of a failed run.")
    storage: Storage = Field(default_factory=lambda: Storage(size="8Gi"), description="Backup volume.")
    # Compression is the backup's bottleneck (tools/bench_backup.py): a limit of 2 CPUs lets
    # both dump workers compress at once. A limit only caps; the small request keeps the
    # backup's CPU weight low whenever Sentry needs the CPU.
    resources: Resources = Field(default_factory=lambda: resources("50m", "64Mi", "2", "256Mi"))
    offsite: OffsiteBackup = Field(default_factory=OffsiteBackup)
    restore: RestoreConfig = Field(default_factory=RestoreConfig)

    @model_validator(mode="after")
    def _restore_needs_the_backup_volume(self) -> BackupConfig:
        if self.restore.enabled and not self.enabled:
            raise ValueError("restore reads the backup volume: it needs backup.enabled: true")
        return self


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


class Autoscaling(Model):
    """A HorizontalPodAutoscaler on CPU. With it, the Deployment leaves `replicas` to the
    autoscaler, so `kubectl apply` never fights it (docs/cluster.md: Autoscaling)."""

    enabled: bool = Field(default=False, description="Scale on CPU between min_replicas and max_replicas.")
    min_replicas: int = Field(
        default=2, ge=2, le=50, description="At least 2, so a rollout or a node drain never leaves none ready."
    )
    max_replicas: int = Field(default=6, ge=2, le=100, description="Upper bound.")
    target_cpu_percent: int = Field(default=75, ge=10, le=100, description="Average CPU use, in % of requests.")

    @model_validator(mode="after")
    def _max_above_min(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas}")
        return self


_SSLMODES = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class CaCertificateSource(Model):
    """A CA certificate you keep in a Secret or a ConfigMap of the stack's namespace."""

    secret: KubeName | None = Field(default=None, description="Secret holding the certificate.")
    config_map: KubeName | None = Field(default=None, description="ConfigMap holding the certificate.")
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$")] = Field(
        default="ca.crt", description="Key of the certificate (PEM) in that Secret or ConfigMap."
    )

    @model_validator(mode="after")
    def _one_source(self) -> CaCertificateSource:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError("give exactly one of secret or config_map")
        return self


class ExternalPostgresConfig(Model):
    """A PostgreSQL server outside the cluster (RDS, Cloud SQL, ...): no PostgreSQL runs in it."""

    host: Annotated[str, AfterValidator(lambda v: v and _host_or_ip(v))] = Field(
        default="", description="Host name or IP of the server; empty runs PostgreSQL in the cluster."
    )
    port: int = Field(default=5432, ge=1, le=65535, description="Port of the server.")
    sslmode: _SSLMODES = Field(
        default="verify-full",
        description="libpq sslmode for every client (Sentry, waits, migrations, backups). verify-ca "
        "and verify-full need `ca`.",
    )
    ca: CaCertificateSource | None = Field(
        default=None, description="The server's CA certificate, for sslmode verify-ca or verify-full."
    )
    cidrs: list[Cidr] = Field(
        default_factory=list,
        description="The server's addresses, for the NetworkPolicies' egress rules (an IP `host` "
        "adds its own /32); required for a host name while network.policies is on.",
    )
    superuser: bool = Field(
        default=False,
        description="Whether `postgres.user` may read every role (pg_dumpall --globals-only): managed "
        "servers do not allow it, so backups then hold the Sentry database only.",
    )

    @model_validator(mode="after")
    def _ca_for_verify(self) -> ExternalPostgresConfig:
        if self.host and self.sslmode in {"verify-ca", "verify-full"} and self.ca is None:
            raise ValueError(
                f"sslmode {self.sslmode} needs ca (the server's CA certificate in a Secret or ConfigMap: "
                "ca: {secret: NAME, key: ca.crt}); or choose sslmode: require (encrypted, server not verified)"
            )
        return self


class PostgresConfig(Model):
    image: Image = Field(
        default="postgres:9.6.24",
        description="PostgreSQL image; Sentry 9.1 was tested on 9.5 and 9.6. With an external server, "
        "the clients' image: its major version must be at least the server's (pg_dump).",
    )
    external: ExternalPostgresConfig = Field(default_factory=ExternalPostgresConfig)
    database: DnsLabel = Field(default="sentry", description="Database name.")
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)] = Field(
        default="sentry", description="Database owner role."
    )
    storage: Storage = Field(default_factory=lambda: Storage(size="8Gi"))
    resources: Resources = Field(default_factory=lambda: resources("100m", "256Mi", "500m", "512Mi"))
    pods: PodSettings = Field(default_factory=PodSettings, description="The PostgreSQL pod's own pod settings.")
    backup: BackupConfig = Field(default_factory=BackupConfig)


class ExternalRedisConfig(Model):
    """A Redis server outside the cluster (ElastiCache, Memorystore, ...). Plain TCP with a
    password: Sentry 9.1.2's Celery broker cannot use TLS (see docs/cluster.md)."""

    host: Annotated[str, AfterValidator(lambda v: v and _host_or_ip(v))] = Field(
        default="", description="Host name or IP of the server; empty runs Redis in the cluster."
    )
    port: int = Field(default=6379, ge=1, le=65535, description="Port of the server.")
    db: int = Field(default=0, ge=0, le=15, description="Database number Sentry uses.")
    cidrs: list[Cidr] = Field(
        default_factory=list,
        description="The server's addresses, for the NetworkPolicies' egress rules (an IP `host` adds "
        "its own /32); required for a host name while network.policies is on.",
    )


class RedisConfig(Model):
    image: Image = Field(
        default="redis:6.2.14-alpine", description="Redis image (with an external server: for redis-cli only)."
    )
    external: ExternalRedisConfig = Field(default_factory=ExternalRedisConfig)
    storage: Storage = Field(default_factory=lambda: Storage(size="1Gi"), description="AOF volume.")
    resources: Resources = Field(default_factory=lambda: resources("50m", "64Mi", "250m", "256Mi"))
    pods: PodSettings = Field(default_factory=PodSettings)


class Ingress(Model):
    enabled: bool = Field(default=False, description="Create an Ingress for the web UI.")
    host: Annotated[str, AfterValidator(_ingress_host)] = Field(
        default="sentry.local", description="Host name the Ingress serves (a leading '*.' is allowed)."
    )
    class_name: KubeName | None = Field(default=None, description="IngressClass; null uses the default.")
    tls_secret: KubeName | None = Field(default=None, description="TLS Secret name; null serves plain HTTP.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the Ingress.")


class WebConfig(Model):
    replicas: int = Field(default=2, ge=1, le=50, description="Web pods; 2 keeps the UI up during a rollout.")
    resources: Resources = Field(default_factory=lambda: resources("100m", "400Mi", "600m", "3Gi"))
    service_type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = Field(default="NodePort")
    node_port: int = Field(default=30000, ge=30000, le=32767, description="NodePort of the web Service.")
    service_annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the web Service.")
    ingress: Ingress = Field(default_factory=Ingress)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    pods: PodSettings = Field(default_factory=PodSettings)


class WorkerConfig(Model):
    replicas: int = Field(default=2, ge=1, le=50)
    concurrency: int = Field(default=2, ge=1, le=64, description="Celery processes per worker pod.")
    resources: Resources = Field(default_factory=lambda: resources("100m", "150Mi", "300m", "3Gi"))
    termination_grace_seconds: int = Field(
        default=300, ge=30, description="Time a stopping worker gets to finish its running tasks."
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    pods: PodSettings = Field(default_factory=PodSettings)


class CronConfig(Model):
    # 50m: the seed measured 2m in use; with 100m the upgrade peak would not fit a minikube
    # that runs Calico (docs/operations.md: Capacity).
    resources: Resources = Field(default_factory=lambda: resources("50m", "150Mi", "250m", "250Mi"))
    pods: PodSettings = Field(default_factory=PodSettings)


class MigrationsConfig(Model):
    resources: Resources = Field(
        # The request is what the scheduler reserves; the limit is what `sentry upgrade`
        # may use (about 3 GB of memory, and a whole CPU while it runs, which the idle
        # pods leave free). See docs/operations.md, Capacity, for the arithmetic.
        default_factory=lambda: resources("50m", "600Mi", "1", "3200Mi"),
    )
    backoff_limit: int = Field(default=3, ge=0, le=10)
    active_deadline_seconds: int = Field(default=3600, ge=300)
    pods: PodSettings = Field(default_factory=PodSettings)


class CleanupConfig(Model):
    enabled: bool = Field(default=True, description="Run `sentry cleanup` on a schedule.")
    days: int = Field(default=90, ge=1, le=3650, description="Keep events for this many days.")
    schedule: CronSchedule = Field(default="0 4 * * *")
    resources: Resources = Field(default_factory=lambda: resources("50m", "150Mi", "500m", "1Gi"))


class SmtpConfig(Model):
    host: Annotated[str, AfterValidator(lambda v: v and _host_or_ip(v))] = Field(
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


class FilestoreConfig(Storage):
    """Where Sentry keeps release files, source maps and debug files."""

    backend: Literal["filesystem", "s3", "gcs"] = Field(
        default="filesystem",
        description="filesystem: a PersistentVolumeClaim (size, storage_class, access_mode); s3 or gcs: a "
        "bucket, and no claim.",
    )
    s3: S3Filestore = Field(default_factory=S3Filestore)
    gcs: GcsFilestore = Field(default_factory=GcsFilestore)

    @model_validator(mode="after")
    def _bucket_for_object_stores(self) -> FilestoreConfig:
        if self.backend in ("s3", "gcs") and not getattr(self, self.backend).bucket:
            raise ValueError(f"{self.backend}.bucket is required with backend {self.backend}")
        return self


class MetricsConfig(Model):
    """Sentry's statsd metrics, exported for Prometheus by a statsd exporter."""

    enabled: bool = Field(
        default=False, description="Run a Prometheus statsd exporter and send Sentry's metrics to it."
    )
    image: Image = Field(default="prom/statsd-exporter:v0.26.1", description="The exporter's image.")
    resources: Resources = Field(default_factory=lambda: resources("10m", "32Mi", "100m", "128Mi"))
    service_monitor: bool = Field(
        default=False, description="Also emit a ServiceMonitor (needs the Prometheus Operator's CRDs)."
    )
    service_monitor_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels your Prometheus selects ServiceMonitors by (e.g. release)."
    )
    scrape_interval_seconds: int = Field(default=30, ge=5, le=600, description="The ServiceMonitor's interval.")


class SentryConfig(Model):
    image: Image = Field(default="sentry:9.1.2", description="Stock Sentry image.")
    auth_image: Image = Field(
        default="sentry-k8s/sentry-auth:9.1.2",
        description="Image with the GitHub/GitLab login plugins, used when a login is enabled.",
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(default="IfNotPresent")
    admin_email: str = Field(
        default="admin@example.com",
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Superuser created by the migration Job.",
    )
    create_admin: bool = Field(
        default=True,
        description="Create the superuser once, on the first successful migration (recorded in the "
        "database, so a renamed or removed admin is never re-created); false never creates one.",
    )
    url_prefix: Annotated[str, AfterValidator(_url_origin)] = Field(
        default="",
        description="Public URL of Sentry (system.url-prefix), e.g. https://sentry.example.com; empty "
        "derives it from requests.",
    )
    single_organization: bool = Field(default=True)
    allow_registration: bool = Field(
        default=False,
        description="Show Sentry's Register form on the login page, so anyone who reaches it can make "
        "an account; off: the admin invites members.",
    )
    web: WebConfig = Field(default_factory=WebConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    cron: CronConfig = Field(default_factory=CronConfig)
    migrations: MigrationsConfig = Field(default_factory=MigrationsConfig)
    filestore: FilestoreConfig = Field(default_factory=lambda: FilestoreConfig(size="10Gi"))
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    github: GithubConfig = Field(default_factory=GithubConfig)
    gitlab: GitlabConfig = Field(default_factory=GitlabConfig)
    extra_env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict,
        description="Extra environment variables of every Sentry container (not for secrets: they are "
        "plain values in the manifest). A name the stack sets itself is refused.",
        examples=[{"SENTRY_WEB_WORKERS": "4"}],
    )
    conf_py_extra: Annotated[str, AfterValidator(_python_settings)] = Field(
        default="",
        description="Python appended to sentry.conf.py, after the project's own settings (it runs under "
        "Python 2.7: ASCII only; it must also compile as Python 3, which the synth checks).",
        examples=["SENTRY_FEATURES['auth:register'] = False\n"],
    )
    config_yml_extra: Annotated[str, AfterValidator(_yaml_mapping)] = Field(
        default="",
        description="Options (a YAML mapping) appended to config.yml, which Sentry reads after sentry.conf.py.",
        examples=["system.admin-email: ops@example.com\n"],
    )

    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @property
    def effective_image(self) -> str:
        """The stock image cannot log in with GitHub/GitLab, nor use the gcs filestore; the
        project's image (plugins and google-cloud-storage) can."""
        if self.github.login_enabled or self.gitlab.login_enabled or self.filestore.backend == "gcs":
            return self.auth_image
        return self.image

    @property
    def version(self) -> str:
        return image_tag(self.effective_image)


# Private, shared (CGNAT) and link-local IPv4 ranges: pod, service and node networks
# live here, and so do cloud metadata endpoints (169.254.169.254).
PRIVATE_CIDRS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]


class NetworkConfig(Model):
    """NetworkPolicies (constructs/network_policies.py): deny by default, allow what the stack needs."""

    policies: bool = Field(
        default=True,
        description="Synthesize NetworkPolicies. They take effect only with a CNI that enforces them "
        "(minikube: `--cni=calico` or `--cni=cilium`).",
    )
    dns_namespace: DnsLabel | None = Field(
        default="kube-system",
        description="Namespace of the cluster DNS pods every pod may query on port 53; null allows "
        "port 53 to any address (e.g. NodeLocal DNSCache).",
    )
    dns_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"k8s-app": "kube-dns"},
        description="Labels of the cluster DNS pods (CoreDNS keeps the kube-dns label).",
    )
    sentry_egress_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        description="Where web, worker and cron may connect outside the stack (GitHub/GitLab login, "
        "integrations, mail); [] for nowhere.",
    )
    sentry_egress_ports: list[Port] = Field(
        default_factory=lambda: [443],
        description="TCP ports for that; `sentry.smtp.port` is added when `sentry.smtp.host` is set.",
    )
    offsite_egress_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        description="Where the backup Job may connect for its offsite copy, on the S3 endpoint's port.",
    )
    egress_except_cidrs: list[Cidr] = Field(
        default_factory=lambda: list(PRIVATE_CIDRS),
        description="Carved out of every egress CIDR above that contains them. To reach a host in one "
        "of these ranges (a private SMTP relay, MinIO), list its own CIDR above.",
    )


MINIKUBE_CPU = "2"
# `minikube start --memory=4000mb`: the node reports about 3.8 GiB allocatable.
MINIKUBE_MEMORY = "3891Mi"


class CapacityConfig(Model):
    """What the synth checks the stack's peak requests against (summary and exit status)."""

    target: Literal["minikube", "node", "none"] = Field(
        default="minikube",
        description="minikube: one node started with --memory=4000mb --cpus=2; node: one node of "
        "node_cpu / node_memory; none: no check (a real cluster with room to schedule).",
    )
    node_cpu: CpuQuantity = Field(default=MINIKUBE_CPU, description="Allocatable CPU of the node (target node).")
    node_memory: MemoryQuantity = Field(
        default=MINIKUBE_MEMORY, description="Allocatable memory of the node (target node)."
    )
    system_cpu: CpuQuantity = Field(
        default="750m",
        description="CPU already requested on the node by the control plane and system pods "
        "(minikube: apiserver 250m, controller-manager 200m, etcd, scheduler and CoreDNS 100m each).",
    )
    system_memory: MemoryQuantity = Field(
        default="170Mi", description="Memory already requested by the control plane and system pods."
    )
    cni: Literal["calico", "none"] = Field(
        default="calico",
        description="The CNI's own node pod counts too: calico-node requests 250m CPU (the CNI the "
        "README starts minikube with, so that NetworkPolicies are enforced).",
    )
    on_exceed: Literal["fail", "warn"] = Field(
        default="fail", description="When the peak requests exceed the target: fail the synth, or warn."
    )


class StackConfig(Model):
    namespace: Namespace = Field(
        default="sentry", description="Namespace everything is created in; kube-* are refused, default is warned about."
    )
    release: DnsLabel = Field(
        default="sentry",
        description="Instance name: prefix of every object name, app.kubernetes.io/instance label.",
    )
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    sentry: SentryConfig = Field(default_factory=SentryConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    pods: PodSettings = Field(
        default_factory=PodSettings,
        description="Pod settings of every pod, unless a workload's own `pods` says otherwise.",
    )
    service_account_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations of the pods' ServiceAccount, for a cloud identity without keys: IAM roles "
        "for service accounts (eks.amazonaws.com/role-arn) or GKE Workload Identity "
        "(iam.gke.io/gcp-service-account).",
        examples=[{"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sentry"}],
    )
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)

    @model_validator(mode="after")
    def _shared_filestore_on_several_nodes(self) -> StackConfig:
        files = self.sentry.filestore
        if files.backend == "filesystem" and self.capacity.target == "none" and files.access_mode != "ReadWriteMany":
            raise ValueError(
                "sentry.filestore: web and worker pods on several nodes all mount the filestore, so with "
                f"backend filesystem its access_mode must be ReadWriteMany, not {files.access_mode} (or use "
                "backend s3 or gcs; on a single node, say so with capacity.target: node)"
            )
        return self

    @model_validator(mode="after")
    def _external_addresses_for_policies(self) -> StackConfig:
        for name, external in (("postgres", self.postgres.external), ("redis", self.redis.external)):
            if self.network.policies and external.host and not external.cidrs:
                try:
                    ipaddress.ip_address(external.host)
                except ValueError:
                    raise ValueError(
                        f"{name}.external.cidrs is required for the host name {external.host!r} while "
                        "network.policies is on: the NetworkPolicies allow egress by address (e.g. the "
                        "subnet of the managed server: cidrs: [10.0.8.0/24])"
                    ) from None
        return self


def image_tag(image: str) -> str:
    """The tag of an image reference ("latest" when none), used as app.kubernetes.io/version."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"
