"""The values model: the typed configuration of a Sentry stack, as values files give it.

Every knob a user can turn lives here, with a description. It is not the constructs'
props: SentryStack maps it onto them. Its defaults are the props' own documented
defaults (`prop_default`), so each is written once, beside its construct; a few are
the stack's own (marked so). Defaults target a laptop minikube (`minikube start
--memory=4000mb --cpus=2 --cni=calico`); `config/production.yaml` shows a real cluster. Models are
frozen and reject unknown keys, so a typo in a values file is an error rather than a
silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from app.props_model import STRICT, model_of, pydantic_type, values_type
from constructs import checks, props, sentry_runtime
from constructs.endpoints import (
    VERIFY_FULL_BY_IP,
    CaCertificate,
    ExternalPostgresProps,
    ExternalRedisProps,
    PostgresDatabase,
    PostgresRole,
    SslMode,
    ip_address_host,
)
from constructs.network_policies import NetworkPoliciesOptions
from constructs.postgres_backup import BackupOptions, OffsiteCopy
from constructs.postgres_restore import PostgresRestoreOptions
from constructs.postgres_with_backup import PostgresOptions
from constructs.props import prop_default
from constructs.redis_broker import RedisOptions
from constructs.sentry_cleanup import SentryCleanupOptions
from constructs.sentry_cron import SentryCronOptions
from constructs.sentry_migrations import SentryMigrationsOptions
from constructs.sentry_runtime import SentryRuntimeOptions
from constructs.sentry_web import SentryWebOptions, WebIngress
from constructs.sentry_worker import SentryWorkerOptions
from constructs.statsd_exporter import StatsdExporterOptions
from constructs.workload import CpuAutoscaling


class Model(BaseModel):
    """Base: frozen, unknown keys rejected, field names as written in values files.

    Strict: a value must already have the field's type. YAML turns `yes` into true and
    `1.5` into a float; lax validation would make those 1 and "1.5" without a word.
    """

    model_config = STRICT


# The constructs' checked types (constructs/checks.py), as pydantic validates them.
CpuQuantity = pydantic_type(checks.CpuQuantity)
MemoryQuantity = pydantic_type(checks.MemoryQuantity)
CronSchedule = pydantic_type(checks.CronSchedule)
DnsLabel = pydantic_type(checks.DnsLabel)
KubeName = pydantic_type(checks.KubeName)
HostOrIp = pydantic_type(checks.HostOrIp)
IngressHost = pydantic_type(checks.IngressHost)
Image = pydantic_type(checks.Image)
Cidr = pydantic_type(checks.Cidr)
Port = pydantic_type(checks.Port)
PullPolicy = checks.PullPolicy
# The value types the props share (constructs/props.py): parsed strictly, held as the
# constructs' own dataclasses.
Resources = values_type(props.Resources)
Storage = values_type(props.Storage)
PodSettings = values_type(props.PodSettings)
SmtpConfig = values_type(props.SmtpConfig)
GithubConfig = values_type(props.GithubConfig)
GitlabConfig = values_type(props.GitlabConfig)
S3Filestore = values_type(props.S3Filestore)
GcsFilestore = values_type(props.GcsFilestore)


UrlOrigin = pydantic_type(sentry_runtime.UrlOrigin)
PythonSettings = pydantic_type(sentry_runtime.PythonSettings)
YamlOptions = pydantic_type(sentry_runtime.YamlOptions)
ExtraEnv = pydantic_type(sentry_runtime.ExtraEnv)
Database = pydantic_type(PostgresDatabase)
Role = pydantic_type(PostgresRole)


def _namespace(value: str) -> str:
    # The cluster's own namespaces: the stack would label one for Pod Security
    # `restricted` and put a default-deny NetworkPolicy into it.
    if value.startswith("kube-"):
        raise ValueError(
            f"{value!r} is one of the cluster's own namespaces (kube-*): choose a namespace of "
            "the stack's own, such as sentry"
        )
    return value


Namespace = Annotated[DnsLabel, AfterValidator(_namespace)]

# Namespaces that hold other workloads on most clusters: Kubernetes' own default, and those
# common add-ons install into. The synth cannot look at a cluster; these it can recognise.
SHARED_NAMESPACES = (
    "default",
    "monitoring",
    "observability",
    "logging",
    "ingress-nginx",
    "cert-manager",
    "calico-system",
    "calico-apiserver",
    "tigera-operator",
    "local-path-storage",
    "istio-system",
    "argocd",
    "flux-system",
    "gatekeeper-system",
    "kubernetes-dashboard",
)


def _server_origin(value: str) -> str:
    """A server's old place: 'in-cluster', or the host of the previous external server."""
    if value and value != "in-cluster":
        checks.host_or_ip(value)
    return value


