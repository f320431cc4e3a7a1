"""PostgresWithBackup: PostgreSQL for Sentry, and a CronJob that dumps it to its own volume."""

from __future__ import annotations

from dataclasses import dataclass

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import PostgresConfig
from constructs.naming import Component
from constructs.secrets_store import POSTGRES_PASSWORD
from constructs.workload import (
    bash_command,
    container_resources,
    cron,
    metadata,
    patch,
    plain_env,
    pod_metadata,
    seconds,
    secret_env,
    select,
    service_for,
    volume_claim_template,
)
from imports import k8s

POSTGRES_PORT = 5432
# The postgres image's own user. Running as it (not root) skips the entrypoint's
# chown/gosu step; fsGroup makes the volume writable for it.
POSTGRES_UID = 999
DATA_MOUNT = "/var/lib/postgresql/data"
# A subdirectory, because the volume root may hold lost+found and initdb
# refuses a non-empty directory.
PGDATA = f"{DATA_MOUNT}/pgdata"
BACKUP_MOUNT = "/backups"


@dataclass(frozen=True)
class PostgresWithBackupProps:
    """Props of PostgresWithBackup."""

    config: PostgresConfig
    """Image, database, storage, resources and backup settings (defaults: see PostgresConfig)."""
    component: Component
    """Names and labels of the database objects."""
    backup_component: Component
    """Names and labels of the backup CronJob and its volume."""
    secret: kplus.ISecret
    """Secret holding `postgres-password`."""
    image_pull_policy: kplus.ImagePullPolicy = kplus.ImagePullPolicy.IF_NOT_PRESENT
    """Pull policy; default IfNotPresent."""


def postgres_security(read_only_root: bool = True) -> kplus.ContainerSecurityContextProps:
    return kplus.ContainerSecurityContextProps(
        ensure_non_root=True,
        user=POSTGRES_UID,
        group=POSTGRES_UID,
        read_only_root_filesystem=read_only_root,
        allow_privilege_escalation=False,
        privileged=False,
    )


