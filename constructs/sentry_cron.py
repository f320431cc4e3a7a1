"""SentryCron: the Celery beat scheduler, of which exactly one must run."""

from __future__ import annotations

from dataclasses import dataclass, field

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import CronConfig, PodSettings
from constructs.naming import Component
from constructs.placement import apply_pod_settings
from constructs.pod_security import harden
from constructs.sentry_runtime import SentryRuntime
from constructs.workload import select


@dataclass(frozen=True)
class SentryCronProps:
    """Props of SentryCron."""

    component: Component
    """Names and labels of the cron objects."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    config: CronConfig = field(default_factory=CronConfig)
    """Resources (defaults: see CronConfig)."""
    pods: PodSettings = field(default_factory=PodSettings)
    """Placement and pod metadata. Default: none."""


class SentryCron(Construct):
    """`sentry run cron`: one replica, updated with Recreate.

    Two schedulers would push every periodic task twice, so a rollout stops the old
    pod before it starts the new one; a short gap in scheduling is harmless, as beat
    catches up on start. Celery beat writes its schedule file to the working
    directory, hence /tmp (an emptyDir; the root filesystem is read-only).
    """

    def __init__(self, scope: Construct, id: str, props: SentryCronProps) -> None:
        super().__init__(scope, id)
        cfg, comp, rt = props.config, props.component, props.runtime
        self.deployment = kplus.Deployment(
            self,
            "deployment",
            **rt.pod_props(self, comp),
            spread=False,
            replicas=1,
            strategy=kplus.DeploymentStrategy.recreate(),
            containers=[
                rt.container(
                    self, "cron", ["sentry", "run", "cron"], cfg.resources, filestore=False, working_dir="/tmp"
                )
            ],
        )
        select(self.deployment, comp)
        harden(self.deployment, rt.props.service_account)
        apply_pod_settings(self.deployment, props.pods, comp)
