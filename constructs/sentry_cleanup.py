"""SentryCleanup: `sentry cleanup --days N` on a schedule, so the database stays bounded."""

from __future__ import annotations

from dataclasses import dataclass

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import CleanupConfig
from constructs.naming import Component
from constructs.sentry_runtime import SentryRuntime
from constructs.workload import container_resources, cron, metadata, pod_metadata, seconds


@dataclass(frozen=True)
class SentryCleanupProps:
    """Props of SentryCleanup."""

    config: CleanupConfig
    """Retention days, schedule and resources (defaults: see CleanupConfig)."""
    component: Component
    """Names and labels of the CronJob."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""


class SentryCleanup(Construct):
    """A daily CronJob deleting events (and their files) older than `days`."""

    def __init__(self, scope: Construct, id: str, props: SentryCleanupProps) -> None:
        super().__init__(scope, id)
        cfg, comp, rt = props.config, props.component, props.runtime
        self.cronjob = kplus.CronJob(
            self,
            "cronjob",
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp, rt.pod_annotations()),
            select=False,
            schedule=cron(cfg.schedule),
            time_zone="Etc/UTC",
            concurrency_policy=kplus.ConcurrencyPolicy.FORBID,
            starting_deadline=seconds(3600),
            successful_jobs_retained=3,
            failed_jobs_retained=3,
            backoff_limit=1,
            active_deadline=seconds(6 * 3600),
            restart_policy=kplus.RestartPolicy.NEVER,
            automount_service_account_token=False,
            security_context=rt.security_context(),
            init_containers=[rt.wait_for_postgres(), rt.wait_for_migrations()],
            containers=[
                kplus.ContainerProps(
                    name="cleanup",
                    image=rt.image,
                    image_pull_policy=rt.image_pull_policy,
                    command=["sentry", "cleanup", "--days", str(cfg.days)],
                    working_dir="/tmp",
                    env_variables=rt.env(),
                    resources=container_resources(cfg.resources),
                    security_context=rt.container_security(),
                    volume_mounts=rt.volume_mounts(self),
                )
            ],
        )
