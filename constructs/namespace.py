"""The Namespace the stack lives in, synthesized into the first file of dist/."""

from __future__ import annotations

from collections.abc import Mapping

from constructs import Construct
from constructs.naming import Component
from imports import k8s


class SentryNamespace(Construct):
    """A Namespace with the standard labels plus any extra ones (e.g. Pod Security admission)."""

    def __init__(
        self, scope: Construct, id: str, name: str, component: Component, extra_labels: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(scope, id)
        self.name = name
        k8s.KubeNamespace(
            self,
            "namespace",
            metadata=k8s.ObjectMeta(name=name, labels={**component.labels, **dict(extra_labels or {})}),
        )
