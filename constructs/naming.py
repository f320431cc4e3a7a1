"""Names and labels, derived in one place.

Every object name is `<release>-<component>`; every object carries the six
standard `app.kubernetes.io/*` labels; selectors use the three labels that never
change over an object's life (name, instance, component). The version label is
left out of selectors on purpose: selectors are immutable, and an image upgrade
must not orphan the old pods.
"""

from __future__ import annotations

from dataclasses import dataclass

from constructs.config import StackConfig, image_tag

PART_OF = "sentry"
MANAGED_BY = "cdk8s"


@dataclass(frozen=True)
class Component:
    """One part of the stack: what it is called and how it is labelled."""

    release: str
    app: str
    component: str
    version: str

    @property
    def name(self) -> str:
        return f"{self.release}-{self.component}"

    @property
    def selector_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": self.app,
            "app.kubernetes.io/instance": self.release,
            "app.kubernetes.io/component": self.component,
        }

    @property
    def labels(self) -> dict[str, str]:
        return {
            **self.selector_labels,
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/version": self.version,
            "app.kubernetes.io/managed-by": MANAGED_BY,
        }


@dataclass(frozen=True)
class StackNames:
    """The components of one stack, named from its configuration."""

    config: StackConfig

    def _make(self, app: str, component: str, image: str) -> Component:
        return Component(self.config.release, app, component, image_tag(image))

    @property
    def postgres(self) -> Component:
        return self._make("postgresql", "postgresql", self.config.postgres.image)

    @property
    def backup(self) -> Component:
        return self._make("postgresql", "backup", self.config.postgres.image)

    @property
    def restore(self) -> Component:
        return self._make("postgresql", "restore", self.config.postgres.image)

    @property
    def redis(self) -> Component:
        return self._make("redis", "redis", self.config.redis.image)

    def sentry(self, component: str) -> Component:
        return self._make("sentry", component, self.config.sentry.effective_image)

    @property
    def secrets(self) -> Component:
        return Component(self.config.release, "sentry", "secrets", image_tag(self.config.sentry.effective_image))

    @property
    def namespace(self) -> Component:
        return Component(self.config.release, "sentry", "namespace", image_tag(self.config.sentry.effective_image))

    @property
    def secret_name(self) -> str:
        """The Secret every workload reads: ours, or the user's `existing_secret`."""
        return self.config.secrets.existing_secret or f"{self.config.release}-secrets"
