"""Names and labels, derived in one place.

Every object name is `<release>-<component>`; every object carries the standard
`app.kubernetes.io/*` labels; selectors use the three labels that never change over an
object's life (name, instance, component). The version label is left out of selectors on
purpose: selectors are immutable, and an image upgrade must not orphan the old pods.
"""

from __future__ import annotations

import re
from typing import Annotated

from constructs.checks import Check, DnsLabel, dns_label, fail, props

MANAGED_BY = "cdk8s"
# Service names are DNS-1035 labels: a letter first, at most 63 characters.
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _label_value(value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"{value!r} is not a label value: at most 63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )


LabelValue = Annotated[str, Check(_label_value)]


@props
class Component:
    """One part of a stack: what its objects are called and how they are labelled."""

    release: DnsLabel
    """The instance: prefix of the names, app.kubernetes.io/instance."""
    app: DnsLabel
    """What runs (sentry, postgresql, redis): app.kubernetes.io/name."""
    component: DnsLabel
    """The part (web, worker, ...): the names' suffix, app.kubernetes.io/component."""
    version: LabelValue = ""
    """The image's tag: app.kubernetes.io/version (never in a selector). Default: empty, no
    version label."""
    part_of: LabelValue = ""
    """The application it belongs to: app.kubernetes.io/part-of. Default: empty, no part-of
    label (a PostgreSQL made alone belongs to whatever uses it)."""

    def __post_init__(self) -> None:
        if not _DNS_1035.match(self.name) or len(self.name) > 63:
            fail(
                self,
                "release",
                f"the objects' name {self.name!r} must start with a letter and have at most 63 "
                "characters (a Service name is a DNS-1035 label)",
            )

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
        labels = dict(self.selector_labels)
        if self.part_of:
            labels["app.kubernetes.io/part-of"] = self.part_of
        if self.version:
            labels["app.kubernetes.io/version"] = self.version
        labels["app.kubernetes.io/managed-by"] = MANAGED_BY
        return labels

    def sibling(self, component: str, app: str | None = None, version: str | None = None) -> Component:
        """Another part of the same release (same instance and part-of)."""
        return Component(
            release=self.release,
            app=app or self.app,
            component=component,
            version=self.version if version is None else version,
            part_of=self.part_of,
        )


def image_tag(image: str) -> str:
    """The tag of an image reference ("latest" when none), used as app.kubernetes.io/version."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def release_from_id(construct_id: str) -> str:
    """The release a construct's id names when no release is given: the id itself, which must
    then be a usable name (lower-case letters, digits and '-')."""
    try:
        dns_label(construct_id)
    except ValueError as exc:
        raise ValueError(f"construct id {construct_id!r} cannot name the objects: {exc}; give a release") from None
    return construct_id


def own_component(
    construct_id: str, given: Component | None, app: str, component: str, image: str, part_of: str = ""
) -> Component:
    """The component a construct names its objects by: the one given, or one derived from the
    construct's id and its image's tag."""
    if given is not None:
        return given
    return Component(
        release=release_from_id(construct_id), app=app, component=component, version=image_tag(image), part_of=part_of
    )