# Where data was before a move (app/day2.py): the synth copies nothing itself, so it refuses
# a change of where the data lives unless the values say where it came from.
ServerOrigin = Annotated[str, AfterValidator(_server_origin)]
MIGRATE_FROM_SERVER = (
    "Where {what} was before it moved here: 'in-cluster', or the previous external server's host. "
    "The synth refuses a change of where {what} lives unless this names the old place, and copies "
    "nothing itself: follow docs/operations.md, {procedure}, first; remove it afterwards."
)


def _not_where_it_is(field: str, declared: str, current: str) -> None:
    if declared and declared == current:
        raise ValueError(
            f"{field}.migrate_from {declared!r} names where the data is now; it names where it was "
            "before a move (or leave it empty)"
        )


class SecretsConfig(Model):
    existing_secret: KubeName | None = Field(
        default=None,
        description=(
            "Name of a Secret you create yourself in the namespace, holding the keys listed under "
            "Secrets in docs/configuration.md (the synth's summary lists the ones the configuration "
            "needs). When set, no Secret is synthesized and dist/ holds no secret material."
        ),
    )


class OffsiteBackup(Model):
    """A copy of each verified dump in S3-compatible storage, made by the backup Job itself."""

    enabled: bool = Field(default=False, description="Also copy each verified dump to S3-compatible storage.")
    image: Image = Field(
        default=prop_default(OffsiteCopy, "image"),
        description="Image with the aws CLI (pin a tag, or a digest with @sha256:).",
    )
    bucket: str = Field(
        default="",
        pattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket name (required when enabled).",
    )
    prefix: str = Field(
        default=prop_default(OffsiteCopy, "prefix"),
        pattern=r"^$|^[^/\s][^\s]*/$",
        description="Key prefix inside the bucket: empty, or ending in '/' and not starting with one.",
    )
    endpoint_url: str = Field(
        default="",
        pattern=r"^$|^https?://[^\s]+$",
        description="S3 endpoint for non-AWS storage (MinIO, Ceph); empty for AWS.",
    )
    region: str = Field(default=prop_default(OffsiteCopy, "region"), description="Bucket region.")
    access_key_id: str = Field(
        default="", description="Access key id (not secret); the secret key lives in the Secret."
    )
    resources: Resources = Field(default=prop_default(OffsiteCopy, "resources"), description="The upload container.")

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
        default=prop_default(PostgresRestoreOptions, "file"),
        description="'latest' (the newest backup on the backup volume) or a backup's name, "
        "e.g. sentry-20240101T030000Z.",
    )
    jobs: int = Field(
        default=prop_default(PostgresRestoreOptions, "jobs"), ge=1, le=16, description="Parallel pg_restore workers."
    )
    roles: Literal["auto", "yes", "no"] = Field(
        default=prop_default(PostgresRestoreOptions, "roles"),
        description="Restore the backup's roles: auto does when the backup has them and the user is a superuser.",
    )
    filestore: bool = Field(
        default=prop_default(PostgresRestoreOptions, "filestore"),
        description="Also replace the filestore's contents with the backup's archive (the Job mounts it read-write).",
    )
    wait_for_clients_seconds: int = Field(
        default=prop_default(PostgresRestoreOptions, "wait_for_clients_seconds"),
        ge=0,
        le=3600,
        description="How long the Job waits for other database sessions to end before it refuses to restore.",
    )
    active_deadline_seconds: int = Field(
        default=prop_default(PostgresRestoreOptions, "active_deadline_seconds"),
        ge=300,
        description="Kill a restore that takes longer.",
    )
    resources: Resources = Field(default=prop_default(PostgresRestoreOptions, "resources"))


