"""SentryCleanup: `sentry cleanup --days N` on a schedule, so the database stays bounded."""

from __future__ import annotations

from typing import Annotated

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.checks import CronSchedule, Range, props
from constructs.kube import cron, seconds
from constructs.naming import Component
from constructs.props import PodSettings, Resources, resources
from constructs.sentry_migrations import MigrationGate
from constructs.sentry_runtime import SentryRuntime


@props
class SentryCleanupOptions:
    """What a user chooses about the cleanup."""

    days: Annotated[int, Range(1, 3650)] = 90
    """Delete events (and their files) older than this many days. Default: 90."""
    schedule: CronSchedule = "0 4 * * *"
    """Cron schedule, UTC (five fields, or a macro such as @daily). Default: 04:00 every day,
    an hour after the backup."""
    resources: Resources = resources("50m", "150Mi", "500m", "1Gi")
    """Requests and limits of a run. Default: 50m / 150Mi requested, 500m / 1Gi at most."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""


@props
class SentryCleanupProps(SentryCleanupOptions):
    """Props of SentryCleanup: the options, and what a run works with."""

    component: Component
    """Names and labels of the CronJob."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    migrations: MigrationGate
    """The migrations a run waits for (SentryMigrations): cleanup queries the migrated schema."""


class SentryCleanup(Construct):
    """A daily CronJob deleting events (and their files) older than `days`."""

    def __init__(self, scope: Construct, id: str, props: SentryCleanupProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp, rt = props.component, props.runtime
        self.cronjob = kplus.CronJob(
            self,
            "cronjob",
            **rt.pod_props(self, comp, [rt.wait_for_postgres(self), props.migrations.wait_container(self)]),
            schedule=cron(props.schedule),
            time_zone="Etc/UTC",
            concurrency_policy=kplus.ConcurrencyPolicy.FORBID,
            starting_deadline=seconds(3600),
            successful_jobs_retained=3,
            failed_jobs_retained=3,
            backoff_limit=1,
            active_deadline=seconds(6 * 3600),
            restart_policy=kplus.RestartPolicy.NEVER,
            containers=[
                rt.container(
                    self,
                    "cleanup",
                    ["sentry", "cleanup", "--days", str(props.days)],
                    props.resources,
                    working_dir="/tmp",
                )
            ],
        )
        rt.finish(self.cronjob, comp, props.pods, {"cleanup": props.resources})
