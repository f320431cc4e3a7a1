"""PostgreSQL for Sentry, a CronJob that dumps it to its own volume, and an on-demand restore.

- PostgresWithBackup: the StatefulSet and Service; with `backup.enabled`, the backup
  volume and a CronJob running constructs/scripts/postgres-backup.sh (verified,
  compressed dumps of every database and role; retention), and with
  `backup.offsite.enabled` a second step copying each new dump to S3.
- PostgresRestore: a Job running constructs/scripts/postgres-restore.sh, which
  replaces the databases with a dump from the backup volume. SentryStack puts it in
  its own chart (dist/90-restore.k8s.yaml) and only when `backup.restore.enabled`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import PodSettings, PostgresConfig
from constructs.endpoints import NetworkTarget
from constructs.naming import Component
from constructs.placement import apply_pod_settings
from constructs.pod_security import harden
from constructs.secrets_store import POSTGRES_PASSWORD, S3_SECRET_ACCESS_KEY
from constructs.workload import (
    bash_command,
    claim,
    claim_volume,
    command_probe,
    container_resources,
    container_security,
    cron,
    metadata,
    plain_env,
    pod_metadata,
    pod_security,
    seconds,
    secret_env,
    select,
    service_for,
    statefulset_claim_name,
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
# Both scripts start in this database: pg_dumpall reads the roles there, and a
# restore must start in a database the dump does not drop while connected to it.
MAINTENANCE_DB = "postgres"


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
    pods: PodSettings = field(default_factory=PodSettings)
    """Placement and pod metadata of the database pod. Default: none."""
    backup_pods: PodSettings = field(default_factory=PodSettings)
    """Placement and pod metadata of the backup pods. Default: none."""
    service_account: str | None = None
    """ServiceAccount of the pods. Default: the namespace's default (no token either way)."""


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
        self.client_image = cfg.image
        self.user = cfg.user
        self.database = cfg.database
        # The image's POSTGRES_USER is the server's superuser: it may dump every role.
        self.can_dump_roles = True
        self.network = NetworkTarget(port=POSTGRES_PORT, pods=comp)
        self.service = service_for(
            self, comp, [kplus.ServicePort(name="postgresql", port=POSTGRES_PORT, target_port=POSTGRES_PORT)]
        )
        self.statefulset = self._statefulset()
        if cfg.backup.enabled:
            self.backup_claim = self._backup_claim()
            self.backup = self._backup_cronjob()
            harden(self.backup, props.service_account)
            apply_pod_settings(self.backup, props.backup_pods, props.backup_component)

    def client_env(self, database: str | None = None, secret: kplus.ISecret | None = None) -> dict[str, kplus.EnvValue]:
        """libpq environment for a client of this server; the password comes from the Secret
        (`secret`: the same Secret as seen from another chart)."""
        return {
            **plain_env(
                {
                    "PGHOST": self.host,
                    "PGPORT": str(self.port),
                    "PGUSER": self.user,
                    "PGDATABASE": database or self.database,
                }
            ),
            "PGPASSWORD": secret_env(secret or self.props.secret, POSTGRES_PASSWORD.key),
        }

    def client_mounts(self, scope: Construct) -> list[kplus.VolumeMount]:
        """Nothing to mount: in the cluster, clients connect without TLS."""
        return []

    @property
    def backup_claim_name(self) -> str:
        """The PersistentVolumeClaim holding the dumps (exists with backup.enabled)."""
        return self.props.backup_component.name

    def _statefulset(self) -> kplus.StatefulSet:
        comp, cfg = self.props.component, self.props.config
        ready = ["/bin/sh", "-c", f'pg_isready -h 127.0.0.1 -p {POSTGRES_PORT} -U "$POSTGRES_USER" -d "$POSTGRES_DB"']
        self.data_claim = claim(self, "data-claim", statefulset_claim_name(comp), comp, cfg.storage)
        data = claim_volume(self, "data", self.data_claim.name, "data")
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
            security_context=pod_security(POSTGRES_UID, POSTGRES_UID),
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
                    security_context=container_security(POSTGRES_UID, POSTGRES_UID),
                    # initdb on first start can take a while on slow disks.
                    startup=command_probe(ready, period=5, failures=60),
                    readiness=command_probe(ready, period=10, failures=3),
                    liveness=command_probe(ready, period=20, failures=6),
                    volume_mounts=[
                        kplus.VolumeMount(
                            path="/var/run/postgresql",
                            volume=kplus.Volume.from_empty_dir(self, "run", "run"),
                        ),
                        kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(self, "tmp", "tmp")),
                        kplus.VolumeMount(path=DATA_MOUNT, volume=data),
                    ],
                )
            ],
        )
        select(sts, comp)
        harden(sts, self.props.service_account)
        apply_pod_settings(sts, self.props.pods, comp)
        return sts

    def _backup_claim(self) -> k8s.KubePersistentVolumeClaim:
        comp = self.props.backup_component
        return claim(self, "backup-claim", comp.name, comp, self.props.config.backup.storage)

    def _backup_cronjob(self) -> kplus.CronJob:
        comp, cfg = self.props.backup_component, self.props.config
        backup, offsite = cfg.backup, cfg.backup.offsite
        claim = kplus.PersistentVolumeClaim.from_claim_name(self, "backup-claim-ref", self.backup_claim.name)
        backups = kplus.Volume.from_persistent_volume_claim(self, "backups", claim, name="backups")
        dump = kplus.ContainerProps(
            name="backup",
            image=cfg.image,
            image_pull_policy=self.props.image_pull_policy,
            command=bash_command("postgres-backup"),
            env_variables={
                **self.client_env(database=MAINTENANCE_DB),
                **plain_env(
                    {
                        "BACKUP_DIR": BACKUP_MOUNT,
                        "BACKUP_KEEP": str(backup.keep),
                        "BACKUP_GZIP_LEVEL": str(backup.compression_level),
                    }
                ),
            },
            resources=container_resources(backup.resources),
            security_context=container_security(POSTGRES_UID, POSTGRES_UID),
            volume_mounts=[kplus.VolumeMount(path=BACKUP_MOUNT, volume=backups)],
        )
        # With an offsite copy the dump runs first, as the init container, and the upload
        # only starts once the dump is complete and verified; the Job fails if either does.
        steps = [dump, self._offsite_container(backups)] if offsite.enabled else [dump]
        return kplus.CronJob(
            self,
            "backup",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp),
            select=False,
            schedule=cron(backup.schedule),
            time_zone="Etc/UTC",
            # A second run would start while the first still holds locks and disk space.
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
            security_context=pod_security(POSTGRES_UID, POSTGRES_UID),
            init_containers=steps[:-1],
            containers=steps[-1:],
        )

    def _offsite_container(self, backups: kplus.Volume) -> kplus.ContainerProps:
        offsite = self.props.config.backup.offsite
        return kplus.ContainerProps(
            name="offsite",
            image=offsite.image,
            image_pull_policy=self.props.image_pull_policy,
            command=bash_command("postgres-backup-offsite"),
            env_variables={
                **plain_env(
                    {
                        "BACKUP_DIR": BACKUP_MOUNT,
                        "S3_BUCKET": offsite.bucket,
                        "S3_PREFIX": offsite.prefix,
                        "S3_ENDPOINT_URL": offsite.endpoint_url,
                        "AWS_ACCESS_KEY_ID": offsite.access_key_id,
                        "AWS_DEFAULT_REGION": offsite.region,
                        # No instance-metadata lookups: the credentials come from the env.
                        "AWS_EC2_METADATA_DISABLED": "true",
                        # The image's home is not writable with a read-only root file system.
                        "HOME": "/tmp",
                    }
                ),
                "AWS_SECRET_ACCESS_KEY": secret_env(self.props.secret, S3_SECRET_ACCESS_KEY.key),
            },
            resources=container_resources(offsite.resources),
            security_context=container_security(POSTGRES_UID, POSTGRES_UID),
            volume_mounts=[
                kplus.VolumeMount(path=BACKUP_MOUNT, volume=backups, read_only=True),
                kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(self, "offsite-tmp", "tmp")),
            ],
        )


