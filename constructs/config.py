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
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from constructs.quantities import CPU_FORMAT, MEMORY_FORMAT, parse_cpu, parse_memory

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


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
Image = Annotated[str, Field(min_length=1, pattern=r"^[^\s:@]+(:[A-Za-z0-9_.-]+)?(@sha256:[0-9a-f]{64})?$")]


class Model(BaseModel):
    """Base: frozen, unknown keys rejected, field names as written in values files."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


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
    storage_class: str | None = Field(
        default=None, description="StorageClass name; null uses the cluster's default class."
    )
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = Field(
        default="ReadWriteOnce", description="PVC access mode."
    )


class SecretsConfig(Model):
    existing_secret: str | None = Field(
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
    """The on-demand restore Job (see the README's restore runbook)."""

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


class PostgresConfig(Model):
    image: Image = Field(
        default="postgres:9.6.24",
        description="PostgreSQL image; Sentry 9.1 was tested on 9.5 and 9.6.",
    )
    database: DnsLabel = Field(default="sentry", description="Database name.")
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)] = Field(
        default="sentry", description="Database owner role."
    )
    storage: Storage = Field(default_factory=lambda: Storage(size="8Gi"))
    resources: Resources = Field(default_factory=lambda: resources("100m", "256Mi", "500m", "512Mi"))
    backup: BackupConfig = Field(default_factory=BackupConfig)


class RedisConfig(Model):
    image: Image = Field(default="redis:6.2.14-alpine", description="Redis image.")
    storage: Storage = Field(default_factory=lambda: Storage(size="1Gi"), description="AOF volume.")
    resources: Resources = Field(default_factory=lambda: resources("50m", "64Mi", "250m", "256Mi"))


class Ingress(Model):
    enabled: bool = Field(default=False, description="Create an Ingress for the web UI.")
    host: str = Field(default="sentry.local", description="Host name the Ingress serves.")
    class_name: str | None = Field(default=None, description="IngressClass; null uses the default.")
    tls_secret: str | None = Field(default=None, description="TLS Secret name; null serves plain HTTP.")


class WebConfig(Model):
    replicas: int = Field(default=2, ge=1, le=50, description="Web pods; 2 keeps the UI up during a rollout.")
    resources: Resources = Field(default_factory=lambda: resources("100m", "400Mi", "600m", "3Gi"))
    service_type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = Field(default="NodePort")
    node_port: int = Field(default=30000, ge=30000, le=32767, description="NodePort of the web Service.")
    ingress: Ingress = Field(default_factory=Ingress)


class WorkerConfig(Model):
    replicas: int = Field(default=2, ge=1, le=50)
    concurrency: int = Field(default=2, ge=1, le=64, description="Celery processes per worker pod.")
    resources: Resources = Field(default_factory=lambda: resources("100m", "150Mi", "300m", "3Gi"))
    termination_grace_seconds: int = Field(
        default=300, ge=30, description="Time a stopping worker gets to finish its running tasks."
    )


class CronConfig(Model):
    resources: Resources = Field(default_factory=lambda: resources("100m", "150Mi", "250m", "250Mi"))


class MigrationsConfig(Model):
    resources: Resources = Field(
        # The request is what the scheduler reserves; the limit is what `sentry upgrade`
        # may use (about 3 GB). See the README's capacity section for the arithmetic.
        default_factory=lambda: resources("100m", "600Mi", "1", "3200Mi"),
    )
    backoff_limit: int = Field(default=3, ge=0, le=10)
    active_deadline_seconds: int = Field(default=3600, ge=300)


class CleanupConfig(Model):
    enabled: bool = Field(default=True, description="Run `sentry cleanup` on a schedule.")
    days: int = Field(default=90, ge=1, le=3650, description="Keep events for this many days.")
    schedule: CronSchedule = Field(default="0 4 * * *")
    resources: Resources = Field(default_factory=lambda: resources("50m", "150Mi", "500m", "1Gi"))


class SmtpConfig(Model):
    host: str = Field(default="", description="SMTP host; empty disables outgoing mail.")
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
    base_domain: str = Field(default="gitlab.com", description="GitLab host.")

    @model_validator(mode="after")
    def _app_id_when_enabled(self) -> GitlabConfig:
        if self.login_enabled and not self.application_id:
            raise ValueError("application_id is required when login_enabled is true")
        return self


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
    url_prefix: str = Field(
        default="", description="Public URL of Sentry (system.url-prefix); empty derives it from requests."
    )
    single_organization: bool = Field(default=True)
    web: WebConfig = Field(default_factory=WebConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    cron: CronConfig = Field(default_factory=CronConfig)
    migrations: MigrationsConfig = Field(default_factory=MigrationsConfig)
    filestore: Storage = Field(default_factory=lambda: Storage(size="10Gi"))
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    github: GithubConfig = Field(default_factory=GithubConfig)
    gitlab: GitlabConfig = Field(default_factory=GitlabConfig)

    @property
    def effective_image(self) -> str:
        """The stock image cannot log in with GitHub/GitLab; the plugin image can."""
        if self.github.login_enabled or self.gitlab.login_enabled:
            return self.auth_image
        return self.image

    @property
    def version(self) -> str:
        return image_tag(self.effective_image)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block such as 0.0.0.0/0 or 10.0.0.0/8: {exc}") from None


Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]

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


class StackConfig(Model):
    namespace: DnsLabel = Field(default="sentry", description="Namespace everything is created in.")
    release: DnsLabel = Field(
        default="sentry",
        description="Instance name: prefix of every object name, app.kubernetes.io/instance label.",
    )
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    sentry: SentryConfig = Field(default_factory=SentryConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)


def image_tag(image: str) -> str:
    """The tag of an image reference ("latest" when none), used as app.kubernetes.io/version."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"
