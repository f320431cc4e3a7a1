"""Settings the stack would ignore are never ignored without a word (app/ignored.py).

- A setting of a part the values file switched off is warned about by name, and it really
  is ignored: the output is the same with and without it (so the warning is true).
- The same setting while the part is off only by default is refused (tests/test_bad_input.py
  has those cases, with the exit status and dist/ untouched).
- A login the NetworkPolicies cannot let through, and an https:// URL with no TLS in the
  stack, are warned about.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.ignored import PARTS, Part
from app.values import ConfigError, load_values, parse_values
from tests.conftest import PROJECT_DIR, synth
from tests.variants import candidates, leaves, synth_objects, with_leaf

# How a values file switches each part off itself (valid on its own, no secret needed).
S3_FILES = {"backend": "s3", "s3": {"bucket": "sentry-files", "access_key_id": "AKIAFILES"}}
OFF: dict[str, dict[str, Any]] = {
    "the backups are off": {"postgres": {"backup": {"enabled": False}}},
    "the offsite copy is off": {"postgres": {"backup": {"offsite": {"enabled": False}}}},
    "the restore Job is off": {"postgres": {"backup": {"restore": {"enabled": False}}}},
    "PostgreSQL is external, none runs in the cluster": {
        "postgres": {"external": {"host": "10.0.8.5", "sslmode": "require"}}
    },
    "PostgreSQL runs in the cluster": {"postgres": {"external": {"host": ""}}},
    "Redis is external, none runs in the cluster": {"redis": {"external": {"host": "10.0.9.15"}}},
    "Redis runs in the cluster": {"redis": {"external": {"host": ""}}},
    # With the restore Job on, so that its `filestore` is a setting in use but for the bucket.
    "the filestore is a bucket, there is no filestore volume": {
        "sentry": {"filestore": S3_FILES},
        "postgres": {"backup": {"restore": {"enabled": True}}},
    },
    "the filestore is not in S3": {"sentry": {"filestore": {"backend": "filesystem"}}},
    "the filestore is not in Google Cloud Storage": {"sentry": {"filestore": {"backend": "filesystem"}}},
    "the Ingress is off": {"sentry": {"web": {"ingress": {"enabled": False}}}},
    "a ClusterIP Service has no node port": {"sentry": {"web": {"service_type": "ClusterIP"}}},
    "the autoscaler sets the number of web pods": {"sentry": {"web": {"autoscaling": {"enabled": True}}}},
    "the web autoscaler is off": {"sentry": {"web": {"autoscaling": {"enabled": False}}}},
    "the autoscaler sets the number of worker pods": {"sentry": {"worker": {"autoscaling": {"enabled": True}}}},
    "the worker autoscaler is off": {"sentry": {"worker": {"autoscaling": {"enabled": False}}}},
    "the metrics exporter is off": {"sentry": {"metrics": {"enabled": False}}},
    "outgoing mail is off": {"sentry": {"smtp": {"host": ""}}},
    "the GitLab login is off": {"sentry": {"gitlab": {"login_enabled": False}}},
    "the scheduled cleanup is off": {"sentry": {"cleanup": {"enabled": False}}},
    "the NetworkPolicies are off": {"network": {"policies": False}},
}


def _with_settings(part: Part) -> tuple[dict[str, Any], list[str]]:
    """The part's off state plus a different, valid value for a leaf of each of its settings."""
    values = copy.deepcopy(OFF[part.off])
    written = []
    for setting in part.settings:
        found = False
        for leaf in (lf for lf in leaves() if lf.name == setting or lf.name.startswith(setting + ".")):
            current: Any = parse_values(values).config.model_dump()
            for key in leaf.path:
                current = current[key]
            for value in candidates(leaf, current):
                attempt = with_leaf(values, leaf.path, value)
                try:
                    parse_values(attempt)
                except ConfigError:
                    continue
                values, found = attempt, True
                written.append(leaf.name)
                break
        assert found, f"no valid value for {setting} while {part.off}"
    return values, written


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.off)
def test_a_setting_of_a_part_switched_off_is_warned_about_and_really_ignored(part: Part) -> None:
    base = OFF[part.off]
    assert not part.is_on(parse_values(base).config), "the off state must turn the part off"
    assert parse_values(base).warnings == [], "the off state alone warns about nothing"
    values, written = _with_settings(part)
    warnings = parse_values(values, "values.yaml").warnings
    said = f": ignored: {part.off} ({part.switch}: "
    for name in written:  # a group (ca: {secret: ...}) is named by each of its keys
        named = [w for w in warnings if w.startswith((f"values.yaml: {name}: ", f"values.yaml: {name}."))]
        assert named and all(said in w for w in named), (name, warnings)
    assert synth_objects(values) == synth_objects(base), f"a setting said to be ignored while {part.off} is used"


# The parts off by default (a part on by default is off only when the values file says so).
OFF_BY_DEFAULT = [p for p in PARTS if not p.is_on(parse_values({}).config)]


