"""The Namespace the stack lives in, synthesized into the first file of dist/."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from cdk8s_plus_27 import k8s

from constructs import Construct
from constructs.checks import DnsLabel, props
from constructs.naming import Component
from constructs.pod_security import POD_SECURITY_LABELS


@props
class SentryNamespaceProps:
    """Props of SentryNamespace."""

    name: DnsLabel
    """The namespace's name."""
    component: Component
    """Its standard labels."""
    restricted: bool = True
    """Label it for Pod Security admission's `restricted` level (enforced, warned and
    audited), which every pod of the constructs meets. Default: true."""
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    """More labels. Default: none."""


class SentryNamespace(Construct):
    """A Namespace with the standard labels, Pod Security admission's `restricted` level, and
    any extra labels."""

    def __init__(self, scope: Construct, id: str, props: SentryNamespaceProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.name = props.name
        k8s.KubeNamespace(
            self,
            "namespace",
            metadata=k8s.ObjectMeta(
                name=props.name,
                labels={
                    **props.component.labels,
                    **(POD_SECURITY_LABELS if props.restricted else {}),
                    **props.extra_labels,
                },
            ),
        )