class PostgresWithBackup(Construct):
    """A one-replica PostgreSQL StatefulSet, its Service, and a daily verified dump.

    Clients connect to `host`:`port` as `user`, with the password from the Secret.
    `client_env()` gives a container the standard libpq variables for this server.
    """

    def __init__(self, scope: Construct, id: str, props: PostgresWithBackupProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp = props.component
        cfg = props.config
        self.host = comp.name
        self.port = POSTGRES_PORT
        self.image = cfg.image
        self.user = cfg.user
        self.database = cfg.database
        self.service = service_for(
            self, comp, [kplus.ServicePort(name="postgresql", port=POSTGRES_PORT, target_port=POSTGRES_PORT)]
        )
        self.statefulset = self._statefulset()
        if cfg.backup.enabled:
            self.backup_claim = self._backup_claim()
            self.backup = self._backup_cronjob()

    def client_env(self, database: str | None = None) -> dict[str, kplus.EnvValue]:
        """libpq environment for a client of this server; the password comes from the Secret."""
        return {
            **plain_env(
                {
                    "PGHOST": self.host,
                    "PGPORT": str(self.port),
                    "PGUSER": self.user,
                    "PGDATABASE": database or self.database,
                }
            ),
            "PGPASSWORD": secret_env(self.props.secret, POSTGRES_PASSWORD.key),
        }

    def _statefulset(self) -> kplus.StatefulSet:
        comp, cfg = self.props.component, self.props.config
        ready = ["/bin/sh", "-c", f'pg_isready -h 127.0.0.1 -p {POSTGRES_PORT} -U "$POSTGRES_USER" -d "$POSTGRES_DB"']
        sts = kplus.StatefulSet(
            self,
            "statefulset",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp),
            select=False,
            replicas=1,
            service=self.service,
            automount_service_account_token=False,
            # Give a busy database time to checkpoint and shut down cleanly.
            termination_grace_period=seconds(120),
            security_context=kplus.PodSecurityContextProps(
                ensure_non_root=True, user=POSTGRES_UID, group=POSTGRES_UID, fs_group=POSTGRES_UID
            ),
            containers=[
                kplus.ContainerProps(
                    name="postgresql",
                    image=cfg.image,
                    image_pull_policy=self.props.image_pull_policy,
                    port_number=POSTGRES_PORT,
                    env_variables={
                        **plain_env({"POSTGRES_USER": cfg.user, "POSTGRES_DB": cfg.database, "PGDATA": PGDATA}),
                        "POSTGRES_PASSWORD": secret_env(self.props.secret, POSTGRES_PASSWORD.key),
                    },
                    resources=container_resources(cfg.resources),
                    security_context=postgres_security(),
                    # initdb on first start can take a while on slow disks.
                    startup=kplus.Probe.from_command(
                        ready, period_seconds=seconds(5), failure_threshold=60, timeout_seconds=seconds(5)
                    ),
                    readiness=kplus.Probe.from_command(
                        ready, period_seconds=seconds(10), failure_threshold=3, timeout_seconds=seconds(5)
                    ),
                    liveness=kplus.Probe.from_command(
                        ready, period_seconds=seconds(20), failure_threshold=6, timeout_seconds=seconds(5)
                    ),
                    volume_mounts=[
                        kplus.VolumeMount(
                            path="/var/run/postgresql",
                            volume=kplus.Volume.from_empty_dir(self, "run", "run"),
                        ),
                        kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(self, "tmp", "tmp")),
                    ],
                )
            ],
        )
        select(sts, comp)
        patch(
            sts,
            "/spec/volumeClaimTemplates",
            [volume_claim_template("data", comp, cfg.storage.size, cfg.storage.storage_class, cfg.storage.access_mode)],
        )
        patch(sts, "/spec/template/spec/containers/0/volumeMounts/-", {"name": "data", "mountPath": DATA_MOUNT})
        return sts

    def _backup_claim(self) -> k8s.KubePersistentVolumeClaim:
        comp, storage = self.props.backup_component, self.props.config.backup.storage
        return k8s.KubePersistentVolumeClaim(
            self,
            "backup-claim",
            metadata=k8s.ObjectMeta(name=comp.name, labels=comp.labels),
            spec=k8s.PersistentVolumeClaimSpec(
                access_modes=[storage.access_mode],
                storage_class_name=storage.storage_class,
                resources=k8s.ResourceRequirements(requests={"storage": k8s.Quantity.from_string(storage.size)}),
            ),
        )

    def _backup_cronjob(self) -> kplus.CronJob:
        comp, cfg = self.props.backup_component, self.props.config
        backup = cfg.backup
        claim = kplus.PersistentVolumeClaim.from_claim_name(self, "backup-claim-ref", self.backup_claim.name)
        job = kplus.CronJob(
            self,
            "backup",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp),
            select=False,
            schedule=cron(backup.schedule),
            time_zone="Etc/UTC",
            concurrency_policy=kplus.ConcurrencyPolicy.FORBID,
            # cdk8s-plus defaults to 10 s, which silently skips a run whenever the
            # controller is a little late (e.g. after a node restart).
            starting_deadline=seconds(backup.starting_deadline_seconds),
            successful_jobs_retained=3,
            failed_jobs_retained=3,
            backoff_limit=backup.backoff_limit,
            active_deadline=seconds(backup.active_deadline_seconds),
            restart_policy=kplus.RestartPolicy.NEVER,
            automount_service_account_token=False,
            security_context=kplus.PodSecurityContextProps(
                ensure_non_root=True, user=POSTGRES_UID, group=POSTGRES_UID, fs_group=POSTGRES_UID
            ),
            containers=[
                kplus.ContainerProps(
                    name="backup",
                    image=cfg.image,
                    image_pull_policy=self.props.image_pull_policy,
                    command=bash_command("postgres-backup"),
                    env_variables={
                        **self.client_env(database="postgres"),
                        **plain_env({"BACKUP_DIR": BACKUP_MOUNT, "BACKUP_KEEP": str(backup.keep)}),
                    },
                    resources=container_resources(backup.resources),
                    security_context=postgres_security(),
                    volume_mounts=[
                        kplus.VolumeMount(
                            path=BACKUP_MOUNT,
                            volume=kplus.Volume.from_persistent_volume_claim(self, "backups", claim, name="backups"),
                        )
                    ],
                )
            ],
        )
        return job
