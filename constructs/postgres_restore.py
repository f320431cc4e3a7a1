"""PostgresRestore: restore a backup from the backup volume into the running server.

A Job running constructs/scripts/postgres-restore.sh, which replaces the backup's databases
(and optionally the roles and the filestore) with a backup made by PostgresBackup. The
stack puts it in its own chart (dist/90-restore.k8s.yaml) and only when the values ask for
it (`postgres.backup.restore.enabled`); see the restore runbook in docs/operations.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.checks import Pattern, PullPolicy, Range, props
from constructs.endpoints import PostgresEndpoint
from constructs.kube import bash_command, metadata, plain_env, pod_metadata, seconds
from constructs.naming import Component, own_component
from constructs.postgres_backup import BACKUP_MOUNT, FILESTORE_MOUNT, POSTGRES_UID
from constructs.props import PodSettings, Resources, resources
from constructs.workload import container_resources, container_security, finish, pod_security, pull_policy

# The restore starts in this database: it drops and re-creates the backup's databases,
# which it cannot do while connected to them (this one it re-creates from template1).
MAINTENANCE_DB = "postgres"
BACKUP_NAME_PATTERN = r"sentry-[0-9]{8}T[0-9]{6}Z"
BackupChoice = Annotated[
    str, Pattern(rf"latest|{BACKUP_NAME_PATTERN}", "'latest' or a backup's name such as sentry-20240101T030000Z")
]


@props
class PostgresRestoreOptions:
    """What a user chooses about a restore."""

    file: BackupChoice = "latest"
    """The backup to restore: 'latest' (the newest on the backup volume) or a backup's name,
    e.g. sentry-20240101T030000Z. Default: latest."""
    jobs: Annotated[int, Range(1, 16)] = 2
    """Parallel pg_restore workers. Default: 2."""
    roles: Literal["auto", "yes", "no"] = "auto"
    """Restore the backup's roles. Default: auto, when the backup has them and the endpoint's
    user may create them (a superuser)."""
    filestore: bool = False
    """Also replace the filestore's contents with the backup's archive (`filestore_claim`,
    mounted read-write). Default: false."""
    wait_for_clients_seconds: Annotated[int, Range(0, 3600)] = 300
    """How long the Job waits for other database sessions to end before it refuses to
    restore. Default: 300."""
    active_deadline_seconds: Annotated[int, Range(300, None)] = 6 * 3600
    """Kill a restore that takes longer. Default: 6 hours."""
    # Two CPUs for pg_restore's two workers (tools/bench_backup.py); Sentry is stopped meanwhile.
    resources: Resources = resources("100m", "64Mi", "2", "256Mi")
    """Requests and limits. Default: 100m / 64Mi requested, 2 CPUs / 256Mi at most."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""


@props
class PostgresRestoreProps(PostgresRestoreOptions):
    """Props of PostgresRestore: the options, and what to restore from and into."""

    postgres: PostgresEndpoint
    """The server to restore into (in the cluster or external)."""
    backup_claim: str
    """The PersistentVolumeClaim holding the backups (PostgresBackup.claim_name)."""
    secret: kplus.ISecret
    """Secret holding the database password (as seen from the restore's chart)."""
    component: Component | None = None
    """Names and labels of the restore Job. Default: derived from the construct's id
    (`<id>-restore`) and the client image's tag."""
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
        postgres, restore = props.postgres, props
        self.component = comp = own_component(id, props.component, "postgresql", "restore", postgres.client_image)
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
        finish(
            self.job, comp, pods=props.pods, service_account=props.service_account, sizes={"restore": props.resources}
        )
