"""The constructs' props: documented defaults beside each construct, which the values model
maps onto and takes its own defaults from.

- every prop has a docstring, and every default is stated in it;
- the default values file gives every construct of the stack exactly its props' defaults,
  apart from the props the stack must give (names, the runtime, the Secret, ...): so the
  values model's defaults are the props' and no second copy can drift from them;
- a changed value reaches the props (the values model maps onto them, field by field);
- the constructs know nothing of the values model: only SentryStack (the mapping) does.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import cdk8s
import pytest

from app.stack import SentryStack
from app.values import parse_config
from tests.conftest import PROJECT_DIR
from tools.props_reference import props_classes

# What SentryStack gives a construct, whatever the values say: the construct's place in the
# stack (names, the shared runtime, the Secret, the endpoints, the gate, the claims its
# sibling constructs made) and the stack's ServiceAccount. Every other prop must be the
# construct's own default when the values file says nothing.
GIVEN_BY_THE_STACK = {
    "component",
    "backup_component",
    "config_component",
    "filestore_component",
    "runtime",
    "secret",
    "postgres",
    "redis",
    "migrations",
    "service_account",
    "filestore_claim",
}


def _stack(values: dict[str, Any] | None = None) -> SentryStack:
    config = parse_config(values or {})
    return SentryStack(cdk8s.App(), config, {})


def _constructs(stack: SentryStack) -> dict[str, Any]:
    sentry = stack.sentry
    return {
        name: construct
        for name, construct in {
            "postgres": sentry.postgres,
            "redis": sentry.redis,
            "backup": sentry.backup,
            "runtime": sentry.runtime,
            "migrations": sentry.migrations,
            "web": sentry.web,
            "worker": sentry.worker,
            "cron": sentry.cron,
            "cleanup": sentry.cleanup,
            "metrics": sentry.metrics,
        }.items()
        if construct is not None
    }


# Where the stack's defaults are its own, not the library's: minikube is reached on NodePort
# 30000 (a library user's SentryWeb gets a ClusterIP Service).
STACK_OWN = {("web", "service_type"), ("web", "node_port")}


@pytest.mark.parametrize("cls", props_classes(), ids=lambda c: c.name)
def test_every_prop_is_documented_with_its_default(cls: Any) -> None:
    for prop in cls.props:
        assert prop.doc, f"{cls.name}.{prop.name} has no docstring"
        if prop.default is not None:
            assert "Default" in prop.doc, f"{cls.name}.{prop.name}: its docstring does not state its default"


def test_the_default_values_give_each_construct_its_props_defaults() -> None:
    checked = []
    for name, construct in _constructs(_stack()).items():
        props = construct.props
        given = {f.name: getattr(props, f.name) for f in dataclasses.fields(props) if f.name in GIVEN_BY_THE_STACK}
        defaults = type(props)(**given)
        differing = [
            f.name
            for f in dataclasses.fields(props)
            if getattr(props, f.name) != getattr(defaults, f.name) and (name, f.name) not in STACK_OWN
        ]
        assert not differing, f"{name}: the default values file sets {differing} away from the props' defaults"
        checked.append(type(props).__name__)
    # Every construct of the default stack was compared, the in-cluster servers included.
    assert {"PostgresWithBackupProps", "PostgresBackupProps", "RedisBrokerProps", "SentryWebProps"} <= set(checked)


def test_the_backup_of_the_default_stack_is_the_backup_options_default() -> None:
    from constructs.postgres_backup import BackupOptions

    sentry = _stack().sentry
    assert sentry.postgres.props.backup == BackupOptions()
    assert sentry.backup is not None and sentry.backup.props.options == BackupOptions()


@pytest.mark.parametrize(
    ("values", "construct", "prop", "expected"),
    [
        ({"sentry": {"web": {"replicas": 3}}}, "web", "replicas", 3),
        ({"sentry": {"web": {"service_type": "ClusterIP"}}}, "web", "service_type", "ClusterIP"),
        ({"sentry": {"worker": {"concurrency": 4}}}, "worker", "concurrency", 4),
        ({"sentry": {"worker": {"termination_grace_seconds": 60}}}, "worker", "termination_grace_seconds", 60),
        ({"sentry": {"cleanup": {"days": 30}}}, "cleanup", "days", 30),
        ({"sentry": {"migrations": {"backoff_limit": 1}}}, "migrations", "backoff_limit", 1),
        ({"sentry": {"admin_email": "ops@example.org"}}, "migrations", "admin_email", "ops@example.org"),
        (
            {"sentry": {"url_prefix": "https://sentry.example.org"}},
            "runtime",
            "url_prefix",
            "https://sentry.example.org",
        ),
        ({"postgres": {"database": "events"}}, "postgres", "database", "events"),
        ({"redis": {"image": "redis:6.2.15-alpine"}}, "redis", "image", "redis:6.2.15-alpine"),
    ],
)
def test_a_value_reaches_its_prop(values: dict[str, Any], construct: str, prop: str, expected: Any) -> None:
    assert getattr(_constructs(_stack(values))[construct].props, prop) == expected


def test_toggles_map_to_optional_props() -> None:
    from constructs.props import S3Filestore, Storage

    on = _constructs(
        _stack(
            {
                "sentry": {
                    "web": {
                        "ingress": {"enabled": True, "host": "sentry.example.org"},
                        "autoscaling": {"enabled": True},
                    },
                    "filestore": {"backend": "s3", "s3": {"bucket": "sentry-files", "access_key_id": "AKIAFILES"}},
                },
                "postgres": {"backup": {"enabled": False}},
            }
        )
    )
    assert on["web"].props.ingress is not None and on["web"].props.ingress.host == "sentry.example.org"
    assert on["web"].props.autoscaling is not None and on["web"].props.autoscaling.min_replicas == 2
    assert on["worker"].props.autoscaling is None
    files = on["runtime"].props.filestore
    assert isinstance(files, S3Filestore) and files.bucket == "sentry-files"
    assert on["postgres"].props.backup is None and "backup" not in on
    off = _constructs(_stack())
    assert off["web"].props.ingress is None and off["web"].props.autoscaling is None
    assert type(off["runtime"].props.filestore) is Storage, "the filesystem backend is a claim: Storage"


def test_the_constructs_know_nothing_of_the_application() -> None:
    # The constructs take props; the values model (app/config.py) imports them for its
    # defaults, and the assembly (app/stack.py) maps it onto them. A construct importing the
    # application layer (or pydantic, which the values model is built with) would make the
    # values model the props again, and the constructs unusable on their own.
    importers = sorted(
        module.name
        for module in (PROJECT_DIR / "constructs").glob("*.py")
        if re.search(r"^\s*(from app\b|import app\b)", module.read_text(), flags=re.M)
    )
    assert importers == []


def test_an_external_postgres_is_verified_by_default_and_needs_its_ca() -> None:
    import cdk8s_plus_27 as kplus

    from constructs.endpoints import CaCertificate, ExternalPostgresProps

    chart = cdk8s.Chart(cdk8s.App(), "bare")
    secret = kplus.Secret.from_secret_name(chart, "secret", "demo")
    with pytest.raises(ValueError, match="sslmode verify-full needs ca"):
        ExternalPostgresProps(host="db.example.org", secret=secret, client_image="postgres:15.8")
    props = ExternalPostgresProps(
        host="db.example.org", secret=secret, client_image="postgres:15.8", ca=CaCertificate(secret="db-ca")
    )
    assert props.sslmode == "verify-full"
    with pytest.raises(ValueError, match="exactly one of secret or config_map"):
        CaCertificate(secret="db-ca", config_map="db-ca")
    with pytest.raises(ValueError, match="exactly one of secret or config_map"):
        CaCertificate()


def test_an_options_rule_holds_for_the_props_that_extend_it() -> None:
    """A library user who builds a construct's props directly (SentryRuntimeProps extends
    SentryRuntimeOptions) is held to the options' own rules, not only to the props' rules."""
    from constructs.checks import PropsError, fail, props

    @props
    class Options:
        low: int = 1
        high: int = 2

        def __post_init__(self) -> None:
            if self.low > self.high:
                fail(self, "low", "must not exceed high")

    @props
    class Props(Options):
        name: str = "x"

        def __post_init__(self) -> None:
            if not self.name:
                fail(self, "name", "must not be empty")

    with pytest.raises(PropsError, match=r"Props\.low: must not exceed high"):
        Props(low=3, high=2)
    with pytest.raises(PropsError, match=r"Props\.name: must not be empty"):
        Props(name="")
    assert Props(low=1, high=2).name == "x"