class BackupConfig(Model):
    enabled: bool = Field(default=True, description="Run the backup CronJob.")
    schedule: CronSchedule = Field(default=prop_default(BackupOptions, "schedule"), description="Cron schedule, UTC.")
    keep: int = Field(
        default=prop_default(BackupOptions, "keep"),
        ge=1,
        le=1000,
        description="How many verified backups to keep (the newest N).",
    )
    compression_level: int = Field(
        default=prop_default(BackupOptions, "compression_level"),
        ge=1,
        le=9,
        description="zlib level of the per-table files and the filestore archive: 1-3 are the fast ones "
        "(see tools/bench_backup.py).",
    )
    jobs: int = Field(
        default=prop_default(BackupOptions, "jobs"),
        ge=1,
        le=16,
        description="Parallel pg_dump workers (one table is dumped by one worker).",
    )
    roles: Literal["auto", "yes", "no"] = Field(
        default=prop_default(BackupOptions, "roles"),
        description="Back up the roles too (pg_dumpall --globals-only): auto does when the user is a superuser.",
    )
    filestore: bool = Field(
        default=prop_default(BackupOptions, "filestore"),
        description="Archive the Sentry filestore volume with each backup (mounted read-only).",
    )
    starting_deadline_seconds: int = Field(
        default=prop_default(BackupOptions, "starting_deadline_seconds"),
        ge=60,
        description="How late a missed run may still start.",
    )
    active_deadline_seconds: int = Field(
        default=prop_default(BackupOptions, "active_deadline_seconds"),
        ge=60,
        description="Kill a run that takes longer.",
    )
    backoff_limit: int = Field(
        default=prop_default(BackupOptions, "backoff_limit"), ge=0, le=10, description="Retries of a failed run."
    )
    storage: Storage = Field(default=prop_default(BackupOptions, "storage"), description="Backup volume.")
    resources: Resources = Field(default=prop_default(BackupOptions, "resources"))
    offsite: OffsiteBackup = Field(default_factory=OffsiteBackup)
    restore: RestoreConfig = Field(default_factory=RestoreConfig)

    @model_validator(mode="after")
    def _restore_needs_the_backup_volume(self) -> BackupConfig:
        if self.restore.enabled and not self.enabled:
            raise ValueError("restore reads the backup volume: it needs backup.enabled: true")
        return self


class Autoscaling(Model):
    """A HorizontalPodAutoscaler on CPU. With it, the Deployment leaves `replicas` to the
    autoscaler, so `kubectl apply` never fights it (docs/cluster.md: Autoscaling)."""

    enabled: bool = Field(default=False, description="Scale on CPU between min_replicas and max_replicas.")
    min_replicas: int = Field(
        default=prop_default(CpuAutoscaling, "min_replicas"),
        ge=2,
        le=50,
        description="At least 2, so a rollout or a node drain never leaves none ready.",
    )
    max_replicas: int = Field(
        default=prop_default(CpuAutoscaling, "max_replicas"), ge=2, le=100, description="Upper bound."
    )
    target_cpu_percent: int = Field(
        default=prop_default(CpuAutoscaling, "target_cpu_percent"),
        ge=10,
        le=100,
        description="Average CPU use, in % of requests.",
    )

    @model_validator(mode="after")
    def _max_above_min(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas}")
        return self


class CaCertificateSource(Model):
    """A CA certificate you keep in a Secret or a ConfigMap of the stack's namespace."""

    secret: KubeName | None = Field(default=None, description="Secret holding the certificate.")
    config_map: KubeName | None = Field(default=None, description="ConfigMap holding the certificate.")
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$")] = Field(
        default=prop_default(CaCertificate, "key"),
        description="Key of the certificate (PEM) in that Secret or ConfigMap.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CaCertificateSource:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError("give exactly one of secret or config_map")
        return self


