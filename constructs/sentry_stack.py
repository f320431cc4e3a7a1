"""SentryStack: composes the whole stack into three charts, one file each in dist/.

- `00-namespace`: the Namespace, first, so `kubectl apply -f dist/` creates it before
  anything that lives in it;
- `10-secrets`: the Secret alone, so the rest of dist/ can be reviewed, diffed or
  committed without secret material (absent with `secrets.existing_secret`);
- `20-sentry`: everything else, including the NetworkPolicies and the pods' ServiceAccount;
- `90-restore`: the PostgreSQL restore Job, only with `postgres.backup.restore.enabled`
  (it replaces the databases: see the restore runbook in docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import cdk8s
import cdk8s_plus_27 as kplus

from constructs.config import StackConfig
from constructs.endpoints import (
    CaCertificate,
    ExternalPostgres,
    ExternalRedis,
    PostgresEndpoint,
    RedisEndpoint,
)
from constructs.namespace import SentryNamespace
from constructs.naming import StackNames
from constructs.network_policies import NetworkPolicies, NetworkPoliciesProps
from constructs.pod_security import (
    POD_SECURITY_LABELS,
    SERVICE_ACCOUNT_COMPONENT,
    service_account,
    unhardened,
)
from constructs.postgres_with_backup import (
    PostgresBackup,
    PostgresBackupProps,
    PostgresRestore,
    PostgresRestoreProps,
    PostgresWithBackup,
    PostgresWithBackupProps,
)
from constructs.redis_broker import RedisBroker, RedisBrokerProps
from constructs.sentry_cleanup import SentryCleanup, SentryCleanupProps
from constructs.sentry_cron import SentryCron, SentryCronProps
from constructs.sentry_migrations import SentryMigrations, SentryMigrationsProps
from constructs.sentry_runtime import SENTRY_PORT, SentryRuntime, SentryRuntimeProps
from constructs.sentry_web import SentryWeb, SentryWebProps
from constructs.sentry_worker import SentryWorker, SentryWorkerProps
from constructs.stack_secrets import StackSecrets
from constructs.statsd_exporter import METRICS_PORT, STATSD_PORT, StatsdExporter, StatsdExporterProps
from constructs.workload import pull_policy


class SentryStack:
    """The full Sentry stack for one configuration and its resolved secret values.

    Not a construct itself: its charts are direct children of the app, so each
    synthesizes to a plainly named file (`dist/00-namespace.k8s.yaml`, ...).
    """

    def __init__(self, app: cdk8s.App, config: StackConfig, secret_values: Mapping[str, str]) -> None:
        names = StackNames(config)
        self.config = config
        self.names = names

        ns_chart = cdk8s.Chart(app, "00-namespace", disable_resource_name_hashes=True)
        self.namespace = SentryNamespace(
            ns_chart, "namespace", config.namespace, names.namespace, extra_labels=POD_SECURITY_LABELS
        )

        if secret_values:
            secrets_chart = cdk8s.Chart(
                app, "10-secrets", namespace=config.namespace, disable_resource_name_hashes=True
            )
            StackSecrets(secrets_chart, "secrets", names.secret_name, names.secrets, secret_values)

        chart = cdk8s.Chart(app, "20-sentry", namespace=config.namespace, disable_resource_name_hashes=True)
        self.chart = chart
        # One ServiceAccount for every pod, with no RBAC binding and no token: no pod
        # calls the API server. each construct puts it, seccomp and dropped
        # capabilities on every pod template (see pod_security.py).
        self.service_account = service_account(
            chart, names.sentry(SERVICE_ACCOUNT_COMPONENT), dict(config.service_account_annotations)
        )
        account = self.service_account.name
        # With existing_secret nothing is emitted above: workloads reference the user's Secret by name.
        secret = kplus.Secret.from_secret_name(chart, "secret-ref", names.secret_name)

        pg_cfg, redis_cfg = config.postgres, config.redis
        # SentryRuntime below creates this claim (filesystem filestore); the backups archive it.
        # With a bucket, backing the files up is the bucket's job.
        files_claim = names.sentry("filestore").name if config.sentry.filestore.backend == "filesystem" else None
        # Where metrics go, when on: the statsd exporter made below.
        statsd = (names.sentry("metrics").name, STATSD_PORT) if config.sentry.metrics.enabled else None
        self.postgres: PostgresEndpoint
        self.redis: RedisEndpoint
        if pg_cfg.external.host:
            ext = pg_cfg.external
            ca = (
                CaCertificate(key=ext.ca.key, secret=ext.ca.secret, config_map=ext.ca.config_map)
                if ext.ca is not None
                else None
            )
            self.postgres = ExternalPostgres(
                chart,
                "postgres",
                host=ext.host,
                port=ext.port,
                database=pg_cfg.database,
                user=pg_cfg.user,
                secret=secret,
                client_image=pg_cfg.image,
                sslmode=ext.sslmode,
                ca=ca,
                cidrs=ext.cidrs,
                can_dump_roles=ext.superuser,
            )
        else:
            self.postgres = PostgresWithBackup(
                chart,
                "postgres",
                PostgresWithBackupProps(
                    config=pg_cfg,
                    component=names.postgres,
                    backup_component=names.backup,
                    secret=secret,
                    image_pull_policy=pull_policy(config.sentry.image_pull_policy),
                    pods=pg_cfg.pods.over(config.pods),
                    backup_pods=config.pods,
                    service_account=account,
                    filestore_claim=files_claim,
                    backup_statsd=statsd,
                ),
            )
        if redis_cfg.external.host:
            ext_redis = redis_cfg.external
            self.redis = ExternalRedis(
                chart,
                "redis",
                host=ext_redis.host,
                port=ext_redis.port,
                db=ext_redis.db,
                secret=secret,
                client_image=redis_cfg.image,
                cidrs=ext_redis.cidrs,
            )
        else:
            self.redis = RedisBroker(
                chart,
                "redis",
                RedisBrokerProps(
                    config=redis_cfg,
                    component=names.redis,
                    secret=secret,
                    image_pull_policy=pull_policy(config.sentry.image_pull_policy),
                    pods=redis_cfg.pods.over(config.pods),
                    service_account=account,
                ),
            )
        sentry = config.sentry
        ingress = sentry.web.ingress
        self.metrics: StatsdExporter | None = None
        if sentry.metrics.enabled:
            self.metrics = StatsdExporter(
                chart,
                "metrics",
                StatsdExporterProps(
                    component=names.sentry("metrics"),
                    config=sentry.metrics,
                    image_pull_policy=sentry.image_pull_policy,
                    pods=config.pods,
                    service_account=account,
                ),
            )
        self.runtime = SentryRuntime(
            chart,
            "sentry",
            SentryRuntimeProps(
                config=sentry,
                config_component=names.sentry("config"),
                filestore_component=names.sentry("filestore"),
                postgres=self.postgres,
                redis=self.redis,
                secret=secret,
                use_ssl=ingress.enabled and bool(ingress.tls_secret),
                # Only when the Ingress is the one way in: a NodePort or LoadBalancer beside it
                # would let a client set X-Forwarded-Host/-For itself.
                trusted_proxy=ingress.enabled and sentry.web.service_type == "ClusterIP",
                statsd=(self.metrics.host, self.metrics.statsd_port) if self.metrics else None,
                service_account=account,
            ),
        )
        self.migrations = SentryMigrations(
            chart,
            "migrations",
            SentryMigrationsProps(
                config=sentry.migrations,
                component=names.sentry("migrations"),
                runtime=self.runtime,
                admin_email=sentry.admin_email,
                create_admin=sentry.create_admin,
                pods=sentry.migrations.pods.over(config.pods),
            ),
        )
        self.web = SentryWeb(
            chart,
            "web",
            SentryWebProps(
                config=sentry.web,
                component=names.sentry("web"),
                runtime=self.runtime,
                pods=sentry.web.pods.over(config.pods),
            ),
        )
        self.worker = SentryWorker(
            chart,
            "worker",
            SentryWorkerProps(
                config=sentry.worker,
                component=names.sentry("worker"),
                runtime=self.runtime,
                pods=sentry.worker.pods.over(config.pods),
            ),
        )
        self.cron = SentryCron(
            chart,
            "cron",
            SentryCronProps(
                config=sentry.cron,
                component=names.sentry("cron"),
                runtime=self.runtime,
                pods=sentry.cron.pods.over(config.pods),
            ),
        )
        if sentry.cleanup.enabled:
            SentryCleanup(
                chart,
                "cleanup",
                SentryCleanupProps(
                    config=sentry.cleanup, component=names.sentry("cleanup"), runtime=self.runtime, pods=config.pods
                ),
            )

        backup = config.postgres.backup
        # In the cluster, PostgresWithBackup made its own; an external server gets one here.
        self.backup: PostgresBackup | None = (
            self.postgres.backup if isinstance(self.postgres, PostgresWithBackup) else None
        )
        if backup.enabled and self.backup is None:
            self.backup = PostgresBackup(
                chart,
                "backup",
                PostgresBackupProps(
                    postgres=self.postgres,
                    component=names.backup,
                    secret=secret,
                    config=backup,
                    image_pull_policy=pull_policy(sentry.image_pull_policy),
                    filestore_claim=files_claim,
                    pods=config.pods,
                    service_account=account,
                    statsd=statsd,
                ),
            )
        restore_enabled = self.backup is not None and backup.restore.enabled
        if config.network.policies:
            sentry_pods = [names.sentry(c) for c in ("web", "worker", "cron", "migrations")]
            if sentry.cleanup.enabled:
                sentry_pods.append(names.sentry("cleanup"))
            # The restore's policies are always here, not in 90-restore: the runbook applies
            # only 90-restore.k8s.yaml (20-sentry would scale Sentry back up), and no restore
            # pod exists unless the restore Job does.
            database_clients = [names.backup, names.restore] if self.backup is not None else []
            smtp_ports = [sentry.smtp.port] if sentry.smtp.host else []
            endpoint = urlsplit(backup.offsite.endpoint_url)
            NetworkPolicies(
                chart,
                "network-policies",
                NetworkPoliciesProps(
                    config=config.network,
                    stack=names.sentry("network"),
                    web=names.sentry("web"),
                    web_port=SENTRY_PORT,
                    sentry=sentry_pods,
                    internet=[names.sentry(c) for c in ("web", "worker", "cron")],
                    internet_ports=[*config.network.sentry_egress_ports, *smtp_ports],
                    postgres=self.postgres.network,
                    redis=self.redis.network,
                    database_clients=database_clients,
                    offsite=names.backup if self.backup is not None and backup.offsite.enabled else None,
                    offsite_port=endpoint.port or (80 if endpoint.scheme == "http" else 443),
                    metrics=names.sentry("metrics") if self.metrics else None,
                    metrics_senders=[names.backup] if self.backup is not None else [],
                    metrics_ports=(STATSD_PORT, METRICS_PORT),
                ),
            )
        _check_hardened(chart)

        if restore_enabled:
            assert self.backup is not None
            restore_chart = cdk8s.Chart(
                app, "90-restore", namespace=config.namespace, disable_resource_name_hashes=True
            )
            PostgresRestore(
                restore_chart,
                "restore",
                PostgresRestoreProps(
                    postgres=self.postgres,
                    backup_claim=self.backup.claim_name,
                    component=names.restore,
                    secret=kplus.Secret.from_secret_name(restore_chart, "secret-ref", names.secret_name),
                    config=backup.restore,
                    filestore_claim=files_claim,
                    image_pull_policy=pull_policy(sentry.image_pull_policy),
                    service_account=account,
                ),
            )
            _check_hardened(restore_chart)


def _check_hardened(chart: cdk8s.Chart) -> None:
    """Every construct hardens its own workloads; a workload that escaped is a bug."""
    missing = unhardened(chart.to_json())
    if missing:
        raise RuntimeError(f"not hardened (its construct must call pod_security.harden): {', '.join(missing)}")
