"""PostgreSQL for Sentry, a CronJob that dumps it to its own volume, and an on-demand restore.

- PostgresWithBackup: the StatefulSet and Service, and (unless its `backup` prop is None)
  a PostgresBackup of it.
- PostgresBackup: for any PostgresEndpoint, the backup volume and a CronJob running
  constructs/scripts/postgres-backup.sh (verified, parallel directory-format dumps of
  the Sentry database (of every database, for the in-cluster server), the roles and the
  filestore; retention), and with an `offsite`
  copy a second step copying each new backup to S3.
- PostgresRestore: a Job running constructs/scripts/postgres-restore.sh, which
  replaces the backup's databases (and optionally the filestore) with a backup from the
  backup volume. SentryStack puts it in its own chart (dist/90-restore.k8s.yaml) and
  only when the values ask for it (`postgres.backup.restore.enabled`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cdk8s_plus_27 as kplus

from constructs import Construct, images
from constructs.endpoints import NetworkTarget, PostgresEndpoint
from constructs.naming import Component
from constructs.placement import apply_pod_settings
from constructs.pod_security import harden
from constructs.props import PodSettings, PullPolicy, Resources, Storage, resources
from constructs.secret_keys import POSTGRES_PASSWORD, S3_SECRET_ACCESS_KEY
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
    pull_policy,
    seconds,
    secret_env,
    select,
    service_for,
    statefulset_claim_name,
)

POSTGRES_PORT = 5432
# The postgres image's own user (constructs/images.py). Running as it (not root) skips the
# entrypoint's chown/gosu step; fsGroup makes the volume writable for it.
POSTGRES_UID = images.POSTGRES.uid
DATA_MOUNT = images.POSTGRES.paths["data"]
# A subdirectory, because the volume root may hold lost+found and initdb
# refuses a non-empty directory.
PGDATA = f"{DATA_MOUNT}/pgdata"
BACKUP_MOUNT = "/backups"
# Where the backup and restore pods mount the Sentry filestore: the path Sentry's
# own pods use, so that paths in logs mean the same everywhere.
FILESTORE_MOUNT = images.SENTRY.paths["filestore"]
# The restore starts in this database: it drops and re-creates the Sentry database,
# which it cannot do while connected to it.
MAINTENANCE_DB = "postgres"
# How long a backup run (e.g. a manual one) waits for another run to finish.
BACKUP_LOCK_WAIT_SECONDS = 3600


@dataclass(frozen=True)
class OffsiteCopy:
    """A copy of each verified backup in S3-compatible storage, made by the backup Job itself
    once the backup is complete; the secret key is `s3-secret-access-key` in the Secret."""

    bucket: str
    """Bucket name."""
    access_key_id: str
    """Access key id (not secret)."""
    image: str = "amazon/aws-cli:2.15.30"
    """Image with the aws CLI. Default: amazon/aws-cli:2.15.30."""
    prefix: str = "sentry-postgres/"
    """Key prefix inside the bucket: empty, or ending in '/'. Default: sentry-postgres/."""
    endpoint_url: str = ""
    """S3 endpoint of a non-AWS store (MinIO, Ceph). Default: empty, AWS."""
    region: str = "us-east-1"
    """Bucket region. Default: us-east-1."""
    resources: Resources = resources("50m", "128Mi", "500m", "512Mi")
    """Requests and limits of the upload. Default: 50m / 128Mi requested, 500m / 512Mi at most."""


@dataclass(frozen=True)
class BackupOptions:
    """What, when and how a PostgresBackup backs up."""

    schedule: str = "0 3 * * *"
    """Cron schedule, UTC. Default: 03:00 every day."""
    keep: int = 7
    """How many verified backups to keep (the newest N). Default: 7."""
    # zlib 2 costs about what 1 does on Sentry's (already compressed) event payloads and
    # packs them a little tighter: as small as gzip -1 of a plain dump (tools/bench_backup.py).
    compression_level: int = 2
    """zlib level of the per-table files and the filestore archive. Default: 2."""
    jobs: int = 2
    """Parallel pg_dump workers (one table is dumped by one worker). Default: 2."""
    roles: Literal["auto", "yes", "no"] = "auto"
    """Back up the roles too (pg_dumpall --globals-only). Default: auto, when the endpoint's
    user may read them (a superuser)."""
    filestore: bool = True
    """Archive the Sentry filestore claim (PostgresBackupProps.filestore_claim) with each
    backup, mounted read-only. Default: true."""
    starting_deadline_seconds: int = 3600
    """How late a missed run may still start. Default: 3600 (cdk8s-plus's 10 s would silently
    skip a run whenever the controller is a little late)."""
    active_deadline_seconds: int = 3 * 3600
    """Kill a run that takes longer. Default: 3 hours."""
    backoff_limit: int = 2
    """Retries of a failed run. Default: 2."""
    storage: Storage = Storage(size="8Gi")
    """The backup volume. Default: 8Gi, the cluster's default storage class."""
    # Compression is the backup's bottleneck (tools/bench_backup.py): a limit of 2 CPUs lets
    # both dump workers compress at once. A limit only caps; the small request keeps the
    # backup's CPU weight low whenever Sentry needs the CPU.
    resources: Resources = resources("50m", "64Mi", "2", "256Mi")
    """Requests and limits of the dump. Default: 50m / 64Mi requested, 2 CPUs / 256Mi at most."""
    offsite: OffsiteCopy | None = None
    """A copy of each backup in S3-compatible storage. Default: none."""


