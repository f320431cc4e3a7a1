"""StackSecrets: the one Secret every workload reads (unless the user brings their own)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from cdk8s_plus_27 import k8s

from constructs import Construct
from constructs.checks import KubeName, props
from constructs.naming import Component


@props
class StackSecretsProps:
    """Props of StackSecrets."""

    name: KubeName
    """The Secret's name."""
    component: Component
    """Its standard labels."""
    values: Mapping[str, str]
    """Every key (constructs/secret_keys.py) and its value, in plain text (encoded here)."""


class StackSecrets(Construct):
    """The stack's Secret, holding every generated or supplied value under its key.

    Workloads read it only through secretKeyRef; the values reach no other object.
    """

    def __init__(self, scope: Construct, id: str, props: StackSecretsProps) -> None:
        super().__init__(scope, id)
        self.name = props.name
        k8s.KubeSecret(
            self,
            "secret",
            metadata=k8s.ObjectMeta(name=props.name, labels=props.component.labels),
            type="Opaque",
            data={k: base64.b64encode(v.encode()).decode() for k, v in sorted(props.values.items())},
        )
