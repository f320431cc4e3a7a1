"""SentryCron: the Celery beat scheduler, of which exactly one must run."""

from __future__ import annotations

from dataclasses import dataclass

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import CronConfig
from constructs.naming import Component
from constructs.sentry_runtime import SentryRuntime
from constructs.workload import container_resources, metadata, pod_metadata, select


@dataclass(frozen=True)
class SentryCronProps:
    """Props of SentryCron."""

    config: CronConfig
    """Resources (defaults: see CronConfig)."""
    component: Component
    """Names and labels of the cron objects."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""


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
            metadata=metadata(comp),
            pod_metadata=pod_metadata(comp, rt.pod_annotations()),
            select=False,
            spread=False,
            replicas=1,
            strategy=kplus.DeploymentStrategy.recreate(),
            automount_service_account_token=False,
            security_context=rt.security_context(),
            init_containers=[rt.wait_for_postgres(), rt.wait_for_migrations()],
            containers=[
                kplus.ContainerProps(
                    name="cron",
                    image=rt.image,
                    image_pull_policy=rt.image_pull_policy,
                    command=["sentry", "run", "cron"],
                    working_dir="/tmp",
                    env_variables=rt.env(),
                    resources=container_resources(cfg.resources),
                    security_context=rt.container_security(),
                    volume_mounts=rt.volume_mounts(self, filestore=False),
                )
            ],
        )
        select(self.deployment, comp)
