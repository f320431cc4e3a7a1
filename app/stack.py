"""SentryStack: the values file's stack, as charts: one file each in dist/.

- `00-namespace`: the Namespace, first, so `kubectl apply -f dist/` creates it before
  anything that lives in it (absent with `namespace_shared`: that namespace exists already);
- `10-secrets`: the Secret alone, so the rest of dist/ can be reviewed, diffed or
  committed without secret material (absent with `secrets.existing_secret`);
- `20-sentry`: everything else: the `Sentry` construct (constructs/sentry.py), which makes
  the NetworkPolicies and the pods' ServiceAccount too;
- `90-restore`: the PostgreSQL restore Job, only with `postgres.backup.restore.enabled`
  (it replaces the databases: see the restore runbook in docs/operations.md).

The values model (app/config.py) names its keys after the constructs' options, so the
mapping below copies the groups over (`_props`) and writes out only what the stack derives
itself: toggles become present-or-None option groups, a release's names, the capacity
target's single node.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, TypeVar

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
from constructs.network_policies import NetworkPoliciesOptions
from constructs.pod_security import unhardened
from constructs.postgres_backup import BackupOptions, OffsiteCopy
from constructs.postgres_restore import PostgresRestore, PostgresRestoreProps
from constructs.postgres_with_backup import PostgresOptions
from constructs.props import GcsFilestore, S3Filestore, Storage
from constructs.redis_broker import RedisOptions
from constructs.secret_keys import SENTRY_SECRET_KEY
from constructs.sentry import Sentry, SentryProps, ServiceAccountOptions
from constructs.sentry_cleanup import SentryCleanupOptions
from constructs.sentry_cron import SentryCronOptions
from constructs.sentry_migrations import SentryMigrationsOptions
from constructs.sentry_runtime import SentryRuntimeOptions
from constructs.sentry_web import SentryWebOptions, WebIngress
from constructs.sentry_worker import SentryWorkerOptions
from constructs.stack_secrets import StackSecrets, StackSecretsProps
from constructs.statsd_exporter import StatsdExporterOptions
from constructs.workload import CpuAutoscaling

SENTRY_ID = "sentry"


class SentryStack:
    """The full Sentry stack for one configuration and its resolved secret values.

    Not a construct itself: its charts are direct children of the app, so each
    synthesizes to a plainly named file (`dist/00-namespace.k8s.yaml`, ...).
    """

    def __init__(self, app: cdk8s.App, config: StackConfig, secret_values: Mapping[str, str]) -> None:
        self.config = config
        version = image_tag(config.sentry_image)
        own = Component(release=config.release, app="sentry", component="namespace", version=version, part_of="sentry")
        # A shared namespace exists already and is not the stack's to label (namespace_shared).
        self.namespace = None
        if not config.namespace_shared:
            self.namespace = SentryNamespace(
                cdk8s.Chart(app, "00-namespace", disable_resource_name_hashes=True),
                "namespace",
                SentryNamespaceProps(name=config.namespace, component=own),
            )
        if secret_values:
            StackSecrets(
                self._chart(app, "10-secrets"),
                "secrets",
                StackSecretsProps(name=self.secret_name, component=own.sibling("secrets"), values=secret_values),
            )
        self.chart = self._chart(app, "20-sentry")
        # With existing_secret nothing is emitted above: workloads reference the user's Secret by name.
        secret = kplus.Secret.from_secret_name(self.chart, "secret-ref", self.secret_name)
        self.sentry = Sentry(self.chart, SENTRY_ID, self._sentry_props(secret))
        _check_hardened(self.chart)
        _roll_on_secret_change(self.chart, self.secret_name, secret_values)
        if self.sentry.backup is not None and config.postgres.backup.restore.enabled:
            self._restore(app)

    @property
    def secret_name(self) -> str:
        """The Secret every workload reads: ours, or the user's `existing_secret`."""
        return self.config.secrets.existing_secret or f"{self.config.release}-secrets"

    def _chart(self, app: cdk8s.App, name: str) -> cdk8s.Chart:
        return cdk8s.Chart(app, name, namespace=self.config.namespace, disable_resource_name_hashes=True)

    def _sentry_props(self, secret: kplus.ISecret) -> SentryProps:
        config, sentry = self.config, self.config.sentry
        web, ingress = sentry.web, sentry.web.ingress
        backup = config.postgres.backup
        return SentryProps(
            secret=secret,
            release=config.release,
            postgres=self._postgres(secret),
            redis=self._redis(secret),
            sentry=_props(
                SentryRuntimeOptions,
                sentry,
                # The login plugins, the gcs filestore and TLS to PostgreSQL need the project's image.
                image=config.sentry_image,
                filestore=_filestore(sentry.filestore),
            ),
            web=_props(
                SentryWebOptions,
                web,
                node_port=web.node_port if web.service_type != "ClusterIP" else None,
                ingress=_props(WebIngress, ingress) if ingress.enabled else None,
                autoscaling=_autoscaling(web.autoscaling),
            ),
            worker=_props(SentryWorkerOptions, sentry.worker, autoscaling=_autoscaling(sentry.worker.autoscaling)),
            cron=_props(SentryCronOptions, sentry.cron),
            migrations=_props(
                SentryMigrationsOptions,
                sentry.migrations,
                admin_email=sentry.admin_email,
                create_admin=sentry.create_admin,
            ),
            cleanup=_props(SentryCleanupOptions, sentry.cleanup) if sentry.cleanup.enabled else None,
            backup=_backup_options(backup) if backup.enabled else None,
            metrics=_props(StatsdExporterOptions, sentry.metrics) if sentry.metrics.enabled else None,
            network_policies=_props(NetworkPoliciesOptions, config.network, namespace_wide=not config.namespace_shared)
            if config.network.policies
            else None,
            service_account=ServiceAccountOptions(annotations=dict(config.service_account_annotations)),
            pods=config.pods,
            # minikube or one named node: every pod shares it (capacity.target).
            single_node=config.capacity.target != "none",
        )

    def _postgres(self, secret: kplus.ISecret) -> PostgresEndpoint | PostgresOptions:
        pg = self.config.postgres
        if not pg.external.host:
            return _props(PostgresOptions, pg)
        ext = pg.external
        return ExternalPostgres(
            self.chart,
            "postgres",
            _props(
                ExternalPostgresProps,
                ext,
                database=pg.database,
                user=pg.user,
                secret=secret,
                client_image=pg.image,
                ca=_props(CaCertificate, ext.ca) if ext.ca is not None else None,
                can_dump_roles=ext.superuser,
            ),
        )

    def _redis(self, secret: kplus.ISecret) -> RedisEndpoint | RedisOptions:
        redis = self.config.redis
        if not redis.external.host:
            return _props(RedisOptions, redis)
        return ExternalRedis(
            self.chart,
            "redis",
            _props(ExternalRedisProps, redis.external, secret=secret, client_image=redis.image),
        )

    def _restore(self, app: cdk8s.App) -> None:
        sentry, backup = self.sentry, self.sentry.backup
        assert backup is not None
        chart = self._chart(app, "90-restore")
        PostgresRestore(
            chart,
            "restore",
            _props(
                PostgresRestoreProps,
                self.config.postgres.backup.restore,
                postgres=sentry.postgres,
                backup_claim=backup.claim_name,
                component=sentry.restore_component,
                secret=kplus.Secret.from_secret_name(chart, "secret-ref", self.secret_name),
                filestore_claim=backup.props.filestore_claim,
                image_pull_policy=self.config.sentry.image_pull_policy,
                service_account=sentry.service_account_name,
            ),
        )
        _check_hardened(chart)


P = TypeVar("P")


def _props(props_type: type[P], values: BaseModel, **given: Any) -> P:
    """Props (or options) of `props_type`: every field the values group has under the same
    name, copied from it, and the rest `given` (which win). The values model names its keys
    after the props, so only what the stack derives or supplies itself is written out."""
    copied = {
        field.name: getattr(values, field.name)
        for field in dataclasses.fields(props_type)  # type: ignore[arg-type]
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
    """Every workload is hardened when the chart is synthesized; one that escaped is a bug."""
    missing = unhardened(chart.to_json())
    if missing:
        raise RuntimeError(f"not hardened (its construct must call workload.finish): {', '.join(missing)}")