@dataclass(frozen=True)
class PostgresRestoreProps:
    """Props of PostgresRestore."""

    postgres: PostgresWithBackup
    """The server to restore into, and whose backup volume holds the dumps."""
    component: Component
    """Names and labels of the restore Job."""
    secret: kplus.ISecret
    """Secret holding `postgres-password` (as seen from the restore's chart)."""
    service_account: str | None = None
    """ServiceAccount of the pod. Default: the namespace's default (no token either way)."""


class PostgresRestore(Construct):
    """A Job that restores a dump from the backup volume into the running server.

    It replaces every database and role the dump holds, so it is synthesized only on
    demand, into a chart of its own; see the README's restore runbook. The Job never
    retries (a failed restore wants a person), has no TTL (a finished Job stays, so
    re-applying the same manifest does not restore again), mounts the backups
    read-only, and refuses to start while other clients are connected.
    """

    def __init__(self, scope: Construct, id: str, props: PostgresRestoreProps) -> None:
        super().__init__(scope, id)
        postgres, comp = props.postgres, props.component
        cfg = postgres.props.config
        restore = cfg.backup.restore
        claim = kplus.PersistentVolumeClaim.from_claim_name(self, "backup-claim-ref", postgres.backup_claim_name)
        self.job = kplus.Job(
            self,
            "job",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp),
            select=False,
            backoff_limit=0,
            active_deadline=seconds(restore.active_deadline_seconds),
            restart_policy=kplus.RestartPolicy.NEVER,
            automount_service_account_token=False,
            security_context=pod_security(POSTGRES_UID, POSTGRES_UID),
            containers=[
                kplus.ContainerProps(
                    name="restore",
                    image=cfg.image,
                    image_pull_policy=postgres.props.image_pull_policy,
                    command=bash_command("postgres-restore"),
                    env_variables={
                        **postgres.client_env(database=MAINTENANCE_DB, secret=props.secret),
                        **plain_env(
                            {
                                "BACKUP_DIR": BACKUP_MOUNT,
                                "RESTORE_FILE": restore.file,
                                "RESTORE_WAIT_SECONDS": str(restore.wait_for_clients_seconds),
                            }
                        ),
                    },
                    resources=container_resources(restore.resources),
                    security_context=container_security(POSTGRES_UID, POSTGRES_UID),
                    volume_mounts=[
                        kplus.VolumeMount(
                            path=BACKUP_MOUNT,
                            volume=kplus.Volume.from_persistent_volume_claim(
                                self, "backups", claim, name="backups", read_only=True
                            ),
                            read_only=True,
                        ),
                        kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(self, "tmp", "tmp")),
                    ],
                )
            ],
        )
        harden(self.job, props.service_account)
