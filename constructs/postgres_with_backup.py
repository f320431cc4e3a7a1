"""PostgresWithBackup: PostgreSQL for Sentry in the cluster, and (by default) its backups.

A one-replica StatefulSet with a data volume of its own and a Service, and, unless its
`backup` prop is None, a PostgresBackup of it (constructs/postgres_backup.py). It is a
PostgresEndpoint, like an external server (constructs/endpoints.py).
"""

from __future__ import annotations

import cdk8s_plus_27 as kplus

from constructs import Construct, images
from constructs.checks import Image, PullPolicy, props
from constructs.endpoints import NetworkTarget, PostgresDatabase, PostgresRole
from constructs.kube import (
    claim,
    claim_volume,
    metadata,
    plain_env,
    pod_metadata,
    seconds,
    secret_env,
    service_for,
    statefulset_claim_name,
)
from constructs.naming import Component, own_component
from constructs.postgres_backup import BackupOptions, PostgresBackup, PostgresBackupProps
from constructs.props import PodSettings, Resources, Storage, resources
from constructs.secret_keys import SecretKeys
from constructs.workload import (
    command_probe,
    container_resources,
    container_security,
    finish,
    pod_security,
    pull_policy,
)

POSTGRES_PORT = 5432
# The postgres image's own user (constructs/images.py). Running as it (not root) skips the
# entrypoint's chown/gosu step; fsGroup makes the volume writable for it.
POSTGRES_UID = images.POSTGRES.uid
DATA_MOUNT = images.POSTGRES.paths["data"]
# A subdirectory, because the volume root may hold lost+found and initdb
# refuses a non-empty directory.
PGDATA = f"{DATA_MOUNT}/pgdata"


@props
class PostgresOptions:
    """What a user chooses about the in-cluster PostgreSQL server."""

    image: Image = "postgres:9.6.24"
    """PostgreSQL image (its uid 999 is the pod's). Default: postgres:9.6.24; Sentry 9.1 was
    tested on 9.5 and 9.6."""
    database: PostgresDatabase = "sentry"
    """Name of Sentry's database. Default: sentry."""
    user: PostgresRole = "sentry"
    """The database's owner, and the server's superuser (the image's POSTGRES_USER). Default: sentry."""
    storage: Storage = Storage(size="8Gi")
    """The data volume (a claim of its own, so it can grow). Default: 8Gi, the cluster's
    default storage class."""
    resources: Resources = resources("100m", "256Mi", "500m", "512Mi")
    """Requests and limits of the server. Default: 100m / 256Mi requested, 500m / 512Mi at most."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata of the database pod. Default: none."""


@props
class PostgresWithBackupProps(PostgresOptions):
    """Props of PostgresWithBackup: the options, and how it runs and is backed up."""

    secret: kplus.ISecret
    """Secret holding the password of `user`."""
    component: Component | None = None
    """Names and labels of the database objects. Default: derived from the construct's id
    (`<id>-postgresql`) and the image's tag."""
    backup: BackupOptions | None = BackupOptions()
    """The backup CronJob (a PostgresBackup). Default: a verified backup every day at 03:00
    UTC, the newest 7 kept; None: no backup."""
    backup_component: Component | None = None
    """Names and labels of the backup CronJob and its volume. Default: the database's
    component, with the part `backup`."""
    backup_pods: PodSettings = PodSettings()
    """Placement and pod metadata of the backup pods. Default: none."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy. Default: IfNotPresent."""
    service_account: str | None = None
    """ServiceAccount of the pods. Default: the namespace's default (no token either way)."""
    filestore_claim: str | None = None
    """The Sentry filestore's PersistentVolumeClaim, archived with each backup when
    `backup.filestore` is on. Default: none, nothing to archive."""
    backup_statsd: tuple[str, int] | None = None
    """Where the backup reports its newest backup's time and size. Default: nowhere."""
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret` (`postgres_password`). Default: the stack's names."""


class PostgresWithBackup(Construct):
    """A one-replica PostgreSQL StatefulSet, its Service, and a daily verified dump.

    Clients connect to `host`:`port` as `user`, with the password from the Secret.
    `client_env()` gives a container the standard libpq variables for this server.
    """

    def __init__(self, scope: Construct, id: str, props: PostgresWithBackupProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.component = comp = own_component(id, props.component, "postgresql", "postgresql", props.image)
        self.host = comp.name
        self.port = POSTGRES_PORT
        self.image = props.image
        self.client_image = props.image
        self.user = props.user
        self.database = props.database
        # The image's POSTGRES_USER is the server's superuser: it may dump every role.
        self.can_dump_roles = True
        # The image's server has no certificate: clients connect in the clear, inside the
        # namespace (NetworkPolicies admit only the stack's pods).
        self.tls = False
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
                    component=props.backup_component or comp.sibling("backup"),
                    secret=props.secret,
                    options=props.backup,
                    image_pull_policy=props.image_pull_policy,
                    filestore_claim=props.filestore_claim,
                    pods=props.backup_pods,
                    service_account=props.service_account,
                    statsd=props.backup_statsd,
                    secret_keys=props.secret_keys,
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
            "PGPASSWORD": secret_env(secret or self.props.secret, self.props.secret_keys.postgres_password),
        }

    def client_mounts(self, scope: Construct) -> list[kplus.VolumeMount]:
        """Nothing to mount: in the cluster, clients connect without TLS."""
        return []

    def _statefulset(self) -> kplus.StatefulSet:
        comp, cfg = self.component, self.props
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
                        "POSTGRES_PASSWORD": secret_env(self.props.secret, self.props.secret_keys.postgres_password),
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
        finish(
            sts,
            comp,
            pods=self.props.pods,
            service_account=self.props.service_account,
            sizes={"postgresql": cfg.resources},
        )
        return sts
