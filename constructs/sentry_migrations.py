"""SentryMigrations: the Job that migrates the database and creates the superuser.

Without Helm hooks, ordering comes from waiting, not from install phases:
1. init `wait-for-postgres`: until the database accepts connections;
2. init `migrate` (the Sentry image): `sentry upgrade --noinput`, then the
   superuser, idempotently (constructs/scripts/sentry-migrate.sh);
3. container `mark-migrated`: records the image's migrations as complete in the
   database; web, worker and cron wait for that record in their init containers.
Init containers run in order and each must succeed, so the record is written
only after both Sentry steps succeeded.

A Job's pod template is immutable, so the Job's name carries a hash of
everything in it: a new image or configuration is a new Job (and new
migrations), while re-applying an unchanged dist/ leaves the finished Job alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import cdk8s_plus_27 as kplus

from constructs import Construct
from constructs.config import MigrationsConfig
from constructs.naming import Component
from constructs.pod_security import POD_TEMPLATE_HARDENING
from constructs.secrets_store import ADMIN_PASSWORD
from constructs.sentry_runtime import SentryRuntime
from constructs.workload import (
    WAIT_RESOURCES,
    bash_command,
    plain_env,
    script,
    seconds,
    secret_env,
)


@dataclass(frozen=True)
class SentryMigrationsProps:
    """Props of SentryMigrations."""

    config: MigrationsConfig
    """Resources, retries and deadline (defaults: see MigrationsConfig)."""
    component: Component
    """Names and labels of the Job (its name gets a content hash suffix)."""
    runtime: SentryRuntime
    """The shared Sentry pod configuration."""
    admin_email: str
    """Email (login) of the superuser."""


class SentryMigrations(Construct):
    """The migration Job; see the module docstring for the sequence."""

    def __init__(self, scope: Construct, id: str, props: SentryMigrationsProps) -> None:
        super().__init__(scope, id)
        cfg, comp, rt = props.config, props.component, props.runtime
        self.name = f"{comp.name}-{self._fingerprint(props)}"
        env = {
            **rt.env(),
            **plain_env({"SENTRY_ADMIN_EMAIL": props.admin_email}),
            "SENTRY_ADMIN_PASSWORD": secret_env(rt.props.secret, ADMIN_PASSWORD.key),
        }
        self.job = kplus.Job(
            self,
            "job",
            **rt.pod_props(
                comp,
                name=self.name,
                init_containers=[
                    rt.wait_for_postgres(),
                    rt.container(
                        self,
                        "migrate",
                        bash_command("sentry-migrate"),
                        cfg.resources,
                        filestore=False,
                        env=env,
                        working_dir="/tmp",
                    ),
                ],
            ),
            backoff_limit=cfg.backoff_limit,
            active_deadline=seconds(cfg.active_deadline_seconds),
            restart_policy=kplus.RestartPolicy.NEVER,
            containers=[
                rt.postgres_client("mark-migrated", "mark-migrated", {"SENTRY_MIGRATION_VERSION": rt.migration_version})
            ],
        )

    @staticmethod
    def _fingerprint(props: SentryMigrationsProps) -> str:
        rt = props.runtime
        inputs = {
            "image": rt.image,
            "config": rt.checksum,
            "settings": props.config.model_dump(),
            "admin": props.admin_email,
            "postgres": [rt.props.postgres.image, rt.props.postgres.host, rt.props.postgres.database],
            "secret": rt.props.secret.name,
            "scripts": [script(n) for n in ("wait-for-postgres", "sentry-migrate", "mark-migrated")],
            "wait": WAIT_RESOURCES.model_dump(),
            "pod_security": POD_TEMPLATE_HARDENING,
            "sentry": rt.props.config.model_dump(exclude={"web", "worker", "cron", "cleanup"}),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:8]
