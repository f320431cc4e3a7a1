"""The day-2 review's rules, one at a time (app/day2.py, app/values.py): versions, moves,
url_prefix. The transitions test (test_day2_transitions.py) runs them in combination."""

from __future__ import annotations

import pytest

from app.day2 import Facts, image_version, location_findings, postgres_major, version_findings
from app.values import ConfigError, parse_config, parse_values


@pytest.mark.parametrize(
    ("before", "after", "refused"),
    [
        ("postgres:9.5.25", "postgres:9.6.24", True),  # 9.x: the first two numbers are the major
        ("postgres:9.6.24", "postgres:15.8", True),
        ("postgres:15.3", "postgres:15.8", False),
        ("postgres:9.6.24", "postgres:9.6.24-alpine3.19", True),  # glibc -> musl
        ("postgres:9.6.24-alpine3.18", "postgres:9.6.24-alpine3.19", False),  # musl both
        ("postgres:9.6.24", "postgres:9.6.24-bullseye", False),  # glibc both: a warning
    ],
)
def test_postgres_images_that_cannot_read_the_volume_are_refused(before: str, after: str, refused: bool) -> None:
    found = version_findings(Facts(postgres_image=before), Facts(postgres_image=after))
    assert any(f.refuse for f in found) == refused, [f.text for f in found]
    if not refused and image_version(before).variant != image_version(after).variant:  # type: ignore[union-attr]
        assert any("REINDEX" in f.text for f in found)


def test_the_major_version_is_what_postgresql_calls_one() -> None:
    assert postgres_major(image_version("postgres:9.6.24")) == (9, 6)  # type: ignore[arg-type]
    assert postgres_major(image_version("postgres:15.8")) == (15,)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("before", "after", "refused"),
    [
        ("redis:7.2.4-alpine", "redis:6.2.14-alpine", True),
        ("redis:7.2.4-alpine", "redis:7.0.15-alpine", True),  # 7.0 cannot read 7.2's RDB either
        ("redis:6.2.14-alpine", "redis:7.2.4-alpine", False),
        ("redis:6.2.15-alpine", "redis:6.2.14-alpine", False),  # a patch release back is fine
    ],
)
def test_an_older_redis_is_refused(before: str, after: str, refused: bool) -> None:
    found = version_findings(Facts(redis_image=before), Facts(redis_image=after))
    assert any(f.refuse for f in found) == refused


def test_a_migrate_from_that_names_another_place_does_not_let_a_move_through() -> None:
    config = parse_config(
        {"postgres": {"external": {"host": "10.0.8.5", "sslmode": "require"}, "migrate_from": "10.9.9.9"}}
    )
    old, new = Facts(postgres="in-cluster"), Facts(postgres="10.0.8.5:5432")
    (finding,) = location_findings(old, new, config, set())
    assert finding.refuse and "`postgres.migrate_from: in-cluster`" in finding.text
    config = parse_config(
        {"postgres": {"external": {"host": "10.0.8.5", "sslmode": "require"}, "migrate_from": "in-cluster"}}
    )
    (finding,) = location_findings(old, new, config, set())
    assert not finding.refuse


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"postgres": {"migrate_from": "in-cluster"}},
            "postgres.migrate_from 'in-cluster' names where the data is now",
        ),
        ({"redis": {"external": {"host": "10.0.9.5"}, "migrate_from": "10.0.9.5"}}, "names where the data is now"),
        ({"sentry": {"filestore": {"migrate_from": "filesystem"}}}, "names where the data is now"),
        ({"sentry": {"filestore": {"migrate_from": "nfs://x"}}}, "sentry.filestore.migrate_from"),
    ],
)
def test_migrate_from_names_a_place_the_data_is_not(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(values)


INGRESS = {"enabled": True, "host": "sentry.example.com", "tls_secret": "tls"}


@pytest.mark.parametrize(
    ("sentry", "warned"),
    [
        ({"url_prefix": "https://sentry.example.com", "web": {"ingress": INGRESS}}, None),
        ({"url_prefix": "https://other.example.com", "web": {"ingress": INGRESS}}, "serves only"),
        ({"url_prefix": "https://a.example.com", "web": {"ingress": {**INGRESS, "host": "*.example.com"}}}, None),
        (
            {"url_prefix": "https://a.b.example.com", "web": {"ingress": {**INGRESS, "host": "*.example.com"}}},
            "serves only",
        ),
        (
            {"url_prefix": "https://sentry.example.com", "web": {"ingress": {**INGRESS, "tls_secret": None}}},
            "nothing in this stack serves TLS",
        ),
        (
            {"url_prefix": "http://sentry.example.com", "web": {"ingress": INGRESS}},
            "plain http although the Ingress serves TLS",
        ),
        ({"url_prefix": "https://sentry.example.com"}, "nothing in this stack serves TLS"),
        ({"url_prefix": "http://192.168.49.2:30000"}, None),
        ({"url_prefix": "http://192.168.49.2:30001"}, "NodePort 30000"),
        ({"url_prefix": "http://sentry.internal", "web": {"service_type": "ClusterIP"}}, None),
    ],
)
def test_url_prefix_is_checked_against_where_sentry_answers(sentry: dict, warned: str | None) -> None:
    warnings = [w for w in parse_values({"sentry": sentry}).warnings if "url_prefix" in w]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0]
