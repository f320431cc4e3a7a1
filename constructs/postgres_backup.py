"""PostgresBackup: verified backups of any PostgreSQL server to a volume of their own.

For any PostgresEndpoint (the in-cluster server, or a managed one whose user is the
database's owner and not a superuser): the backup volume and a CronJob running
constructs/scripts/postgres-backup.sh (verified, parallel directory-format dumps of the
Sentry database (of every database of the in-cluster server), the roles where the user may
read them, and the filestore; retention),
and with an `offsite` copy a second step copying each new backup to S3.
"""

from __future__ import annotations

from typing import Annotated, Literal

import cdk8s_plus_27 as kplus

from constructs import Construct, images
from constructs.checks import CronSchedule, Image, Pattern, PullPolicy, Range, fail, props
from constructs.endpoints import PostgresEndpoint
from constructs.kube import bash_command, claim, cron, metadata, plain_env, pod_metadata, seconds, secret_env
from constructs.naming import Component, own_component
from constructs.props import PodSettings, Resources, Storage, resources
from constructs.secret_keys import SecretKeys
from constructs.workload import container_resources, container_security, finish, pod_security, pull_policy

POSTGRES_UID = images.POSTGRES.uid
BACKUP_MOUNT = "/backups"
# Where the backup and restore pods mount the Sentry filestore: the path Sentry's
# own pods use, so that paths in logs mean the same everywhere.
FILESTORE_MOUNT = images.SENTRY.paths["filestore"]
# How long a backup run (e.g. a manual one) waits for another run to finish.
BACKUP_LOCK_WAIT_SECONDS = 3600

Bucket = Annotated[
    str, Pattern(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "a bucket name: lower-case letters, digits, '.' and '-'")
]
KeyPrefix = Annotated[str, Pattern(r"(|[^/\s]\S*/)", "empty, or a key prefix ending in '/' and not starting with one")]
EndpointUrl = Annotated[str, Pattern(r"(|https?://\S+)", "empty, or an http(s) URL")]


@props
class OffsiteCopy:
    """A copy of each verified backup in S3-compatible storage, made by the backup Job itself
    once the backup is complete; the secret key is `s3_secret_access_key` in the Secret."""

    bucket: Bucket
    """Bucket name."""
    access_key_id: str
    """Access key id (not secret)."""
    image: Image = "amazon/aws-cli:2.15.30"
    """Image with the aws CLI. Default: amazon/aws-cli:2.15.30."""
    prefix: KeyPrefix = "sentry-postgres/"
    """Key prefix inside the bucket: empty, or ending in '/'. Default: sentry-postgres/."""
    endpoint_url: EndpointUrl = ""
    """S3 endpoint of a non-AWS store (MinIO, Ceph). Default: empty, AWS."""
    region: str = "us-east-1"
    """Bucket region. Default: us-east-1."""
    resources: Resources = resources("50m", "128Mi", "500m", "512Mi")
    """Requests and limits of the upload. Default: 50m / 128Mi requested, 500m / 512Mi at most."""

    def __post_init__(self) -> None:
        if not self.access_key_id:
            fail(self, "access_key_id", "is required")


@props
class BackupOptions:
    """What, when and how a PostgresBackup backs up."""

    schedule: CronSchedule = "0 3 * * *"
    """Cron schedule, UTC. Default: 03:00 every day."""
    keep: Annotated[int, Range(1, 1000)] = 7
    """How many verified backups to keep (the newest N). Default: 7."""
    # zlib 2 costs about what 1 does on Sentry's (already compressed) event payloads and
    # packs them a little tighter: as small as gzip -1 of a plain dump (tools/bench_backup.py).
    compression_level: Annotated[int, Range(1, 9)] = 2
    """zlib level of the per-table files and the filestore archive. Default: 2."""
    jobs: Annotated[int, Range(1, 16)] = 2
    """Parallel pg_dump workers (one table is dumped by one worker). Default: 2."""
    roles: Literal["auto", "yes", "no"] = "auto"
    """Back up the roles too (pg_dumpall --globals-only). Default: auto, when the endpoint's
    user may read them (a superuser)."""
    filestore: bool = True
    """Archive the Sentry filestore claim (PostgresBackupProps.filestore_claim) with each
    backup, mounted read-only. Default: true."""
    starting_deadline_seconds: Annotated[int, Range(60, None)] = 3600
    """How late a missed run may still start. Default: 3600 (cdk8s-plus's 10 s would silently
    skip a run whenever the controller is a little late)."""
    active_deadline_seconds: Annotated[int, Range(60, None)] = 3 * 3600
    """Kill a run that takes longer. Default: 3 hours."""
    backoff_limit: Annotated[int, Range(0, 10)] = 2
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


@props
class PostgresBackupProps:
    """Props of PostgresBackup."""

    postgres: PostgresEndpoint
    """The server to back up: in the cluster or external (its client image, environment, TLS)."""
    secret: kplus.ISecret
    """Secret holding the database password (and `s3_secret_access_key` for the offsite copy)."""
    component: Component | None = None
    """Names and labels of the CronJob and its volume. Default: derived from the construct's
    id (`<id>-backup`) and the client image's tag."""
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
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret`. Default: the stack's names."""


class PostgresBackup(Construct):
    """A volume of its own and a CronJob writing verified backups of the Sentry database to
    it (constructs/scripts/postgres-backup.sh), with the roles where the user may read them,
    and an optional copy to S3. Works against any PostgresEndpoint: the in-cluster server,
    or a managed one whose user is the database's owner and not a superuser."""

    def __init__(self, scope: Construct, id: str, props: PostgresBackupProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.component = comp = own_component(id, props.component, "postgresql", "backup", props.postgres.client_image)
        self.claim = claim(self, "backup-claim", comp.name, comp, props.options.storage)
        self.cronjob = self._cronjob()
        finish(
            self.cronjob,
            comp,
            pods=props.pods,
            service_account=props.service_account,
            sizes={
                "backup": props.options.resources,
                **({"offsite": props.options.offsite.resources} if props.options.offsite else {}),
            },
        )

    @property
    def claim_name(self) -> str:
        """The PersistentVolumeClaim holding the backups."""
        return self.component.name

    def _cronjob(self) -> kplus.CronJob:
        comp, backup, postgres = self.component, self.props.options, self.props.postgres
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
                **postgres.client_env(secret=self.props.secret),
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
                "AWS_SECRET_ACCESS_KEY": secret_env(self.props.secret, self.props.secret_keys.s3_secret_access_key),
            },
            resources=container_resources(offsite.resources),
            security_context=container_security(POSTGRES_UID, POSTGRES_UID),
            volume_mounts=[
                kplus.VolumeMount(path=BACKUP_MOUNT, volume=backups, read_only=True),
                kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(self, "offsite-tmp", "tmp")),
            ],
        )