@dataclass(frozen=True)
class PostgresWithBackupProps:
    """Props of PostgresWithBackup."""

    component: Component
    """Names and labels of the database objects."""
    backup_component: Component
    """Names and labels of the backup CronJob and its volume."""
    secret: kplus.ISecret
    """Secret holding `postgres-password`."""
    image: str = "postgres:9.6.24"
    """PostgreSQL image (its uid 999 is the pod's). Default: postgres:9.6.24; Sentry 9.1 was
    tested on 9.5 and 9.6."""
    database: str = "sentry"
    """Name of Sentry's database. Default: sentry."""
    user: str = "sentry"
    """The database's owner, and the server's superuser (the image's POSTGRES_USER). Default: sentry."""
    storage: Storage = Storage(size="8Gi")
    """The data volume (a claim of its own, so it can grow). Default: 8Gi, the cluster's
    default storage class."""
    resources: Resources = resources("100m", "256Mi", "500m", "512Mi")
    """Requests and limits of the server. Default: 100m / 256Mi requested, 500m / 512Mi at most."""
    backup: BackupOptions | None = BackupOptions()
    """The backup CronJob (a PostgresBackup). Default: a verified backup every day at 03:00
    UTC, the newest 7 kept; None: no backup."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy. Default: IfNotPresent."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata of the database pod. Default: none."""
    backup_pods: PodSettings = PodSettings()
    """Placement and pod metadata of the backup pods. Default: none."""
    service_account: str | None = None
    """ServiceAccount of the pods. Default: the namespace's default (no token either way)."""
    filestore_claim: str | None = None
    """The Sentry filestore's PersistentVolumeClaim, archived with each backup when
    `backup.filestore` is on. Default: none, nothing to archive."""
    backup_statsd: tuple[str, int] | None = None
    """Where the backup reports its newest backup's time and size. Default: nowhere."""


