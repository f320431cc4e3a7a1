"""The Prometheus statsd exporter's regex mapping (constructs/statsd_files/mapping.yml), applied
as statsd_exporter applies it: the first rule whose regex matches the whole name wins."""

from __future__ import annotations

import re

import yaml

from constructs.statsd_exporter import MAPPING


def mapped_statsd_name(name: str) -> tuple[str, dict[str, str]] | None:
    """Which metric and labels the mapping makes of a statsd name, or None (then the
    exporter exports it under its own name, dots turned into underscores)."""
    for rule in yaml.safe_load(MAPPING)["mappings"]:
        match = re.match(rule["match"], name)
        if match:

            def fill(text: str, m: re.Match[str] = match) -> str:
                return re.sub(r"\$\{?(\d)\}?", lambda g: m.group(int(g.group(1))), text)

            return fill(rule["name"]), {k: fill(v) for k, v in rule.get("labels", {}).items()}
    return None
