"""Names and labels, derived in one place.

Every object name is `<release>-<component>`; every object carries the six
standard `app.kubernetes.io/*` labels; selectors use the three labels that never
change over an object's life (name, instance, component). The version label is
left out of selectors on purpose: selectors are immutable, and an image upgrade
must not orphan the old pods.
"""

from __future__ import annotations

from dataclasses import dataclass

PART_OF = "sentry"
MANAGED_BY = "cdk8s"


@dataclass(frozen=True)
class Component:
    """One part of the stack: what it is called and how it is labelled."""

    release: str
    """The instance: prefix of the names, app.kubernetes.io/instance."""
    app: str
    """What runs (sentry, postgresql, redis): app.kubernetes.io/name."""
    component: str
    """The part (web, worker, ...): the names' suffix, app.kubernetes.io/component."""
    version: str
    """The image's tag: app.kubernetes.io/version (never in a selector)."""

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


def image_tag(image: str) -> str:
    """The tag of an image reference ("latest" when none), used as app.kubernetes.io/version."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"
