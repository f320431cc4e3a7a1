"""SentryWorker: the Celery workers that process events, rolled out without downtime."""

from __future__ import annotations

from typing import Annotated

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.checks import Range, props
from constructs.kube import seconds
from constructs.naming import Component
from constructs.props import PodSettings, Resources, resources
from constructs.sentry_migrations import MigrationGate
from constructs.sentry_runtime import SentryRuntime
from constructs.workload import CpuAutoscaling, autoscale, disruption_budget, zero_downtime_rollout


@props
class SentryWorkerOptions:
    """What a user chooses about the worker pods."""

    replicas: Annotated[int, Range(1, 50)] = 2
    """Worker pods. Default: 2, so a rollout or a node drain keeps one processing events."""
    concurrency: Annotated[int, Range(1, 64)] = 2
    """Celery processes per pod. Default: 2."""
    resources: Resources = resources("100m", "288Mi", "300m", "3Gi")
    """Requests and limits of the worker container. Default: 100m / 288Mi requested (a warm
    worker with two processes holds about 274 MiB: docs/operations.md, Capacity), 300m / 3Gi at
    most (a large event's processing briefly needs much more than an idle worker)."""
    termination_grace_seconds: Annotated[int, Range(30, None)] = 300
    """Time a stopping worker gets to finish its running tasks. Default: 300."""
    autoscaling: CpuAutoscaling | None = None
    """Scale on CPU with a HorizontalPodAutoscaler instead of a fixed `replicas`. Default: off."""
    pods: PodSettings = PodSettings()
    """Placement and pod metadata. Default: none, and a soft spread across nodes and zones."""


@props
class SentryWorkerProps(SentryWorkerOptions):
    """Props of SentryWorker: the options, and what the worker pods run with."""

    component: Component
    """Names and labels of the worker objects."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    migrations: MigrationGate
    """The migrations the pods wait for (SentryMigrations) before they start."""


class SentryWorker(Construct):
    """`sentry run worker` with RollingUpdate 1/0 and a PodDisruptionBudget.

    On SIGTERM Celery stops taking tasks and finishes the ones it runs; the long
    termination grace period gives it the time to do so before SIGKILL. Workers
    serve no port, so there is no HTTP probe: a worker that dies exits, and the
    kubelet restarts it.
    """

    def __init__(self, scope: Construct, id: str, props: SentryWorkerProps) -> None:
        super().__init__(scope, id)
        self.props = props
        comp, rt = props.component, props.runtime
        self.deployment = kplus.Deployment(
            self,
            "deployment",
            **rt.pod_props(self, comp, [rt.wait_for_postgres(self), props.migrations.wait_container(self)]),
            spread=False,
            replicas=props.replicas,
            strategy=zero_downtime_rollout(),
            termination_grace_period=seconds(props.termination_grace_seconds),
            containers=[
                rt.container(
                    self,
                    "worker",
                    ["sentry", "run", "worker", "--concurrency", str(props.concurrency)],
                    props.resources,
                )
            ],
        )
        rt.finish(self.deployment, comp, props.pods, {"worker": props.resources}, spread_by_default=True)
        if props.autoscaling is not None:
            autoscale(self, self.deployment, comp, props.autoscaling)
        disruption_budget(self, comp)
