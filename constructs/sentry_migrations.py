"""SentryMigrations: the Job that migrates the database and creates the superuser once.

Without Helm hooks, ordering comes from waiting, not from install phases:
1. init `wait-for-postgres` and `wait-for-redis`: until both answer (`sentry upgrade`
   also sets up Redis-backed services);
2. init `admin-bootstrap-check` (with create_admin): whether an earlier Job already
   created the superuser, recorded in the database;
3. init `migrate` (the Sentry image): `sentry upgrade --noinput`, then, only if step 2
   said so, the superuser (constructs/scripts/sentry-migrate.sh);
4. container `mark-migrated`: records the image's migrations as complete, and the admin
   bootstrap as done; web, worker and cron wait for that record in their init containers.
Init containers run in order and each must succeed, so the record is written only
after every Sentry step succeeded.

A Job's pod template is immutable, so the Job is named after its complete rendered
pod template (`workload.name_by_frozen_fields`, when the chart is synthesized): any
change to the template is a new Job (and new migrations), anything else keeps the
name, and re-applying an unchanged dist/ leaves the finished Job alone.
"""

from __future__ import annotations

from typing import Annotated, Protocol, runtime_checkable

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.checks import Pattern, Range, props
from constructs.kube import bash_command, plain_env, seconds, secret_env
from constructs.naming import Component
from constructs.props import PodSettings, Resources, resources
from constructs.sentry_runtime import SentryRuntime

# The Job's scratch volume, where admin-bootstrap-check.sh leaves its decision.
BOOTSTRAP_MOUNT = "/bootstrap"
ADMIN_PENDING_FILE = f"{BOOTSTRAP_MOUNT}/admin-pending"


@runtime_checkable
class MigrationGate(Protocol):
    """What a Sentry workload waits for before it starts: the database migrated for its image.
    SentryMigrations is one; a workload names it in its props."""

    def wait_container(self, scope: Construct) -> kplus.ContainerProps:
        """An init container that returns once the migrations are done."""
        ...


Email = Annotated[str, Pattern(r"[^@\s]+@[^@\s]+", "an email address such as admin@example.com")]


@props
class SentryMigrationsOptions:
    """What a user chooses about the migrations and the first superuser."""

    # The request is what the scheduler reserves; the limit is what `sentry upgrade` may use
    # (about 3 GB of memory, and a whole CPU while it runs, which the idle pods leave free).
    # See docs/operations.md, Capacity, for the arithmetic.
    resources: Resources = resources("50m", "600Mi", "1", "3200Mi")
    """Requests and limits of `sentry upgrade`. Default: 50m / 600Mi requested, 1 CPU / 3200Mi
    at most (the old chart's migrations were OOM-killed below about 3 GB)."""
    backoff_limit: Annotated[int, Range(0, 10)] = 3
    """Retries of a failed run. Default: 3."""
    active_deadline_seconds: Annotated[int, Range(300, None)] = 3600
    """Kill a run that takes longer. Default: 3600 (an hour)."""
    admin_email: Email = "admin@example.com"
    """Email (login) of the superuser. Default: admin@example.com."""
    create_admin: bool = True
    """Create the superuser on the first successful run. Default: true."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""


@props
class SentryMigrationsProps(SentryMigrationsOptions):
    """Props of SentryMigrations: the options, and what the Job runs with."""

    component: Component
    """Names and labels of the Job (its name gets a suffix: the pod template's hash)."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""


class SentryMigrations(Construct):
    """The migration Job; see the module docstring for the sequence."""

    def __init__(self, scope: Construct, id: str, props: SentryMigrationsProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp, rt = props.component, props.runtime
        bootstrap = kplus.VolumeMount(
            path=BOOTSTRAP_MOUNT, volume=kplus.Volume.from_empty_dir(self, "bootstrap", "bootstrap")
        )
        pending = {"SENTRY_ADMIN_PENDING_FILE": ADMIN_PENDING_FILE}
        env = {
            **rt.env(),
            **plain_env({"SENTRY_ADMIN_EMAIL": props.admin_email, **pending}),
            "SENTRY_ADMIN_PASSWORD": secret_env(rt.props.secret, rt.props.secret_keys.admin_password),
        }
        check = (
            [rt.postgres_client(self, "admin-bootstrap-check", "admin-bootstrap-check", pending, [bootstrap])]
            if props.create_admin
            else []
        )
        self.job = kplus.Job(
            self,
            "job",
            **rt.pod_props(
                self,
                comp,
                init_containers=[
                    rt.wait_for_postgres(self),
                    rt.wait_for_redis(),
                    *check,
                    rt.container(
                        self,
                        "migrate",
                        bash_command("sentry-migrate"),
                        props.resources,
                        filestore=False,
                        env=env,
                        extra_mounts=[bootstrap],
                        working_dir="/tmp",
                    ),
                ],
            ),
            backoff_limit=props.backoff_limit,
            active_deadline=seconds(props.active_deadline_seconds),
            restart_policy=kplus.RestartPolicy.NEVER,
            containers=[
                rt.postgres_client(
                    self,
                    "mark-migrated",
                    "mark-migrated",
                    {"SENTRY_MIGRATION_VERSION": rt.migration_version, **pending},
                    [bootstrap],
                )
            ],
        )
        # The name is set when the chart is synthesized, from the Job's final pod template
        # (hardening included, and anything added to it after construction).
        rt.finish(self.job, comp, props.pods, {"migrate": props.resources}, job_name=comp.name)

    def wait_container(self, scope: Construct) -> kplus.ContainerProps:
        """Init container: block until this Job recorded the image's migrations as done."""
        rt = self.props.runtime
        return rt.postgres_client(
            scope, "wait-for-migrations", "wait-for-migrations", {"SENTRY_MIGRATION_VERSION": rt.migration_version}
        )
