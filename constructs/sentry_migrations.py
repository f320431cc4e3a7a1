"""SentryMigrations: the Job that migrates the database and creates the superuser once.

Without Helm hooks, ordering comes from waiting, not from install phases:
1. init `wait-for-postgres` and `wait-for-redis`: until both answer (`sentry upgrade`
   also sets up Redis-backed services);
2. container `migrate` (the Sentry image, constructs/scripts/sentry-migrate.sh): under one
   PostgreSQL advisory lock, held by one session for the whole sequence, `sentry upgrade
   --noinput`, then (with create_admin, on the first successful run only) the superuser,
   then the records web, worker and cron wait for in their init containers: the image's
   migrations, and the admin bootstrap. So two Jobs (an older one still running or
   retrying beside a new one) never migrate or bootstrap at once: the second waits for
   the lock and finds the work done.
The records are written only after every Sentry step succeeded, in one transaction.

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
        env = {
            **rt.env(),
            **plain_env(
                {
                    "SENTRY_ADMIN_EMAIL": props.admin_email,
                    "SENTRY_CREATE_ADMIN": "true" if props.create_admin else "false",
                    "SENTRY_MIGRATION_VERSION": rt.migration_version,
                }
            ),
            "SENTRY_ADMIN_PASSWORD": secret_env(rt.props.secret, rt.props.secret_keys.admin_password),
        }
        self.job = kplus.Job(
            self,
            "job",
            **rt.pod_props(self, comp, init_containers=[rt.wait_for_postgres(self), rt.wait_for_redis()]),
            backoff_limit=props.backoff_limit,
            active_deadline=seconds(props.active_deadline_seconds),
            restart_policy=kplus.RestartPolicy.NEVER,
            containers=[
                rt.container(
                    self,
                    "migrate",
                    bash_command("sentry-migrate"),
                    props.resources,
                    filestore=False,
                    env=env,
                    working_dir="/tmp",
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