class ExternalPostgresConfig(Model):
    """A PostgreSQL server outside the cluster (RDS, Cloud SQL, ...): no PostgreSQL runs in it."""

    host: HostOrIp = Field(
        default="", description="Host name or IP of the server; empty runs PostgreSQL in the cluster."
    )
    port: int = Field(
        default=prop_default(ExternalPostgresProps, "port"), ge=1, le=65535, description="Port of the server."
    )
    sslmode: SslMode = Field(
        default=prop_default(ExternalPostgresProps, "sslmode"),
        description="libpq sslmode for every client (Sentry, waits, migrations, backups). verify-ca "
        "and verify-full need `ca`; verify-full needs `host` as a name (Sentry's libpq 11 cannot verify an "
        "IP address).",
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
        default=prop_default(ExternalPostgresProps, "can_dump_roles"),
        description="Whether `postgres.user` may read every role (pg_dumpall --globals-only): managed "
        "servers do not allow it, so backups then hold the Sentry database only.",
    )

    @model_validator(mode="after")
    def _verify_full_by_name(self) -> ExternalPostgresConfig:
        if self.sslmode == "verify-full" and ip_address_host(self.host):
            raise ValueError(f"sslmode: {VERIFY_FULL_BY_IP} (host {self.host})")
        return self

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
        default=prop_default(PostgresOptions, "image"),
        description="PostgreSQL image; Sentry 9.1 was tested on 9.5 and 9.6. With an external server, "
        "the clients' image: its major version must be at least the server's (pg_dump).",
    )
    external: ExternalPostgresConfig = Field(default_factory=ExternalPostgresConfig)
    database: Database = Field(default=prop_default(PostgresOptions, "database"), description="Database name.")
    user: Role = Field(default=prop_default(PostgresOptions, "user"), description="Database owner role.")
    storage: Storage = Field(default=prop_default(PostgresOptions, "storage"))
    resources: Resources = Field(default=prop_default(PostgresOptions, "resources"))
    pods: PodSettings = Field(default_factory=PodSettings, description="The PostgreSQL pod's own pod settings.")
    backup: BackupConfig = Field(default_factory=BackupConfig)
    migrate_from: ServerOrigin = Field(
        default="",
        description=MIGRATE_FROM_SERVER.format(
            what="Sentry's database", procedure="Moving PostgreSQL into or out of the cluster"
        ),
        examples=["in-cluster"],
    )

    @model_validator(mode="after")
    def _migrated_from_elsewhere(self) -> PostgresConfig:
        _not_where_it_is("postgres", self.migrate_from, self.external.host or "in-cluster")
        return self


class ExternalRedisConfig(Model):
    """A Redis server outside the cluster (ElastiCache, Memorystore, ...). Plain TCP, with a
    password unless `password: false`: Sentry 9.1.2's Celery broker cannot use TLS (see
    docs/cluster.md)."""

    host: HostOrIp = Field(default="", description="Host name or IP of the server; empty runs Redis in the cluster.")
    port: int = Field(
        default=prop_default(ExternalRedisProps, "port"), ge=1, le=65535, description="Port of the server."
    )
    db: int = Field(
        default=prop_default(ExternalRedisProps, "db"), ge=0, le=15, description="Database number Sentry uses."
    )
    cidrs: list[Cidr] = Field(
        default_factory=list,
        description="The server's addresses, for the NetworkPolicies' egress rules (an IP `host` adds "
        "its own /32); required for a host name while network.policies is on.",
    )
    password: bool = Field(
        default=prop_default(ExternalRedisProps, "password"),
        description="Whether the server requires a password (`redis-password` in the Secret). false for "
        "one that allows none, such as ElastiCache without in-transit encryption (it allows AUTH only with "
        "TLS, which Sentry 9.1.2 cannot use): then only the network keeps others out (docs/cluster.md).",
    )


