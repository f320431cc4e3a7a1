"""SentryCleanup: `sentry cleanup --days N` on a schedule, so the database stays bounded."""

from __future__ import annotations

from dataclasses import dataclass, field

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import CleanupConfig, PodSettings
from constructs.naming import Component
from constructs.placement import apply_pod_settings
from constructs.pod_security import harden
from constructs.sentry_runtime import SentryRuntime
from constructs.workload import cron, seconds


@dataclass(frozen=True)
class SentryCleanupProps:
    """Props of SentryCleanup."""

    component: Component
    """Names and labels of the CronJob."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    config: CleanupConfig = field(default_factory=CleanupConfig)
    """Retention days, schedule and resources (defaults: see CleanupConfig)."""
    pods: PodSettings = field(default_factory=PodSettings)
    """Placement and pod metadata. Default: none."""


class SentryCleanup(Construct):
    """A daily CronJob deleting events (and their files) older than `days`."""

    def __init__(self, scope: Construct, id: str, props: SentryCleanupProps) -> None:
        super().__init__(scope, id)
        cfg, comp, rt = props.config, props.component, props.runtime
        self.cronjob = kplus.CronJob(
            self,
            "cronjob",
            **rt.pod_props(self, comp),
            schedule=cron(cfg.schedule),
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
                    self, "cleanup", ["sentry", "cleanup", "--days", str(cfg.days)], cfg.resources, working_dir="/tmp"
                )
            ],
        )
        harden(self.cronjob, rt.props.service_account)
        apply_pod_settings(self.cronjob, props.pods, comp)
