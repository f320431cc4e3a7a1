"""SentryWorker: the Celery workers that process events, rolled out without downtime."""

from __future__ import annotations

from dataclasses import dataclass, field

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import PodSettings, WorkerConfig
from constructs.naming import Component
from constructs.placement import apply_pod_settings
from constructs.pod_security import harden
from constructs.sentry_runtime import SentryRuntime
from constructs.workload import (
    autoscale,
    disruption_budget,
    seconds,
    select,
    zero_downtime_rollout,
)


@dataclass(frozen=True)
class SentryWorkerProps:
    """Props of SentryWorker."""

    component: Component
    """Names and labels of the worker objects."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    config: WorkerConfig = field(default_factory=WorkerConfig)
    """Replicas, concurrency, resources, grace period (defaults: see WorkerConfig)."""
    pods: PodSettings = field(default_factory=PodSettings)
    """Placement and pod metadata. Default: none, and a soft spread across nodes and zones."""


class SentryWorker(Construct):
    """`sentry run worker` with RollingUpdate 1/0 and a PodDisruptionBudget.

    On SIGTERM Celery stops taking tasks and finishes the ones it runs; the long
    termination grace period gives it the time to do so before SIGKILL. Workers
    serve no port, so there is no HTTP probe: a worker that dies exits, and the
    kubelet restarts it.
    """

    def __init__(self, scope: Construct, id: str, props: SentryWorkerProps) -> None:
        super().__init__(scope, id)
        cfg, comp, rt = props.config, props.component, props.runtime
        self.deployment = kplus.Deployment(
            self,
            "deployment",
            **rt.pod_props(self, comp),
            spread=False,
            replicas=cfg.replicas,
            strategy=zero_downtime_rollout(),
            termination_grace_period=seconds(cfg.termination_grace_seconds),
            containers=[
                rt.container(
                    self, "worker", ["sentry", "run", "worker", "--concurrency", str(cfg.concurrency)], cfg.resources
                )
            ],
        )
        select(self.deployment, comp)
        harden(self.deployment, rt.props.service_account)
        apply_pod_settings(self.deployment, props.pods, comp, spread_by_default=True)
        if cfg.autoscaling.enabled:
            autoscale(self, self.deployment, comp, cfg.autoscaling)
        disruption_budget(self, comp)