class RedisConfig(Model):
    image: Image = Field(
        default=prop_default(RedisOptions, "image"),
        description="Redis image (with an external server: for redis-cli only).",
    )
    external: ExternalRedisConfig = Field(default_factory=ExternalRedisConfig)
    storage: Storage = Field(default=prop_default(RedisOptions, "storage"), description="AOF volume.")
    resources: Resources = Field(
        default=prop_default(RedisOptions, "resources"),
        description="Requests and limits; maxmemory is half the memory limit, and Redis evicts nothing "
        "(docs/operations.md: when Redis is full).",
    )
    pods: PodSettings = Field(default_factory=PodSettings)
    exporter_image: Image = Field(
        default=prop_default(RedisOptions, "exporter_image"),
        description="The redis_exporter beside the in-cluster Redis while sentry.metrics.enabled (its memory "
        "use for Prometheus).",
    )
    exporter_resources: Resources = Field(
        default=prop_default(RedisOptions, "exporter_resources"), description="The redis_exporter container."
    )
    migrate_from: ServerOrigin = Field(
        default="",
        description=MIGRATE_FROM_SERVER.format(what="Sentry's queue", procedure="Replacing Redis with an empty one"),
        examples=["in-cluster"],
    )

    @model_validator(mode="after")
    def _migrated_from_elsewhere(self) -> RedisConfig:
        _not_where_it_is("redis", self.migrate_from, self.external.host or "in-cluster")
        return self


class Ingress(Model):
    enabled: bool = Field(default=False, description="Create an Ingress for the web UI.")
    # The stack's own: the construct has no default host.
    host: IngressHost = Field(
        default="sentry.local", description="Host name the Ingress serves (a leading '*.' is allowed)."
    )
    class_name: KubeName | None = Field(
        default=prop_default(WebIngress, "class_name"), description="IngressClass; null uses the default."
    )
    tls_secret: KubeName | None = Field(
        default=prop_default(WebIngress, "tls_secret"), description="TLS Secret name; null serves plain HTTP."
    )
    annotations: dict[str, str] = Field(
        default=prop_default(WebIngress, "annotations"),
        description="Annotations of the Ingress. With class_name nginx or null, "
        "nginx.ingress.kubernetes.io/proxy-body-size is 100m unless given here: Sentry's uploads exceed "
        "ingress-nginx's default 1m (docs/cluster.md).",
    )


class WebConfig(Model):
    replicas: int = Field(
        default=prop_default(SentryWebOptions, "replicas"),
        ge=1,
        le=50,
        description="Web pods; 2 keeps the UI up during a rollout.",
    )
    resources: Resources = Field(default=prop_default(SentryWebOptions, "resources"))
    # The stack's own defaults: minikube is reached on a NodePort (the library's is ClusterIP).
    service_type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = Field(default="NodePort")
    node_port: int = Field(
        default=30000,
        ge=30000,
        le=32767,
        description="NodePort of the web Service.",
    )
    service_annotations: dict[str, str] = Field(
        default=prop_default(SentryWebOptions, "service_annotations"), description="Annotations of the web Service."
    )
    ingress: Ingress = Field(default_factory=Ingress)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    pods: PodSettings = Field(default_factory=PodSettings)


