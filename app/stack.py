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

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import cdk8s
import cdk8s_plus_27 as kplus
from pydantic import BaseModel

from app.config import Autoscaling, BackupConfig, FilestoreConfig, StackConfig
from constructs.endpoints import (
    CaCertificate,
    ExternalPostgres,
    ExternalPostgresProps,
    ExternalRedis,
    ExternalRedisProps,
    PostgresEndpoint,
    RedisEndpoint,
)
from constructs.namespace import SentryNamespace, SentryNamespaceProps
from constructs.naming import Component, image_tag
from constructs.network_policies import NetworkPolicies, NetworkPoliciesProps
from constructs.pod_security import (
    SERVICE_ACCOUNT_COMPONENT,
    service_account,
    unhardened,
)
from constructs.postgres_with_backup import (
    BackupOptions,
    OffsiteCopy,
    PostgresBackup,
    PostgresBackupProps,
    PostgresRestore,
    PostgresRestoreProps,
    PostgresWithBackup,
    PostgresWithBackupProps,
)
from constructs.props import GcsFilestore, S3Filestore, Storage
from constructs.redis_broker import RedisBroker, RedisBrokerProps
from constructs.secret_keys import SENTRY_SECRET_KEY
from constructs.sentry_cleanup import SentryCleanup, SentryCleanupProps
from constructs.sentry_cron import SentryCron, SentryCronProps
from constructs.sentry_migrations import SentryMigrations, SentryMigrationsProps
from constructs.sentry_runtime import SENTRY_PORT, SentryRuntime, SentryRuntimeProps
from constructs.sentry_web import SentryWeb, SentryWebProps, WebIngress
from constructs.sentry_worker import SentryWorker, SentryWorkerProps
from constructs.stack_secrets import StackSecrets, StackSecretsProps
from constructs.statsd_exporter import METRICS_PORT, STATSD_PORT, StatsdExporter, StatsdExporterProps
from constructs.workload import CpuAutoscaling


