"""SentryStack: composes the whole stack into three charts, one file each in dist/.

- `00-namespace`: the Namespace, first, so `kubectl apply -f dist/` creates it before
  anything that lives in it;
- `10-secrets`: the Secret alone, so the rest of dist/ can be reviewed, diffed or
  committed without secret material (absent with `secrets.existing_secret`);
- `20-sentry`: everything else, including the NetworkPolicies and the pods' ServiceAccount;
- `90-restore`: the PostgreSQL restore Job, only with `postgres.backup.restore.enabled`
  (it replaces the databases: see the README's restore runbook).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import cdk8s
import cdk8s_plus_27 as kplus

from constructs.config import StackConfig
from constructs.namespace import SentryNamespace
from constructs.naming import StackNames
from constructs.network_policies import NetworkPolicies, NetworkPoliciesProps
from constructs.pod_security import (
    POD_SECURITY_LABELS,
    SERVICE_ACCOUNT_COMPONENT,
    harden_workloads,
    service_account,
)
from constructs.postgres_with_backup import (
    POSTGRES_PORT,
    PostgresRestore,
    PostgresRestoreProps,
    PostgresWithBackup,
    PostgresWithBackupProps,
)
from constructs.redis_broker import REDIS_PORT, RedisBroker, RedisBrokerProps
from constructs.sentry_cleanup import SentryCleanup, SentryCleanupProps
from constructs.sentry_cron import SentryCron, SentryCronProps
from constructs.sentry_migrations import SentryMigrations, SentryMigrationsProps
from constructs.sentry_runtime import SENTRY_PORT, SentryRuntime, SentryRuntimeProps
from constructs.sentry_web import SentryWeb, SentryWebProps
from constructs.sentry_worker import SentryWorker, SentryWorkerProps
from constructs.stack_secrets import StackSecrets
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
        # With existing_secret nothing is emitted above: workloads reference the user's Secret by name.
        secret = kplus.Secret.from_secret_name(chart, "secret-ref", names.secret_name)

        self.postgres = PostgresWithBackup(
            chart,
            "postgres",
            PostgresWithBackupProps(
                config=config.postgres,
                component=names.postgres,
                backup_component=names.backup,
                secret=secret,
                image_pull_policy=pull_policy(config.sentry.image_pull_policy),
                # SentryRuntime below creates this claim; the backup archives it.
                filestore_claim=names.sentry("filestore").name,
            ),
        )
        self.redis = RedisBroker(
            chart,
            "redis",
            RedisBrokerProps(
                config=config.redis,
                component=names.redis,
                secret=secret,
                image_pull_policy=pull_policy(config.sentry.image_pull_policy),
            ),
        )
        sentry = config.sentry
        ingress = sentry.web.ingress
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
            ),
        )
        self.web = SentryWeb(
            chart, "web", SentryWebProps(config=sentry.web, component=names.sentry("web"), runtime=self.runtime)
        )
        self.worker = SentryWorker(
            chart,
            "worker",
            SentryWorkerProps(config=sentry.worker, component=names.sentry("worker"), runtime=self.runtime),
        )
        self.cron = SentryCron(
            chart, "cron", SentryCronProps(config=sentry.cron, component=names.sentry("cron"), runtime=self.runtime)
        )
        if sentry.cleanup.enabled:
            SentryCleanup(
                chart,
                "cleanup",
                SentryCleanupProps(config=sentry.cleanup, component=names.sentry("cleanup"), runtime=self.runtime),
            )

        backup = config.postgres.backup
        restore_enabled = backup.enabled and backup.restore.enabled
        # One ServiceAccount for every pod, with no RBAC binding and no token: no pod
        # calls the API server. harden_workloads puts it, seccomp and dropped
        # capabilities on every pod template (see pod_security.py).
        self.service_account = service_account(chart, names.sentry(SERVICE_ACCOUNT_COMPONENT))
        if config.network.policies:
            sentry_pods = [names.sentry(c) for c in ("web", "worker", "cron", "migrations")]
            if sentry.cleanup.enabled:
                sentry_pods.append(names.sentry("cleanup"))
            # The restore's policies are always here, not in 90-restore: the runbook applies
            # only 90-restore.k8s.yaml (20-sentry would scale Sentry back up), and no restore
            # pod exists unless the restore Job does.
            database_clients = [names.backup, names.restore] if backup.enabled else []
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
                    postgres=names.postgres,
                    postgres_port=POSTGRES_PORT,
                    redis=names.redis,
                    redis_port=REDIS_PORT,
                    database_clients=database_clients,
                    offsite=names.backup if backup.enabled and backup.offsite.enabled else None,
                    offsite_port=endpoint.port or (80 if endpoint.scheme == "http" else 443),
                ),
            )
        harden_workloads(chart, self.service_account.name)

        if restore_enabled:
            restore_chart = cdk8s.Chart(
                app, "90-restore", namespace=config.namespace, disable_resource_name_hashes=True
            )
            PostgresRestore(
                restore_chart,
                "restore",
                PostgresRestoreProps(
                    postgres=self.postgres,
                    component=names.restore,
                    secret=kplus.Secret.from_secret_name(restore_chart, "secret-ref", names.secret_name),
                ),
            )
            harden_workloads(restore_chart, self.service_account.name)
