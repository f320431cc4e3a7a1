"""SentryCron: the Celery beat scheduler, of which exactly one must run."""

from __future__ import annotations

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.checks import props
from constructs.naming import Component
from constructs.props import PodSettings, Resources, resources
from constructs.sentry_migrations import MigrationGate
from constructs.sentry_runtime import SentryRuntime


@props
class SentryCronOptions:
    """What a user chooses about the scheduler pod."""

    # 50m: the seed measured 2m in use; with 100m the upgrade peak would not fit a minikube
    # that runs Calico (docs/operations.md: Capacity).
    resources: Resources = resources("50m", "150Mi", "250m", "250Mi")
    """Requests and limits of the scheduler. Default: 50m / 150Mi requested, 250m / 250Mi at most."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none."""


@props
class SentryCronProps(SentryCronOptions):
    """Props of SentryCron: the options, and what the scheduler runs with."""

    component: Component
    """Names and labels of the cron objects."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    migrations: MigrationGate
    """The migrations the pod waits for (SentryMigrations) before it starts."""


class SentryCron(Construct):
    """`sentry run cron`: one replica, updated with Recreate.

    Two schedulers would push every periodic task twice, so a rollout stops the old
    pod before it starts the new one; a short gap in scheduling is harmless, as beat
    catches up on start. Celery beat writes its schedule file to the working
    directory, hence /tmp (an emptyDir; the root filesystem is read-only).
    """

    def __init__(self, scope: Construct, id: str, props: SentryCronProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp, rt = props.component, props.runtime
        self.deployment = kplus.Deployment(
            self,
            "deployment",
            **rt.pod_props(self, comp, [rt.wait_for_postgres(self), props.migrations.wait_container(self)]),
            spread=False,
            replicas=1,
            strategy=kplus.DeploymentStrategy.recreate(),
            containers=[
                rt.container(
                    self, "cron", ["sentry", "run", "cron"], props.resources, filestore=False, working_dir="/tmp"
                )
            ],
        )
        rt.finish(self.deployment, comp, props.pods, {"cron": props.resources})