@pytest.mark.parametrize("part", OFF_BY_DEFAULT, ids=lambda p: p.off)
def test_the_same_setting_is_refused_while_the_part_is_off_only_by_default(part: Part) -> None:
    values, written = _with_settings(part)
    switch = part.switch.split(".")
    node = values
    for key in switch[:-1]:
        node = node[key]
    del node[switch[-1]]
    with pytest.raises(ConfigError) as refused:
        parse_values(values, "values.yaml")
    lines = str(refused.value).splitlines()
    for name in written:
        named = [line for line in lines if line.startswith((f"values.yaml: {name}: ", f"values.yaml: {name}."))]
        assert named and all(f": is set, but {part.off} ({part.switch} is not set" in line for line in named), name


# The issue's list of settings that were silently ignored (issue 22, 3), as a user writes them.
WARNED = [
    (
        "replicas with autoscaling",
        "sentry:\n  web:\n    replicas: 3\n    autoscaling: {enabled: true}\n",
        "sentry.web.replicas: ignored: the autoscaler sets the number of web pods",
    ),
    (
        "in-cluster storage with an external PostgreSQL",
        "postgres:\n  external: {host: 10.0.8.5, sslmode: require}\n  storage: {size: 50Gi}\n",
        "postgres.storage.size: ignored: PostgreSQL is external",
    ),
    (
        "in-cluster resources with an external Redis",
        "redis:\n  external: {host: 10.0.9.15}\n  resources: {limits: {memory: 1Gi}}\n",
        "redis.resources.limits.memory: ignored: Redis is external",
    ),
    (
        "tls_secret with the Ingress switched off",
        "sentry:\n  web:\n    ingress: {enabled: false, tls_secret: sentry-tls}\n",
        "sentry.web.ingress.tls_secret: ignored: the Ingress is off (sentry.web.ingress.enabled: false)",
    ),
    (
        "node_port with ClusterIP",
        "sentry:\n  web:\n    service_type: ClusterIP\n    node_port: 30080\n",
        'sentry.web.node_port: ignored: a ClusterIP Service has no node port (sentry.web.service_type: "ClusterIP")',
    ),
    (
        "backup.filestore with files in S3",
        "sentry:\n  filestore: {backend: s3, s3: {bucket: sentry-files, access_key_id: AKIAFILES}}\n"
        "postgres:\n  backup: {filestore: true}\n",
        "postgres.backup.filestore: ignored: the filestore is a bucket",
    ),
    (
        "GitHub login with no egress",
        "sentry:\n  github: {login_enabled: true, client_id: Iv1.abc}\nnetwork:\n  sentry_egress_cidrs: []\n",
        "sentry.github.login_enabled: GitHub is reached over HTTPS, but network.sentry_egress_cidrs is [] (no egress)",
    ),
    (
        "GitLab login without port 443",
        "sentry:\n  gitlab: {login_enabled: true, application_id: abc}\nnetwork:\n  sentry_egress_ports: [80]\n",
        "sentry.gitlab.login_enabled: GitLab (gitlab.com) is reached over HTTPS, but network.sentry_egress_ports [80]",
    ),
    (
        "https url_prefix behind a plain-HTTP Ingress",
        "sentry:\n  url_prefix: https://sentry.example.com\n"
        "  web:\n    ingress: {enabled: true, host: sentry.example.com}\n",
        "sentry.url_prefix: https://sentry.example.com is https://, but nothing in this stack serves TLS",
    ),
    (
        "https url_prefix with no TLS",
        "sentry:\n  url_prefix: https://sentry.example.com\n",
        "sentry.url_prefix: https://sentry.example.com is https://, but nothing in this stack serves TLS",
    ),
]


@pytest.mark.parametrize(("case", "values", "expected"), WARNED, ids=[c[0] for c in WARNED])
def test_what_the_issue_found_ignored_is_warned_about_by_name(case: str, values: str, expected: str) -> None:
    warnings = parse_values(yaml.safe_load(values), "values.yaml").warnings
    assert any(w.startswith(f"values.yaml: {expected}") for w in warnings), warnings


def test_no_warning_where_the_login_can_reach_its_provider_or_tls_is_there() -> None:
    fine = {
        "sentry": {
            "github": {"login_enabled": True, "client_id": "Iv1.abc"},
            "url_prefix": "https://sentry.example.com",
            "web": {"ingress": {"enabled": True, "host": "sentry.example.com", "tls_secret": "sentry-tls"}},
        },
        "network": {"sentry_egress_cidrs": ["140.82.112.0/20"]},
    }
    assert parse_values(fine).warnings == []
    assert parse_values({**fine, "network": {"policies": False}}).warnings == []


def test_the_synth_prints_each_warning_with_the_file_and_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = synth(tmp_path, "sentry:\n  web:\n    service_type: ClusterIP\n    node_port: 30080\n")
    assert code == 0
    err = capsys.readouterr().err
    assert f"warning: {tmp_path / 'values.yaml'}: sentry.web.node_port: ignored: " in err


@pytest.mark.parametrize("values_file", sorted((PROJECT_DIR / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_values_files_set_nothing_that_is_ignored(values_file: Path) -> None:
    assert load_values(values_file).warnings == []
