"""StackSecrets: the one Secret every workload reads (unless the user brings their own)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from constructs import Construct
from constructs.naming import Component
from imports import k8s


class StackSecrets(Construct):
    """The stack's Secret, holding every generated or supplied value under its key.

    Workloads read it only through secretKeyRef; the values reach no other object.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        name: str,
        component: Component,
        values: Mapping[str, str],
    ) -> None:
        super().__init__(scope, id)
        self.name = name
        k8s.KubeSecret(
            self,
            "secret",
            metadata=k8s.ObjectMeta(name=name, labels=component.labels),
            type="Opaque",
            data={k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
        )