class PostgresWithBackup(Construct):
    """A one-replica PostgreSQL StatefulSet, its Service, and a daily verified dump.

    Clients connect to `host`:`port` as `user`, with the password from the Secret.
    `client_env()` gives a container the standard libpq variables for this server.
    """

    def __init__(self, scope: Construct, id: str, props: PostgresWithBackupProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp = props.component
        self.host = comp.name
        self.port = POSTGRES_PORT
        self.image = props.image
        self.client_image = props.image
        self.user = props.user
        self.database = props.database
        # The image's POSTGRES_USER is the server's superuser: it may dump every role.
        self.can_dump_roles = True
        self.network = NetworkTarget(port=POSTGRES_PORT, pods=comp)
        self.service = service_for(
            self, comp, [kplus.ServicePort(name="postgresql", port=POSTGRES_PORT, target_port=POSTGRES_PORT)]
        )
        self.statefulset = self._statefulset()
        self.backup: PostgresBackup | None = None
        if props.backup is not None:
            self.backup = PostgresBackup(
                self,
                "backup",
                PostgresBackupProps(
                    postgres=self,
                    component=props.backup_component,
                    secret=props.secret,
                    options=props.backup,
                    image_pull_policy=props.image_pull_policy,
                    filestore_claim=props.filestore_claim,
                    pods=props.backup_pods,
                    service_account=props.service_account,
                    statsd=props.backup_statsd,
                ),
            )

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

    def _statefulset(self) -> kplus.StatefulSet:
        comp, cfg = self.props.component, self.props
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
                    image_pull_policy=pull_policy(self.props.image_pull_policy),
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
                            path=images.POSTGRES.paths["socket"],
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


@dataclass(frozen=True)
class PostgresBackupProps:
    """Props of PostgresBackup."""

    postgres: PostgresEndpoint
    """The server to back up: in the cluster or external (its client image, environment, TLS)."""
    component: Component
    """Names and labels of the CronJob and its volume."""
    secret: kplus.ISecret
    """Secret holding `postgres-password` (and `s3-secret-access-key` for the offsite copy)."""
    options: BackupOptions = BackupOptions()
    """Schedule, retention, volume, resources, offsite copy. Default: a verified backup every
    day at 03:00 UTC, the newest 7 kept (BackupOptions())."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy. Default: IfNotPresent."""
    filestore_claim: str | None = None
    """The Sentry filestore's claim, archived with each backup (with `options.filestore`).
    Default: none (a bucket's files are the bucket's to keep)."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""
    service_account: str | None = None
    """ServiceAccount of the pods. Default: the namespace's default (no token either way)."""
    statsd: tuple[str, int] | None = None
    """Where to report the newest backup's time and size (statsd host, UDP port). Default: nowhere."""


class PostgresBackup(Construct):
    """A volume of its own and a CronJob writing verified backups of the Sentry database (of
    every database of the in-cluster server) to it (constructs/scripts/postgres-backup.sh),
    with the roles where the user may read them,
    and an optional copy to S3. Works against any PostgresEndpoint: the in-cluster server,
    or a managed one whose user is the database's owner and not a superuser."""

    def __init__(self, scope: Construct, id: str, props: PostgresBackupProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp = props.component
        self.claim = claim(self, "backup-claim", comp.name, comp, props.options.storage)
        self.cronjob = self._cronjob()
        harden(self.cronjob, props.service_account)
        apply_pod_settings(self.cronjob, props.pods, comp)

    @property
    def claim_name(self) -> str:
        """The PersistentVolumeClaim holding the backups."""
        return self.props.component.name

    def _cronjob(self) -> kplus.CronJob:
        comp, backup, postgres = self.props.component, self.props.options, self.props.postgres
        offsite = backup.offsite
        claim = kplus.PersistentVolumeClaim.from_claim_name(self, "backup-claim-ref", self.claim.name)
        backups = kplus.Volume.from_persistent_volume_claim(self, "backups", claim, name="backups")
        mounts = [
            kplus.VolumeMount(path=BACKUP_MOUNT, volume=backups),
            # pg_dump and the verification write their scratch files here.
            kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(self, "backup-tmp", "backup-tmp")),
        ]
        filestore = self.props.filestore_claim if backup.filestore else None
        if filestore:
            claim_ref = kplus.PersistentVolumeClaim.from_claim_name(self, "filestore-claim-ref", filestore)
            volume = kplus.Volume.from_persistent_volume_claim(
                self, "filestore", claim_ref, name="filestore", read_only=True
            )
            mounts.append(kplus.VolumeMount(path=FILESTORE_MOUNT, volume=volume, read_only=True))
        mounts += postgres.client_mounts(self)
        # `auto` asks the server whether the user may read the roles; a managed server's
        # owner role may not, and the endpoint knows that already.
        roles = "no" if backup.roles == "auto" and not postgres.can_dump_roles else backup.roles
        # The stack's own server (its pods run here) holds nothing but what its users put
        # there: all of it is backed up, as pg_dumpall would. An external server's other
        # databases are not the stack's to back up or restore (and a managed server's owner
        # role cannot read them): only Sentry's.
        databases = "all" if postgres.network.pods is not None else "one"
        dump = kplus.ContainerProps(
            name="backup",
            image=postgres.client_image,
            image_pull_policy=pull_policy(self.props.image_pull_policy),
            command=bash_command("postgres-backup"),
            env_variables={
                # PGDATABASE is the Sentry database: the backup dumps it first, into db/.
                **postgres.client_env(),
                **plain_env(
                    {
                        "BACKUP_DATABASES": databases,
                        "BACKUP_DIR": BACKUP_MOUNT,
                        "BACKUP_KEEP": str(backup.keep),
                        "BACKUP_COMPRESSION_LEVEL": str(backup.compression_level),
                        "BACKUP_JOBS": str(backup.jobs),
                        "BACKUP_ROLES": roles,
                        "BACKUP_FILESTORE_DIR": FILESTORE_MOUNT if filestore else "",
                        "BACKUP_LOCK_WAIT_SECONDS": str(BACKUP_LOCK_WAIT_SECONDS),
                        **(
                            {
                                "BACKUP_STATSD_HOST": self.props.statsd[0],
                                "BACKUP_STATSD_PORT": str(self.props.statsd[1]),
                            }
                            if self.props.statsd
                            else {}
                        ),
                    }
                ),
            },
            resources=container_resources(backup.resources),
            security_context=container_security(POSTGRES_UID, POSTGRES_UID),
            volume_mounts=mounts,
        )
        # With an offsite copy the dump runs first, as the init container, and the upload
        # only starts once the dump is complete and verified; the Job fails if either does.
        steps = [dump, self._offsite_container(offsite, backups)] if offsite is not None else [dump]
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

    def _offsite_container(self, offsite: OffsiteCopy, backups: kplus.Volume) -> kplus.ContainerProps:
        return kplus.ContainerProps(
            name="offsite",
            image=offsite.image,
            image_pull_policy=pull_policy(self.props.image_pull_policy),
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

    postgres: PostgresEndpoint
    """The server to restore into (in the cluster or external)."""
    backup_claim: str
    """The PersistentVolumeClaim holding the backups (PostgresBackup.claim_name)."""
    component: Component
    """Names and labels of the restore Job."""
    secret: kplus.ISecret
    """Secret holding `postgres-password` (as seen from the restore's chart)."""
    file: str = "latest"
    """The backup to restore: 'latest' (the newest on the backup volume) or a backup's name,
    e.g. sentry-20240101T030000Z. Default: latest."""
    jobs: int = 2
    """Parallel pg_restore workers. Default: 2."""
    roles: Literal["auto", "yes", "no"] = "auto"
    """Restore the backup's roles. Default: auto, when the backup has them and the endpoint's
    user may create them (a superuser)."""
    filestore: bool = False
    """Also replace the filestore's contents with the backup's archive (`filestore_claim`,
    mounted read-write). Default: false."""
    wait_for_clients_seconds: int = 300
    """How long the Job waits for other database sessions to end before it refuses to
    restore. Default: 300."""
    active_deadline_seconds: int = 6 * 3600
    """Kill a restore that takes longer. Default: 6 hours."""
    # Two CPUs for pg_restore's two workers (tools/bench_backup.py); Sentry is stopped meanwhile.
    resources: Resources = resources("100m", "64Mi", "2", "256Mi")
    """Requests and limits. Default: 100m / 64Mi requested, 2 CPUs / 256Mi at most."""
    filestore_claim: str | None = None
    """The Sentry filestore's claim, restored with `filestore`. Default: none (a
    bucket's files are the bucket's to keep), and the filestore is left alone."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy. Default: IfNotPresent."""
    service_account: str | None = None
    """ServiceAccount of the pod. Default: the namespace's default (no token either way)."""


class PostgresRestore(Construct):
    """A Job that restores a backup from the backup volume into the running server.

    It replaces the backup's databases (and the roles and filestore, see its props), so it is synthesized only on
    demand, into a chart of its own; see the restore runbook in docs/operations.md. The Job never
    retries (a failed restore wants a person), has no TTL (a finished Job stays, so
    re-applying the same manifest does not restore again), mounts the backups
    read-only, and refuses to start while other clients are connected.
    """

    def __init__(self, scope: Construct, id: str, props: PostgresRestoreProps) -> None:
        super().__init__(scope, id)
        self.props = props
        postgres, comp, restore = props.postgres, props.component, props
        claim = kplus.PersistentVolumeClaim.from_claim_name(self, "backup-claim-ref", props.backup_claim)
        mounts = [
            kplus.VolumeMount(
                path=BACKUP_MOUNT,
                volume=kplus.Volume.from_persistent_volume_claim(
                    self, "backups", claim, name="backups", read_only=True
                ),
                read_only=True,
            ),
            kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(self, "tmp", "tmp")),
            *postgres.client_mounts(self),
        ]
        filestore = props.filestore_claim if restore.filestore else None
        if filestore:
            filestore_ref = kplus.PersistentVolumeClaim.from_claim_name(self, "filestore-claim-ref", filestore)
            volume = kplus.Volume.from_persistent_volume_claim(self, "filestore", filestore_ref, name="filestore")
            mounts.append(kplus.VolumeMount(path=FILESTORE_MOUNT, volume=volume))
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
                    image=postgres.client_image,
                    image_pull_policy=pull_policy(props.image_pull_policy),
                    command=bash_command("postgres-restore"),
                    env_variables={
                        **postgres.client_env(database=MAINTENANCE_DB, secret=props.secret),
                        **plain_env(
                            {
                                "BACKUP_DIR": BACKUP_MOUNT,
                                "RESTORE_FILE": restore.file,
                                "RESTORE_WAIT_SECONDS": str(restore.wait_for_clients_seconds),
                                "RESTORE_JOBS": str(restore.jobs),
                                "RESTORE_ROLES": "no"
                                if restore.roles == "auto" and not postgres.can_dump_roles
                                else restore.roles,
                                "RESTORE_FILESTORE_DIR": FILESTORE_MOUNT if filestore else "",
                            }
                        ),
                    },
                    resources=container_resources(restore.resources),
                    security_context=container_security(POSTGRES_UID, POSTGRES_UID),
                    volume_mounts=mounts,
                )
            ],
        )
        harden(self.job, props.service_account)