class WorkerConfig(Model):
    replicas: int = Field(default=prop_default(SentryWorkerOptions, "replicas"), ge=1, le=50)
    concurrency: int = Field(
        default=prop_default(SentryWorkerOptions, "concurrency"),
        ge=1,
        le=64,
        description="Celery processes per worker pod.",
    )
    resources: Resources = Field(default=prop_default(SentryWorkerOptions, "resources"))
    termination_grace_seconds: int = Field(
        default=prop_default(SentryWorkerOptions, "termination_grace_seconds"),
        ge=30,
        description="Time a stopping worker gets to finish its running tasks.",
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    pods: PodSettings = Field(default_factory=PodSettings)


class CronConfig(Model):
    resources: Resources = Field(default=prop_default(SentryCronOptions, "resources"))
    pods: PodSettings = Field(default_factory=PodSettings)


class MigrationsConfig(Model):
    resources: Resources = Field(default=prop_default(SentryMigrationsOptions, "resources"))
    backoff_limit: int = Field(default=prop_default(SentryMigrationsOptions, "backoff_limit"), ge=0, le=10)
    active_deadline_seconds: int = Field(
        default=prop_default(SentryMigrationsOptions, "active_deadline_seconds"), ge=300
    )
    pods: PodSettings = Field(default_factory=PodSettings)


class CleanupConfig(Model):
    enabled: bool = Field(default=True, description="Run `sentry cleanup` on a schedule.")
    days: int = Field(
        default=prop_default(SentryCleanupOptions, "days"), ge=1, le=3650, description="Keep events for this many days."
    )
    schedule: CronSchedule = Field(default=prop_default(SentryCleanupOptions, "schedule"))
    resources: Resources = Field(default=prop_default(SentryCleanupOptions, "resources"))


class FilestoreConfig(model_of(props.Storage)):  # type: ignore[misc]
    """Where Sentry keeps release files, source maps and debug files."""

    backend: Literal["filesystem", "s3", "gcs"] = Field(
        default="filesystem",
        description="filesystem: a PersistentVolumeClaim (size, storage_class, access_mode); s3 or gcs: a "
        "bucket, and no claim.",
    )
    s3: S3Filestore = Field(default_factory=S3Filestore)
    gcs: GcsFilestore = Field(default_factory=GcsFilestore)
    migrate_from: Annotated[str, Field(pattern=r"^$|^filesystem$|^(s3|gcs)://[a-z0-9][a-z0-9._-]{1,220}$")] = Field(
        default="",
        description="Where Sentry's files were before they moved here: 'filesystem' (the claim), "
        "'s3://BUCKET' or 'gcs://BUCKET'. The synth refuses a change of where the files live unless "
        "this names the old place, and copies nothing itself: follow "
        "docs/operations.md, Moving Sentry's files between a volume and a bucket, first; remove it afterwards.",
        examples=["filesystem"],
    )

    @model_validator(mode="after")
    def _bucket_for_object_stores(self) -> FilestoreConfig:
        if self.backend in ("s3", "gcs") and not getattr(self, self.backend).bucket:
            raise ValueError(f"{self.backend}.bucket is required with backend {self.backend}")
        return self

    @property
    def location(self) -> str:
        """Where the files are, as migrate_from names it."""
        return (
            "filesystem" if self.backend == "filesystem" else f"{self.backend}://{getattr(self, self.backend).bucket}"
        )

    @model_validator(mode="after")
    def _migrated_from_elsewhere(self) -> FilestoreConfig:
        _not_where_it_is("sentry.filestore", self.migrate_from, self.location)
        return self


class MetricsConfig(Model):
    """Sentry's statsd metrics, exported for Prometheus by a statsd exporter."""

    enabled: bool = Field(
        default=False,
        description="Run a Prometheus statsd exporter and send Sentry's metrics to it; with the in-cluster "
        "Redis, also a redis_exporter beside it (`redis.exporter_image`).",
    )
    image: Image = Field(default=prop_default(StatsdExporterOptions, "image"), description="The exporter's image.")
    resources: Resources = Field(default=prop_default(StatsdExporterOptions, "resources"))
    service_monitor: bool = Field(
        default=prop_default(StatsdExporterOptions, "service_monitor"),
        description="Also emit a ServiceMonitor (needs the Prometheus Operator's CRDs).",
    )
    service_monitor_labels: dict[str, str] = Field(
        default=prop_default(StatsdExporterOptions, "service_monitor_labels"),
        description="Labels your Prometheus selects ServiceMonitors by (e.g. release).",
    )
    scrape_interval_seconds: int = Field(
        default=prop_default(StatsdExporterOptions, "scrape_interval_seconds"),
        ge=5,
        le=600,
        description="The ServiceMonitor's interval.",
    )


class SentryConfig(Model):
    image: Image = Field(default=prop_default(SentryRuntimeOptions, "image"), description="Stock Sentry image.")
    auth_image: Image = Field(
        default="sentry-k8s/sentry-auth:9.1.2",
        description="The project's image (images/sentry-auth: the GitHub/GitLab login plugins, the gcs "
        "filestore's library, psycopg2 built against the image's OpenSSL), used when a login, the gcs "
        "filestore or TLS to an external PostgreSQL is on.",
    )
    image_pull_policy: PullPolicy = Field(default=prop_default(SentryRuntimeOptions, "image_pull_policy"))
    admin_email: str = Field(
        default=prop_default(SentryMigrationsOptions, "admin_email"),
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Superuser created by the migration Job.",
    )
    create_admin: bool = Field(
        default=prop_default(SentryMigrationsOptions, "create_admin"),
        description="Create the superuser once, on the first successful migration (recorded in the "
        "database, so a renamed or removed admin is never re-created); false never creates one.",
    )
    url_prefix: UrlOrigin = Field(
        default=prop_default(SentryRuntimeOptions, "url_prefix"),
        description="Public URL of Sentry (system.url-prefix), e.g. https://sentry.example.com. Empty: Sentry "
        "9.1.2 does not take it from requests; until the first administrator enters it on Sentry's setup page "
        "(kept in the database), DSNs show empty and the links Sentry builds (mail, chunk uploads) have no host.",
    )
    single_organization: bool = Field(default=prop_default(SentryRuntimeOptions, "single_organization"))
    allow_registration: bool = Field(
        default=prop_default(SentryRuntimeOptions, "allow_registration"),
        description="Show Sentry's Register form on the login page, so anyone who reaches it can make "
        "an account; off: the admin invites members.",
    )
    beacon: bool = Field(
        default=prop_default(SentryRuntimeOptions, "beacon"),
        description="Send Sentry's anonymous usage beacon (version and counts) to sentry.io every hour.",
    )
    web: WebConfig = Field(default_factory=WebConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    cron: CronConfig = Field(default_factory=CronConfig)
    migrations: MigrationsConfig = Field(default_factory=MigrationsConfig)
    filestore: FilestoreConfig = Field(
        default_factory=lambda: FilestoreConfig(**_fields(prop_default(SentryRuntimeOptions, "filestore")))
    )
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    smtp: SmtpConfig = Field(default=prop_default(SentryRuntimeOptions, "smtp"))
    github: GithubConfig = Field(default=prop_default(SentryRuntimeOptions, "github"))
    gitlab: GitlabConfig = Field(default=prop_default(SentryRuntimeOptions, "gitlab"))
    extra_env: ExtraEnv = Field(
        default=prop_default(SentryRuntimeOptions, "extra_env"),
        description="Extra environment variables of every Sentry container (not for secrets: they are "
        "plain values in the manifest). A name the stack sets itself is refused.",
        examples=[{"SENTRY_WEB_WORKERS": "4"}],
    )
    conf_py_extra: PythonSettings = Field(
        default=prop_default(SentryRuntimeOptions, "conf_py_extra"),
        description="Python appended to sentry.conf.py, after the project's own settings (it runs under "
        "Python 2.7: ASCII only; it must also compile as Python 3, which the synth checks).",
        examples=["SENTRY_FEATURES['auth:register'] = False\n"],
    )
    config_yml_extra: YamlOptions = Field(
        default=prop_default(SentryRuntimeOptions, "config_yml_extra"),
        description="Options (a YAML mapping) appended to config.yml, which Sentry reads after sentry.conf.py.",
        examples=["system.admin-email: ops@example.com\n"],
    )

    metrics: MetricsConfig = Field(default_factory=MetricsConfig)


class NetworkConfig(Model):
    """NetworkPolicies (constructs/network_policies.py): deny by default, allow what the stack needs."""

    policies: bool = Field(
        default=True,
        description="Synthesize NetworkPolicies. They take effect only with a CNI that enforces them "
        "(minikube: `--cni=calico` or `--cni=cilium`).",
    )
    dns_namespace: DnsLabel | None = Field(
        default=prop_default(NetworkPoliciesOptions, "dns_namespace"),
        description="Namespace of the cluster DNS pods every pod may query on port 53; null allows "
        "port 53 to any address (e.g. NodeLocal DNSCache).",
    )
    dns_pod_labels: dict[str, str] = Field(
        default=prop_default(NetworkPoliciesOptions, "dns_pod_labels"),
        description="Labels of the cluster DNS pods (CoreDNS keeps the kube-dns label).",
    )
    sentry_egress_cidrs: list[Cidr] = Field(
        default=list(prop_default(NetworkPoliciesOptions, "sentry_egress_cidrs")),
        description="Where web, worker and cron may connect outside the stack (GitHub/GitLab login, "
        "integrations, mail); [] for nowhere.",
    )
    sentry_egress_ports: list[Port] = Field(
        default_factory=lambda: [443],
        description="TCP ports for that; `sentry.smtp.port` is added when `sentry.smtp.host` is set.",
    )
    offsite_egress_cidrs: list[Cidr] = Field(
        default=list(prop_default(NetworkPoliciesOptions, "offsite_egress_cidrs")),
        description="Where the backup Job may connect for its offsite copy, on the S3 endpoint's port.",
    )
    egress_except_cidrs: list[Cidr] = Field(
        default=list(prop_default(NetworkPoliciesOptions, "egress_except_cidrs")),
        description="Carved out of every egress CIDR above that contains them. To reach a host in one "
        "of these ranges (a private SMTP relay, MinIO), list its own CIDR above.",
    )
    ingress_namespace: DnsLabel | None = Field(
        default=prop_default(NetworkPoliciesOptions, "ingress_namespace"),
        description="Namespace of the Ingress controller's pods. With sentry.web.ingress and service_type "
        "ClusterIP (the Ingress the only way in, its X-Forwarded-* headers trusted), only they may reach "
        "the web port; null lets any pod and address in (a controller on the host network).",
    )


def _fields(value: object) -> dict[str, object]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}  # type: ignore[arg-type]


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
        default="sentry",
        description="Namespace everything is created in; kube-* are refused, and so are namespaces "
        "shared on most clusters (default, monitoring, ...) unless namespace_shared is true.",
    )
    namespace_shared: bool = Field(
        default=False,
        description="false: the namespace is the stack's own: dist/ creates it, labels it for Pod Security "
        "restricted and denies every pod in it all traffic by default. true: it exists already and holds "
        "other workloads: dist/ neither creates nor labels it, and the NetworkPolicies select only the "
        "stack's own pods.",
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
        description="Annotations of the pods' ServiceAccount. Not a way to reach a bucket without keys: "
        "Sentry 9.1.2 cannot use IAM roles for service accounts or GKE Workload Identity (docs/cluster.md), "
        "so the s3 and gcs filestores take keys.",
        examples=[{"example.com/owner": "observability"}],
    )
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)

    @property
    def sentry_image(self) -> str:
        """The image every Sentry pod runs. The stock image cannot log in with GitHub/GitLab,
        nor use the gcs filestore, nor talk TLS to PostgreSQL from its web pods (its
        psycopg2-binary brings an OpenSSL of its own, and uWSGI, linked with the image's,
        crashes in SSL_new: docs/cluster.md); the project's image (images/sentry-auth) can."""
        sentry, external = self.sentry, self.postgres.external
        if (
            sentry.github.login_enabled
            or sentry.gitlab.login_enabled
            or sentry.filestore.backend == "gcs"
            or (external.host and external.sslmode != "disable")
        ):
            return sentry.auth_image
        return sentry.image

    @model_validator(mode="after")
    def _shared_namespace_is_said_to_be(self) -> StackConfig:
        if self.namespace in SHARED_NAMESPACES and not self.namespace_shared:
            raise ValueError(
                f"namespace: {self.namespace!r} holds other workloads on most clusters: the stack would label it "
                "for Pod Security restricted and deny every pod in it all traffic. Choose a namespace of the "
                "stack's own (e.g. sentry), or set namespace_shared: true (the stack then neither creates nor "
                "labels it, and its NetworkPolicies select only its own pods)"
            )
        return self

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
