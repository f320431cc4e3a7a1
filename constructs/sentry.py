"""Sentry: the whole Sentry tier in one construct, the front door of the library.

It composes the lower-level constructs the way `aws-ecs-patterns` does: give it a
PostgreSQL and a Redis (`PostgresEndpoint`, `RedisEndpoint`: an ExternalPostgres, an
ExternalRedis, or servers of your own) or let it create them in the cluster
(PostgresWithBackup, RedisBroker); then the shared Sentry configuration (SentryRuntime),
the migration Job, web, worker, cron, the cleanup, the backups, the metrics exporter, the
NetworkPolicies and the pods' ServiceAccount, each from an option group with documented
defaults. Every object is named `<release>-<part>` (the release is the construct's id
unless given) and labelled with the standard `app.kubernetes.io/*` labels, the version
label taken from its image's tag.

Sentry on your managed servers, in a chart of yours:

    secret = kplus.Secret.from_secret_name(chart, "secret", "sentry-credentials")
    Sentry(chart, "sentry", SentryProps(
        secret=secret,
        postgres=ExternalPostgres(chart, "db", ExternalPostgresProps(
            host="db.internal", secret=secret, client_image="postgres:15.8", sslmode="require")),
        redis=ExternalRedis(chart, "cache", ExternalRedisProps(host="10.0.0.5", secret=secret)),
    ))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from urllib.parse import urlsplit

import cdk8s_plus_27 as kplus

from constructs import Construct, images
from constructs.checks import DnsLabel, extend, fail, props
from constructs.endpoints import PostgresEndpoint, RedisEndpoint
from constructs.naming import Component, LabelValue, image_tag, release_from_id
from constructs.network_policies import NetworkPolicies, NetworkPoliciesOptions, NetworkPoliciesProps
from constructs.pod_security import SERVICE_ACCOUNT_COMPONENT, service_account
from constructs.postgres_backup import BackupOptions, PostgresBackup, PostgresBackupProps
from constructs.postgres_with_backup import PostgresOptions, PostgresWithBackup, PostgresWithBackupProps
from constructs.props import GcsFilestore, PodSettings, S3Filestore, Storage
from constructs.redis_broker import RedisBroker, RedisBrokerProps, RedisMetrics, RedisOptions
from constructs.secret_keys import SecretKeys
from constructs.sentry_cleanup import SentryCleanup, SentryCleanupOptions, SentryCleanupProps
from constructs.sentry_cron import SentryCron, SentryCronOptions, SentryCronProps
from constructs.sentry_migrations import SentryMigrations, SentryMigrationsOptions, SentryMigrationsProps
from constructs.sentry_runtime import SENTRY_PORT, SentryRuntime, SentryRuntimeOptions, SentryRuntimeProps
from constructs.sentry_web import SentryWeb, SentryWebOptions, SentryWebProps
from constructs.sentry_worker import SentryWorker, SentryWorkerOptions, SentryWorkerProps
from constructs.statsd_exporter import (
    METRICS_PORT,
    STATSD_PORT,
    StatsdExporter,
    StatsdExporterOptions,
    StatsdExporterProps,
)


@props
class ServiceAccountOptions:
    """The pods' own ServiceAccount: no RBAC binding, no token mounted."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    """Annotations of the account. A cloud identity given here (eks.amazonaws.com/role-arn,
    iam.gke.io/gcp-service-account) is not used by Sentry 9.1.2, whose buckets take keys
    (S3Filestore, GcsFilestore). Default: none."""


@props
class SentryProps:
    """Props of Sentry. Everything but the Secret has a default: Sentry 9.1.2 with PostgreSQL
    and Redis in the cluster, backed up daily, behind a ClusterIP Service."""

    secret: kplus.ISecret
    """The Secret every pod reads its passwords and keys from (names: `secret_keys`)."""
    release: DnsLabel | None = None
    """The instance: prefix of every object name, app.kubernetes.io/instance. Default: the
    construct's id."""
    part_of: LabelValue = "sentry"
    """app.kubernetes.io/part-of of every object. Default: sentry."""
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret`. Default: the stack's names (SecretKeys())."""
    postgres: PostgresEndpoint | PostgresOptions = PostgresOptions()
    """The database: a server you give (an ExternalPostgres, or a PostgresEndpoint of your
    own), or the options of one made in the cluster (PostgresWithBackup). Default: PostgreSQL
    9.6 in the cluster."""
    redis: RedisEndpoint | RedisOptions = RedisOptions()
    """The broker and cache: a server you give (ExternalRedis), or the options of one made in
    the cluster (RedisBroker). Default: Redis 6.2 in the cluster."""
    sentry: SentryRuntimeOptions = SentryRuntimeOptions()
    """What every Sentry pod shares: image, public URL, sign-up, files, mail, login. Default:
    SentryRuntimeOptions()."""
    web: SentryWebOptions = SentryWebOptions()
    """The web pods and their Service (ClusterIP by default) and Ingress. Default: 2 replicas."""
    worker: SentryWorkerOptions = SentryWorkerOptions()
    """The Celery workers. Default: 2 replicas."""
    cron: SentryCronOptions | None = SentryCronOptions()
    """The scheduler (exactly one pod). Default: on; None: none (a Sentry without it sends no
    digests and runs no periodic task)."""
    migrations: SentryMigrationsOptions = SentryMigrationsOptions()
    """The migration Job and the first superuser. Default: SentryMigrationsOptions()."""
    cleanup: SentryCleanupOptions | None = SentryCleanupOptions()
    """`sentry cleanup` on a schedule. Default: daily, keeping 90 days; None: none."""
    backup: BackupOptions | None = BackupOptions()
    """Backups of the database, in the cluster or external (and of the filestore claim).
    Default: daily at 03:00 UTC, the newest 7 kept; None: none."""
    metrics: StatsdExporterOptions | None = None
    """A Prometheus statsd exporter for Sentry's metrics. Default: none."""
    network_policies: NetworkPoliciesOptions | None = NetworkPoliciesOptions()
    """NetworkPolicies for every pod of the tier (they work with a CNI that enforces them).
    Default: on, denying what the tier does not need."""
    service_account: ServiceAccountOptions | None = ServiceAccountOptions()
    """The pods' own ServiceAccount. Default: one without RBAC or token; None: the namespace's
    default account (no token mounted either way)."""
    pods: PodSettings = PodSettings()
    """Pod settings of every pod, where a group's own `pods` leaves a key unset. Default: none."""
    single_node: bool = False
    """Every pod runs on one node (minikube), so a ReadWriteOnce filestore can be shared by web
    and worker. Default: false: pods may spread across nodes."""

    def __post_init__(self) -> None:
        files = self.sentry.filestore
        if isinstance(files, Storage) and files.access_mode != "ReadWriteMany" and not self.single_node:
            fail(
                self,
                "sentry",
                f"filestore: web and worker pods on several nodes all mount the filestore, so its "
                f"access_mode must be ReadWriteMany, not {files.access_mode} (or use S3Filestore or "
                "GcsFilestore; on a single node, say so with single_node=True)",
            )
        plugins = self.sentry.github.login_enabled or self.sentry.gitlab.login_enabled
        stock = images.contract_for(self.sentry.image) is images.SENTRY
        if stock and (plugins or isinstance(files, GcsFilestore)):
            fail(
                self,
                "sentry",
                f"image {self.sentry.image} has neither the GitHub/GitLab login plugins nor the gcs "
                "filestore's library: build images/sentry-auth and give it as sentry.image",
            )
        if stock and isinstance(self.postgres, PostgresEndpoint) and self.postgres.tls:
            fail(
                self,
                "postgres",
                f"a PostgreSQL reached over TLS needs another image than {self.sentry.image}: its "
                "psycopg2-binary brings an OpenSSL of its own, and the web pods' uWSGI, linked with "
                "the image's, crash in SSL_new on the first connection (docs/cluster.md). Build "
                "images/sentry-auth (psycopg2 built against the image's OpenSSL) and give it as "
                "sentry.image, or use sslmode disable on a private network",
            )


class Sentry(Construct):
    """The whole Sentry tier; see the module docstring. Its parts are attributes (`postgres`,
    `redis`, `runtime`, `migrations`, `web`, `worker`, `cron`, `cleanup`, `backup`, `metrics`)
    for escape hatches: anything added to their workloads is hardened at synth too."""

    def __init__(self, scope: Construct, id: str, props: SentryProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.release = props.release or release_from_id(id)
        opts = props.sentry
        pull = opts.image_pull_policy
        self.service_account_name = self._service_account()
        account = self.service_account_name
        self.metrics = self._metrics(props, account)
        statsd = (self.metrics.host, self.metrics.statsd_port) if self.metrics else None
        files_claim = self.sentry_component("filestore").name if isinstance(opts.filestore, Storage) else None

        self.postgres: PostgresEndpoint
        if isinstance(props.postgres, PostgresOptions):
            pg = props.postgres
            self.postgres = PostgresWithBackup(
                self,
                "postgres",
                extend(
                    PostgresWithBackupProps,
                    pg,
                    pods=pg.pods.over(props.pods),
                    secret=props.secret,
                    component=self.component("postgresql", "postgresql", pg.image),
                    backup=props.backup,
                    backup_component=self.component("postgresql", "backup", pg.image),
                    backup_pods=props.pods,
                    image_pull_policy=pull,
                    service_account=account,
                    filestore_claim=files_claim,
                    backup_statsd=statsd,
                    secret_keys=props.secret_keys,
                ),
            )
        else:
            self.postgres = props.postgres
        self.redis: RedisEndpoint
        if isinstance(props.redis, RedisOptions):
            self.redis = RedisBroker(
                self,
                "redis",
                extend(
                    RedisBrokerProps,
                    props.redis,
                    pods=props.redis.pods.over(props.pods),
                    secret=props.secret,
                    component=self.component("redis", "redis", props.redis.image),
                    image_pull_policy=pull,
                    service_account=account,
                    secret_keys=props.secret_keys,
                    # With metrics, Redis's own (its memory use) too, scraped like the exporter's.
                    metrics=extend(RedisMetrics, props.metrics) if props.metrics is not None else None,
                ),
            )
        else:
            self.redis = props.redis

        web = props.web
        ingress = web.ingress
        # The Ingress is the one way in, unless a NodePort or LoadBalancer is beside it: a client
        # reaching web directly could set X-Forwarded-Host/-For itself.
        self.behind_ingress = ingress is not None and web.service_type == "ClusterIP"
        self.runtime = SentryRuntime(
            self,
            "sentry",
            extend(
                SentryRuntimeProps,
                opts,
                config_component=self.sentry_component("config"),
                filestore_component=self.sentry_component("filestore"),
                postgres=self.postgres,
                redis=self.redis,
                secret=props.secret,
                secret_keys=props.secret_keys,
                use_ssl=ingress is not None and bool(ingress.tls_secret),
                trusted_proxy=self.behind_ingress,
                statsd=statsd,
                service_account=account,
            ),
        )
        self._sentry_workloads(props)
        self.backup: PostgresBackup | None = self._backup(props, account, files_claim, statsd)
        if props.network_policies is not None:
            self._network_policies(props.network_policies)

    # --- names ---------------------------------------------------------------------------

    def component(self, app: str, part: str, image: str) -> Component:
        """The component of one part of this tier: `<release>-<part>`, versioned by its image."""
        return Component(
            release=self.release, app=app, component=part, version=image_tag(image), part_of=self.props.part_of
        )

    def sentry_component(self, part: str) -> Component:
        return self.component("sentry", part, self.props.sentry.image)

    @property
    def restore_component(self) -> Component:
        """The component a PostgresRestore of this tier's backups gets (the NetworkPolicies
        let it reach the database)."""
        return self.component("postgresql", "restore", self.postgres.client_image)

    # --- parts ---------------------------------------------------------------------------

    def _service_account(self) -> str | None:
        if self.props.service_account is None:
            return None
        account = service_account(
            self,
            self.sentry_component(SERVICE_ACCOUNT_COMPONENT),
            dict(self.props.service_account.annotations),
        )
        return account.name

    def _metrics(self, props: SentryProps, account: str | None) -> StatsdExporter | None:
        if props.metrics is None:
            return None
        return StatsdExporter(
            self,
            "metrics",
            extend(
                StatsdExporterProps,
                props.metrics,
                pods=props.metrics.pods.over(props.pods),
                component=self.sentry_component("metrics"),
                image_pull_policy=props.sentry.image_pull_policy,
                service_account=account,
            ),
        )

    def _sentry_workloads(self, props: SentryProps) -> None:
        rt, pods = self.runtime, props.pods
        self.migrations = SentryMigrations(
            self,
            "migrations",
            extend(
                SentryMigrationsProps,
                props.migrations,
                pods=props.migrations.pods.over(pods),
                component=self.sentry_component("migrations"),
                runtime=rt,
            ),
        )
        wiring = {"runtime": rt, "migrations": self.migrations}
        self.web = SentryWeb(
            self,
            "web",
            extend(
                SentryWebProps,
                props.web,
                **wiring,
                pods=props.web.pods.over(pods),
                component=self.sentry_component("web"),
            ),
        )
        self.worker = SentryWorker(
            self,
            "worker",
            extend(
                SentryWorkerProps,
                props.worker,
                **wiring,
                pods=props.worker.pods.over(pods),
                component=self.sentry_component("worker"),
            ),
        )
        self.cron: SentryCron | None = None
        if props.cron is not None:
            self.cron = SentryCron(
                self,
                "cron",
                extend(
                    SentryCronProps,
                    props.cron,
                    **wiring,
                    pods=props.cron.pods.over(pods),
                    component=self.sentry_component("cron"),
                ),
            )
        self.cleanup: SentryCleanup | None = None
        if props.cleanup is not None:
            self.cleanup = SentryCleanup(
                self,
                "cleanup",
                extend(
                    SentryCleanupProps,
                    props.cleanup,
                    **wiring,
                    pods=props.cleanup.pods.over(pods),
                    component=self.sentry_component("cleanup"),
                ),
            )

    def _backup(
        self, props: SentryProps, account: str | None, files_claim: str | None, statsd: tuple[str, int] | None
    ) -> PostgresBackup | None:
        # In the cluster, PostgresWithBackup made its own; an external server gets one here.
        if isinstance(self.postgres, PostgresWithBackup):
            return self.postgres.backup
        if props.backup is None:
            return None
        return PostgresBackup(
            self,
            "backup",
            PostgresBackupProps(
                postgres=self.postgres,
                component=self.component("postgresql", "backup", self.postgres.client_image),
                secret=props.secret,
                options=props.backup,
                image_pull_policy=props.sentry.image_pull_policy,
                filestore_claim=files_claim,
                pods=props.pods,
                service_account=account,
                statsd=statsd,
                secret_keys=props.secret_keys,
            ),
        )

    def _network_policies(self, options: NetworkPoliciesOptions) -> None:
        sentry_pods = [self.sentry_component(c) for c in ("web", "worker", "migrations")]
        internet = [self.sentry_component(c) for c in ("web", "worker")]
        if self.cron is not None:
            sentry_pods.insert(2, self.sentry_component("cron"))
            internet.append(self.sentry_component("cron"))
        if self.cleanup is not None:
            sentry_pods.append(self.sentry_component("cleanup"))
        backup = self.backup
        # The restore's policies are always here when there are backups: the restore runbook
        # applies only the restore Job, and no restore pod exists unless that Job does.
        database_clients = [backup.component, self.restore_component] if backup is not None else []
        smtp = self.props.sentry.smtp
        offsite = backup.props.options.offsite if backup is not None else None
        endpoint = urlsplit(offsite.endpoint_url) if offsite is not None else None
        NetworkPolicies(
            self,
            "network-policies",
            extend(
                NetworkPoliciesProps,
                options,
                stack=self.sentry_component("network"),
                web=self.sentry_component("web"),
                web_port=SENTRY_PORT,
                # Only the Ingress controller may reach the pods that trust its headers.
                web_behind_ingress=self.behind_ingress,
                sentry=sentry_pods,
                internet=internet,
                mail_ports=[smtp.port] if smtp.host else [],
                postgres=self.postgres.network,
                redis=self.redis.network,
                redis_metrics_port=self.redis.metrics_port if isinstance(self.redis, RedisBroker) else None,
                database_clients=database_clients,
                offsite=backup.component if backup is not None and offsite is not None else None,
                offsite_port=(endpoint.port or (80 if endpoint.scheme == "http" else 443)) if endpoint else 443,
                metrics=self.metrics.component if self.metrics else None,
                metrics_senders=[backup.component] if backup is not None else [],
                metrics_ports=(STATSD_PORT, METRICS_PORT),
            ),
        )


# What a user of the front door names most often, importable from here.
__all__ = [
    "BackupOptions",
    "GcsFilestore",
    "PodSettings",
    "S3Filestore",
    "Sentry",
    "SentryCleanupOptions",
    "SentryCronOptions",
    "SentryMigrationsOptions",
    "SentryProps",
    "SentryRuntimeOptions",
    "SentryWebOptions",
    "SentryWorkerOptions",
    "ServiceAccountOptions",
    "Storage",
]
