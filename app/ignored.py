"""Settings a values file gives that the stack would not use, and settings that cannot work.

The values model fills every key with its default before it validates (app/values.py), so
whether a user *wrote* a setting is decided here, on the mapping they wrote (`given`), while
what the stack does is decided on the validated configuration.

A setting of a part that is off (the Ingress's `tls_secret` while the Ingress is off, the
in-cluster PostgreSQL's `storage` while PostgreSQL is external) would be ignored without a
word. It is

- refused when the part is off only because the values file never switched it on: the
  setting says the user expects the part, so they most likely forgot its switch;
- warned about when the values file itself turns the part off (or picks the alternative):
  the user chose that, and may keep the setting for when they switch back.

Beyond those, two combinations that can work only with help from outside the stack are
warned about: a login whose provider the NetworkPolicies do not let Sentry reach, and an
https:// public URL with no TLS in the stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel

from app.config import StackConfig


@dataclass(frozen=True)
class Finding:
    """One setting the stack would ignore or that cannot work as given."""

    field: str
    """The setting, dotted as written in a values file."""
    message: str
    refuse: bool

    def render(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Part:
    """A part of the stack that a switch turns off, and the settings that then go unused."""

    off: str
    """What is the case while it is off, in words ("the Ingress is off")."""
    switch: str
    """The setting that turns it on or off, dotted."""
    is_on: Callable[[StackConfig], bool]
    turn_on: str
    """How to turn it on, in words."""
    settings: tuple[str, ...]
    """The settings it alone uses, dotted; a mapping counts with every key under it."""


def _under(group: str, *keys: str) -> tuple[str, ...]:
    return tuple(f"{group}.{key}" for key in keys)


def _external(name: str) -> Callable[[StackConfig], bool]:
    return lambda c: bool(getattr(c, name).external.host)


# Outer parts first: a setting inside two parts that are off is reported once, by the outer.
PARTS: tuple[Part, ...] = (
    Part(
        "the backups are off",
        "postgres.backup.enabled",
        lambda c: c.postgres.backup.enabled,
        "set postgres.backup.enabled: true",
        _under(
            "postgres.backup",
            "schedule",
            "keep",
            "compression_level",
            "jobs",
            "roles",
            "filestore",
            "starting_deadline_seconds",
            "active_deadline_seconds",
            "backoff_limit",
            "storage",
            "resources",
            "offsite",
            "restore",
        ),
    ),
    Part(
        "the offsite copy is off",
        "postgres.backup.offsite.enabled",
        lambda c: c.postgres.backup.offsite.enabled,
        "set postgres.backup.offsite.enabled: true",
        _under(
            "postgres.backup.offsite",
            "image",
            "bucket",
            "prefix",
            "endpoint_url",
            "region",
            "access_key_id",
            "resources",
        ),
    ),
    Part(
        "the restore Job is off",
        "postgres.backup.restore.enabled",
        lambda c: c.postgres.backup.restore.enabled,
        "set postgres.backup.restore.enabled: true (docs/operations.md, restore runbook)",
        _under(
            "postgres.backup.restore",
            "file",
            "jobs",
            "roles",
            "filestore",
            "wait_for_clients_seconds",
            "active_deadline_seconds",
            "resources",
        ),
    ),
    Part(
        "PostgreSQL is external, none runs in the cluster",
        "postgres.external.host",
        lambda c: not c.postgres.external.host,
        "remove postgres.external.host",
        ("postgres.storage", "postgres.resources", "postgres.pods"),
    ),
    Part(
        "PostgreSQL runs in the cluster",
        "postgres.external.host",
        _external("postgres"),
        "set postgres.external.host to the server",
        _under("postgres.external", "port", "sslmode", "ca", "cidrs", "superuser"),
    ),
    Part(
        "Redis is external, none runs in the cluster",
        "redis.external.host",
        lambda c: not c.redis.external.host,
        "remove redis.external.host",
        ("redis.storage", "redis.resources", "redis.pods"),
    ),
    Part(
        "Redis runs in the cluster",
        "redis.external.host",
        _external("redis"),
        "set redis.external.host to the server",
        _under("redis.external", "port", "db", "cidrs", "password"),
    ),
    Part(
        "the filestore is a bucket, there is no filestore volume",
        "sentry.filestore.backend",
        lambda c: c.sentry.filestore.backend == "filesystem",
        "set sentry.filestore.backend: filesystem",
        (
            "sentry.filestore.size",
            "sentry.filestore.storage_class",
            "sentry.filestore.access_mode",
            # The backups archive the filestore volume; a bucket's files are the bucket's to keep.
            "postgres.backup.filestore",
            "postgres.backup.restore.filestore",
        ),
    ),
    Part(
        "the filestore is not in S3",
        "sentry.filestore.backend",
        lambda c: c.sentry.filestore.backend == "s3",
        "set sentry.filestore.backend: s3",
        ("sentry.filestore.s3",),
    ),
    Part(
        "the filestore is not in Google Cloud Storage",
        "sentry.filestore.backend",
        lambda c: c.sentry.filestore.backend == "gcs",
        "set sentry.filestore.backend: gcs",
        ("sentry.filestore.gcs",),
    ),
    Part(
        "the Ingress is off",
        "sentry.web.ingress.enabled",
        lambda c: c.sentry.web.ingress.enabled,
        "set sentry.web.ingress.enabled: true",
        _under("sentry.web.ingress", "host", "class_name", "tls_secret", "annotations"),
    ),
    Part(
        "a ClusterIP Service has no node port",
        "sentry.web.service_type",
        lambda c: c.sentry.web.service_type != "ClusterIP",
        "set sentry.web.service_type: NodePort or LoadBalancer",
        ("sentry.web.node_port",),
    ),
    *(
        part
        for name in ("web", "worker")
        for part in (
            Part(
                f"the autoscaler sets the number of {name} pods",
                f"sentry.{name}.autoscaling.enabled",
                lambda c, n=name: not getattr(c.sentry, n).autoscaling.enabled,
                f"set sentry.{name}.autoscaling.enabled: false (the autoscaler's floor is autoscaling.min_replicas)",
                (f"sentry.{name}.replicas",),
            ),
            Part(
                f"the {name} autoscaler is off",
                f"sentry.{name}.autoscaling.enabled",
                lambda c, n=name: getattr(c.sentry, n).autoscaling.enabled,
                f"set sentry.{name}.autoscaling.enabled: true",
                _under(f"sentry.{name}.autoscaling", "min_replicas", "max_replicas", "target_cpu_percent"),
            ),
        )
    ),
    Part(
        "the metrics exporter is off",
        "sentry.metrics.enabled",
        lambda c: c.sentry.metrics.enabled,
        "set sentry.metrics.enabled: true",
        _under(
            "sentry.metrics",
            "image",
            "resources",
            "service_monitor",
            "service_monitor_labels",
            "scrape_interval_seconds",
        ),
    ),
    Part(
        "outgoing mail is off",
        "sentry.smtp.host",
        lambda c: bool(c.sentry.smtp.host),
        "set sentry.smtp.host to the mail server",
        # Not from_address: it is also Sentry's SERVER_EMAIL, the sender of its error reports.
        _under("sentry.smtp", "port", "user", "use_tls"),
    ),
    Part(
        "the GitLab login is off",
        "sentry.gitlab.login_enabled",
        lambda c: c.sentry.gitlab.login_enabled,
        "set sentry.gitlab.login_enabled: true",
        ("sentry.gitlab.application_id", "sentry.gitlab.base_domain"),
    ),
    Part(
        "the scheduled cleanup is off",
        "sentry.cleanup.enabled",
        lambda c: c.sentry.cleanup.enabled,
        "set sentry.cleanup.enabled: true",
        _under("sentry.cleanup", "days", "schedule", "resources"),
    ),
    Part(
        "the NetworkPolicies are off",
        "network.policies",
        lambda c: c.network.policies,
        "set network.policies: true",
        _under(
            "network",
            "dns_namespace",
            "dns_pod_labels",
            "sentry_egress_cidrs",
            "sentry_egress_ports",
            "offsite_egress_cidrs",
            "egress_except_cidrs",
        ),
    ),
)


def given_at(given: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """Whether the values file wrote the setting, and its value as written."""
    node: Any = given
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _group(dotted: str) -> bool:
    """Whether the setting is a group of the model (its keys are settings of their own), not
    a free-form mapping such as labels or a node selector."""
    model: type[BaseModel] = StackConfig
    for part in dotted.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return False
        nested = [c for c in (field.annotation, *get_args(field.annotation)) if isinstance(c, type)]
        models = [c for c in nested if issubclass(c, BaseModel)]
        if not models:
            return False
        model = models[0]
    return True


def _leaves(dotted: str, value: Any) -> list[str]:
    """The settings a value gives: a group counts as each of its keys."""
    if isinstance(value, Mapping) and value and _group(dotted):
        return [leaf for key, item in value.items() for leaf in _leaves(f"{dotted}.{key}", item)]
    return [dotted]


def _switch_words(dotted: str, value: Any) -> str:
    return f"{dotted}: {json.dumps(value)}"


def _unused(given: Mapping[str, Any], config: StackConfig) -> list[Finding]:
    found: list[Finding] = []
    reported: set[str] = set()
    for part in PARTS:
        if part.is_on(config):
            continue
        switched, value = given_at(given, part.switch)
        for setting in part.settings:
            written, setting_value = given_at(given, setting)
            if not written:
                continue
            leaves = [leaf for leaf in _leaves(setting, setting_value) if leaf not in reported]
            reported |= set(leaves)
            for leaf in leaves:
                if switched:
                    found.append(
                        Finding(
                            leaf,
                            f"ignored: {part.off} ({_switch_words(part.switch, value)}); "
                            f"remove the setting, or {part.turn_on}",
                            refuse=False,
                        )
                    )
                else:
                    found.append(
                        Finding(
                            leaf,
                            f"is set, but {part.off} ({part.switch} is not set, and its default says so): "
                            f"{part.turn_on}, or remove the setting",
                            refuse=True,
                        )
                    )
    return found


def _login_without_egress(config: StackConfig) -> list[Finding]:
    """A login (or the GitHub integration) needs web and worker to reach GitHub or GitLab over
    HTTPS; NetworkPolicies without egress there make it fail at the first sign-in."""
    sentry, network = config.sentry, config.network
    providers = []
    if sentry.github.login_enabled or sentry.github.app_id:
        field = "sentry.github.login_enabled" if sentry.github.login_enabled else "sentry.github.app_id"
        providers.append((field, "GitHub"))
    if sentry.gitlab.login_enabled:
        providers.append(("sentry.gitlab.login_enabled", f"GitLab ({sentry.gitlab.base_domain})"))
    if not providers or not network.policies:
        return []
    if not network.sentry_egress_cidrs:
        why = "network.sentry_egress_cidrs is [] (no egress)"
    elif 443 not in network.sentry_egress_ports:
        why = f"network.sentry_egress_ports {list(network.sentry_egress_ports)} leaves out 443 (HTTPS)"
    else:
        return []
    return [
        Finding(
            field,
            f"{name} is reached over HTTPS, but {why}: sign-in will fail unless a NetworkPolicy of your own "
            "lets web and worker reach it; add its addresses to network.sentry_egress_cidrs and 443 to "
            "network.sentry_egress_ports",
            refuse=False,
        )
        for field, name in providers
    ]


def _https_without_tls(config: StackConfig) -> list[Finding]:
    """An https:// public URL with no certificate in the stack works only if something in
    front of it (a load balancer, an Ingress controller's default certificate) ends TLS."""
    sentry = config.sentry
    ingress = sentry.web.ingress
    if not sentry.url_prefix.startswith("https://") or (ingress.enabled and ingress.tls_secret):
        return []
    return [
        Finding(
            "sentry.url_prefix",
            f"{sentry.url_prefix} is https://, but nothing in this stack serves TLS (no Ingress with "
            "sentry.web.ingress.tls_secret): unless a load balancer or proxy in front ends TLS, the "
            "address will not answer, and the GitHub/GitLab redirects built from it fail",
            refuse=False,
        )
    ]


def _host_matches(host: str, pattern: str) -> bool:
    """An Ingress host rule: exact, or `*.` matching exactly one leading label."""
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return host == pattern


def _url_prefix_elsewhere(config: StackConfig) -> list[Finding]:
    """sentry.url_prefix is what Sentry writes into DSNs, mail links and OAuth callbacks: it
    must be where the stack answers. Warnings, not refusals: a proxy or load balancer in front
    (another host name, another port) is a legitimate reason for each difference. (An https://
    prefix with no TLS in the stack is _https_without_tls.)"""
    url = config.sentry.url_prefix
    if not url:
        return []
    parts = urlsplit(url)
    host, scheme = parts.hostname or "", parts.scheme
    web = config.sentry.web
    ingress = web.ingress
    links = "DSNs, mail links and OAuth callbacks"
    found: list[str] = []
    if ingress.enabled:
        if not _host_matches(host, ingress.host):
            found.append(
                f"{url} names the host {host}, but the Ingress serves only sentry.web.ingress.host "
                f"{ingress.host}: {links} would point where this Ingress does not answer (set both to the same host)"
            )
        if scheme == "http" and ingress.tls_secret:
            found.append(
                f"{url} is plain http although the Ingress serves TLS: {links} would send users and clients "
                "over plain HTTP (use https://)"
            )
    elif web.service_type == "NodePort" and scheme == "http" and (parts.port or 80) != web.node_port:
        found.append(
            f"{url} is port {parts.port or 80}, but Sentry answers on NodePort {web.node_port} "
            f"(sentry.web.node_port): unless a proxy forwards that port, {links} point where nothing answers"
        )
    return [Finding("sentry.url_prefix", text, refuse=False) for text in found]


def findings(given: Mapping[str, Any], config: StackConfig) -> list[Finding]:
    """Everything the stack would ignore or cannot make work, for a values file's own mapping
    (`given`) and the configuration validated from it."""
    return [
        *_unused(given, config),
        *_login_without_egress(config),
        *_https_without_tls(config),
        *_url_prefix_elsewhere(config),
    ]