@dataclass(frozen=True)
class StackNames:
    """The components of one stack, named from its values (see naming.py)."""

    config: StackConfig

    def _make(self, app: str, component: str, image: str) -> Component:
        return Component(self.config.release, app, component, image_tag(image))

    @property
    def postgres(self) -> Component:
        return self._make("postgresql", "postgresql", self.config.postgres.image)

    @property
    def backup(self) -> Component:
        return self._make("postgresql", "backup", self.config.postgres.image)

    @property
    def restore(self) -> Component:
        return self._make("postgresql", "restore", self.config.postgres.image)

    @property
    def redis(self) -> Component:
        return self._make("redis", "redis", self.config.redis.image)

    def sentry(self, component: str) -> Component:
        return self._make("sentry", component, self.config.sentry.effective_image)

    @property
    def secrets(self) -> Component:
        return Component(self.config.release, "sentry", "secrets", image_tag(self.config.sentry.effective_image))

    @property
    def namespace(self) -> Component:
        return Component(self.config.release, "sentry", "namespace", image_tag(self.config.sentry.effective_image))

    @property
    def secret_name(self) -> str:
        """The Secret every workload reads: ours, or the user's `existing_secret`."""
        return self.config.secrets.existing_secret or f"{self.config.release}-secrets"


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
            ns_chart,
            "namespace",
            SentryNamespaceProps(name=config.namespace, component=names.namespace),
        )

        if secret_values:
            secrets_chart = cdk8s.Chart(
                app, "10-secrets", namespace=config.namespace, disable_resource_name_hashes=True
            )
            StackSecrets(
                secrets_chart,
                "secrets",
                StackSecretsProps(name=names.secret_name, component=names.secrets, values=secret_values),
            )

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

        pg_cfg, redis_cfg, sentry = config.postgres, config.redis, config.sentry
        pull = sentry.image_pull_policy
        # SentryRuntime below creates this claim (filesystem filestore); the backups archive it.
        # With a bucket, backing the files up is the bucket's job.
        files_claim = names.sentry("filestore").name if sentry.filestore.backend == "filesystem" else None
        # Where metrics go, when on: the statsd exporter made below.
        statsd = (names.sentry("metrics").name, STATSD_PORT) if sentry.metrics.enabled else None
        backup = pg_cfg.backup
        self.postgres: PostgresEndpoint
        self.redis: RedisEndpoint
        if pg_cfg.external.host:
            ext = pg_cfg.external
            self.postgres = ExternalPostgres(
                chart,
                "postgres",
                _props(
                    ExternalPostgresProps,
                    ext,
                    database=pg_cfg.database,
                    user=pg_cfg.user,
                    secret=secret,
                    client_image=pg_cfg.image,
                    ca=_props(CaCertificate, ext.ca) if ext.ca is not None else None,
                    can_dump_roles=ext.superuser,
                ),
            )
        else:
            self.postgres = PostgresWithBackup(
                chart,
                "postgres",
                _props(
                    PostgresWithBackupProps,
                    pg_cfg,
                    component=names.postgres,
                    backup_component=names.backup,
                    secret=secret,
                    backup=_backup_options(backup) if backup.enabled else None,
                    image_pull_policy=pull,
                    pods=pg_cfg.pods.over(config.pods),
                    backup_pods=config.pods,
                    service_account=account,
                    filestore_claim=files_claim,
                    backup_statsd=statsd,
                ),
            )
        if redis_cfg.external.host:
            self.redis = ExternalRedis(
                chart,
                "redis",
                _props(ExternalRedisProps, redis_cfg.external, secret=secret, client_image=redis_cfg.image),
            )
        else:
            self.redis = RedisBroker(
                chart,
                "redis",
                _props(
                    RedisBrokerProps,
                    redis_cfg,
                    component=names.redis,
                    secret=secret,
                    image_pull_policy=pull,
                    pods=redis_cfg.pods.over(config.pods),
                    service_account=account,
                ),
            )
        web, worker, ingress, metrics = sentry.web, sentry.worker, sentry.web.ingress, sentry.metrics
        self.metrics: StatsdExporter | None = None
        if metrics.enabled:
            self.metrics = StatsdExporter(
                chart,
                "metrics",
                _props(
                    StatsdExporterProps,
                    metrics,
                    component=names.sentry("metrics"),
                    image_pull_policy=pull,
                    pods=config.pods,
                    service_account=account,
                ),
            )
        self.runtime = SentryRuntime(
            chart,
            "sentry",
            _props(
                SentryRuntimeProps,
                sentry,
                config_component=names.sentry("config"),
                filestore_component=names.sentry("filestore"),
                postgres=self.postgres,
                redis=self.redis,
                secret=secret,
                # The login plugins and the gcs filestore need the project's image.
                image=sentry.effective_image,
                filestore=_filestore(sentry.filestore),
                use_ssl=ingress.enabled and bool(ingress.tls_secret),
                # Only when the Ingress is the one way in: a NodePort or LoadBalancer beside it
                # would let a client set X-Forwarded-Host/-For itself.
                trusted_proxy=ingress.enabled and web.service_type == "ClusterIP",
                statsd=(self.metrics.host, self.metrics.statsd_port) if self.metrics else None,
                service_account=account,
            ),
        )
        self.migrations = SentryMigrations(
            chart,
            "migrations",
            _props(
                SentryMigrationsProps,
                sentry.migrations,
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
            _props(
                SentryWebProps,
                web,
                component=names.sentry("web"),
                runtime=self.runtime,
                migrations=self.migrations,
                ingress=_props(WebIngress, ingress) if ingress.enabled else None,
                autoscaling=_autoscaling(web.autoscaling),
                pods=web.pods.over(config.pods),
            ),
        )
        self.worker = SentryWorker(
            chart,
            "worker",
            _props(
                SentryWorkerProps,
                worker,
                component=names.sentry("worker"),
                runtime=self.runtime,
                migrations=self.migrations,
                autoscaling=_autoscaling(worker.autoscaling),
                pods=worker.pods.over(config.pods),
            ),
        )
        self.cron = SentryCron(
            chart,
            "cron",
            _props(
                SentryCronProps,
                sentry.cron,
                component=names.sentry("cron"),
                runtime=self.runtime,
                migrations=self.migrations,
                pods=sentry.cron.pods.over(config.pods),
            ),
        )
        self.cleanup: SentryCleanup | None = None
        if sentry.cleanup.enabled:
            self.cleanup = SentryCleanup(
                chart,
                "cleanup",
                _props(
                    SentryCleanupProps,
                    sentry.cleanup,
                    component=names.sentry("cleanup"),
                    runtime=self.runtime,
                    migrations=self.migrations,
                    pods=config.pods,
                ),
            )

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
                    options=_backup_options(backup),
                    image_pull_policy=pull,
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
            network = config.network
            NetworkPolicies(
                chart,
                "network-policies",
                _props(
                    NetworkPoliciesProps,
                    network,
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
        _roll_on_secret_change(chart, names.secret_name, secret_values)

        if restore_enabled:
            assert self.backup is not None
            restore_chart = cdk8s.Chart(
                app, "90-restore", namespace=config.namespace, disable_resource_name_hashes=True
            )
            PostgresRestore(
                restore_chart,
                "restore",
                _props(
                    PostgresRestoreProps,
                    backup.restore,
                    postgres=self.postgres,
                    backup_claim=self.backup.claim_name,
                    component=names.restore,
                    secret=kplus.Secret.from_secret_name(restore_chart, "secret-ref", names.secret_name),
                    filestore_claim=files_claim,
                    image_pull_policy=pull,
                    service_account=account,
                ),
            )
            _check_hardened(restore_chart)


P = TypeVar("P")


def _props(props_type: type[P], values: BaseModel, **given: Any) -> P:
    """Props of `props_type`: every prop the values group has under the same name, copied
    from it, and the rest `given` (which win). The values model names its keys after the
    props, so only what the stack derives or supplies itself is written out here."""
    copied = {
        field.name: getattr(values, field.name)
        for field in dataclasses.fields(props_type)
        if field.name in type(values).model_fields and field.name not in given
    }
    return props_type(**copied, **given)


def _autoscaling(values: Autoscaling) -> CpuAutoscaling | None:
    return _props(CpuAutoscaling, values) if values.enabled else None


def _filestore(values: FilestoreConfig) -> Storage | S3Filestore | GcsFilestore:
    """The values' backend, and the settings of that backend only."""
    if values.backend == "s3":
        return values.s3
    if values.backend == "gcs":
        return values.gcs
    return Storage(size=values.size, storage_class=values.storage_class, access_mode=values.access_mode)


def _backup_options(values: BackupConfig) -> BackupOptions:
    offsite = values.offsite
    return _props(BackupOptions, values, offsite=_props(OffsiteCopy, offsite) if offsite.enabled else None)


SECRETS_CHECKSUM = "checksum/secrets"


def secret_keys_used(manifest: Mapping[str, Any], secret: str, all_keys: Any) -> set[str]:
    """The keys of Secret `secret` a workload's pod template reads (env, or a volume)."""
    spec = manifest["spec"]["template"]["spec"]
    used: set[str] = set()
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == secret:
                used.add(ref["key"])
    for volume in spec.get("volumes", []):
        source = volume.get("secret")
        if source and source["secretName"] == secret:
            items = source.get("items")
            used |= {item["key"] for item in items} if items else set(all_keys)
    return used


def _roll_on_secret_change(chart: cdk8s.Chart, secret: str, values: Mapping[str, str]) -> None:
    """Put a checksum of the secret values each Deployment and StatefulSet reads on its pod
    template, so that a changed value rolls exactly the pods that use it: a container reads
    its secretKeyRefs only when it starts. The PostgreSQL server is left out: it reads its
    password only when its volume is first initialised, so a restart would change nothing
    (rotating it is a procedure: docs/operations.md). Jobs and CronJobs start new pods anyway.

    Keyed with the Sentry secret key, so the manifests (reviewable, without secret material)
    do not carry a plain hash that a weak password could be guessed from. None with
    secrets.existing_secret: the synth never sees those values."""
    if not values:
        return
    mac_key = values[SENTRY_SECRET_KEY.key].encode()
    for node in chart.node.find_all():
        if not cdk8s.ApiObject.is_api_object(node) or node.kind not in ("Deployment", "StatefulSet"):
            continue
        api_object = cdk8s.ApiObject.of(node)
        manifest = api_object.to_json()
        if manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "postgresql":
            continue
        used = secret_keys_used(manifest, secret, values)
        if not used:
            continue
        message = json.dumps({key: values[key] for key in sorted(used)}, sort_keys=True).encode()
        checksum = hmac.new(mac_key, message, hashlib.sha256).hexdigest()
        if manifest["spec"]["template"].get("metadata", {}).get("annotations") is None:
            patch = cdk8s.JsonPatch.add("/spec/template/metadata/annotations", {SECRETS_CHECKSUM: checksum})
        else:
            patch = cdk8s.JsonPatch.add(
                f"/spec/template/metadata/annotations/{SECRETS_CHECKSUM.replace('/', '~1')}", checksum
            )
        api_object.add_json_patch(patch)


def _check_hardened(chart: cdk8s.Chart) -> None:
    """Every construct hardens its own workloads; a workload that escaped is a bug."""
    missing = unhardened(chart.to_json())
    if missing:
        raise RuntimeError(f"not hardened (its construct must call pod_security.harden): {', '.join(missing)}")
