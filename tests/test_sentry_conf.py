"""sentry.conf.py: the settings it builds from the environment, and that it stays portable.

The file runs inside the sentry:9.1.2 image (Python 2.7, real `sentry.conf.server`). Here it
runs under Python 3 against a stub `sentry.conf.server` that provides only the names the
file takes from it: SENTRY_OPTIONS, SENTRY_FEATURES and `env` (Sentry's environment
reader). It is executed the way Sentry loads it: its source run in a fresh namespace.
When a Python 2.7 interpreter is found, the file is also compiled and run under it.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from app.capacity import pod_specs
from tests.conftest import FULL_SECRETS, Dist, manifest_env
from tests.kubelet import injected_env

FILES = Path(__file__).resolve().parent.parent / "constructs" / "sentry_files"
CONF = FILES / "sentry.conf.py"
CONFIG_YML = FILES / "config.yml"

# Every variable the file reads (the environment contract with the manifests).
CONTRACT = (
    "SENTRY_SECRET_KEY",
    "SENTRY_POSTGRES_HOST",
    "SENTRY_POSTGRES_PORT",
    "SENTRY_DB_NAME",
    "SENTRY_DB_USER",
    "SENTRY_DB_PASSWORD",
    "SENTRY_REDIS_HOST",
    "SENTRY_REDIS_PORT",
    "SENTRY_REDIS_PASSWORD",
    "SENTRY_REDIS_DB",
    "SENTRY_FILESTORE_DIR",
    "SENTRY_S3_BUCKET",
    "SENTRY_S3_REGION",
    "SENTRY_S3_ENDPOINT_URL",
    "SENTRY_S3_ADDRESSING_STYLE",
    "SENTRY_S3_ACCESS_KEY_ID",
    "SENTRY_S3_SECRET_ACCESS_KEY",
    "SENTRY_GCS_BUCKET",
    "SENTRY_GCS_PROJECT_ID",
    "SENTRY_STATSD_HOST",
    "SENTRY_STATSD_PORT",
    "SENTRY_URL_PREFIX",
    "SENTRY_SINGLE_ORGANIZATION",
    "SENTRY_USE_SSL",
    "SENTRY_TRUSTED_PROXY",
    "SENTRY_ALLOW_REGISTRATION",
    "SENTRY_BEACON",
    "SENTRY_WEB_HOST",
    "SENTRY_WEB_PORT",
    "SENTRY_WEB_WORKERS",
    "SENTRY_EMAIL_HOST",
    "SENTRY_EMAIL_PORT",
    "SENTRY_EMAIL_USER",
    "SENTRY_EMAIL_PASSWORD",
    "SENTRY_EMAIL_USE_TLS",
    "SENTRY_SERVER_EMAIL",
    "GITHUB_APP_ID",
    "GITHUB_API_SECRET",
    "GITHUB_REQUIRE_VERIFIED_EMAIL",
    "GITHUB_BASE_DOMAIN",
    "GITHUB_API_DOMAIN",
    "GITHUB_APP_INTEGRATION_ID",
    "GITHUB_APP_NAME",
    "GITHUB_APP_CLIENT_ID",
    "GITHUB_APP_CLIENT_SECRET",
    "GITHUB_APP_WEBHOOK_SECRET",
    "GITHUB_APP_PRIVATE_KEY",
    "GITLAB_APP_ID",
    "GITLAB_APP_SECRET",
    "GITLAB_BASE_DOMAIN",
)

REQUIRED = {
    "SENTRY_SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
    "SENTRY_POSTGRES_HOST": "sentry-postgres",
    "SENTRY_REDIS_HOST": "sentry-redis",
}

# Characters that mean something in a URL, plus a space and a non-ASCII letter.
AWKWARD_PASSWORD = "p@ss:w/rd#1%?&= +\u00e9"

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEtest\nline2\n-----END RSA PRIVATE KEY-----\n"

# The uppercase names the file may define: Sentry copies every uppercase name into settings.
SETTINGS_THE_FILE_MAY_DEFINE = {
    "DATABASES",
    "SENTRY_USE_BIG_INTS",
    "SENTRY_SINGLE_ORGANIZATION",
    "SENTRY_BEACON",
    "BROKER_URL",
    "SENTRY_CACHE",
    "SENTRY_BUFFER",
    "SENTRY_QUOTAS",
    "SENTRY_TSDB",
    "SENTRY_DIGESTS",
    "SENTRY_RATELIMITER",
    "SENTRY_WEB_HOST",
    "SENTRY_WEB_PORT",
    "SENTRY_WEB_OPTIONS",
    "SENTRY_USE_X_FORWARDED_FOR",
    "USE_X_FORWARDED_HOST",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SOCIAL_AUTH_REDIRECT_IS_HTTPS",
    "GITHUB_APP_ID",
    "GITHUB_API_SECRET",
    "GITHUB_REQUIRE_VERIFIED_EMAIL",
    "GITHUB_BASE_DOMAIN",
    "GITHUB_API_DOMAIN",
    "GITLAB_APP_ID",
    "GITLAB_APP_SECRET",
    "GITLAB_BASE_DOMAIN",
    "GITLAB_HTTP_SCHEME",
    "GITLAB_AUTH_SCOPE",
}
STUB_NAMES = {"SENTRY_OPTIONS", "SENTRY_FEATURES"}


def _stub_server() -> types.ModuleType:
    """A stand-in for sentry.conf.server with the names sentry.conf.py takes from it."""
    server = types.ModuleType("sentry.conf.server")
    server.SENTRY_OPTIONS = {}
    server.SENTRY_FEATURES = {}

    def env(key: str, default: str = "", type: object = None) -> str:  # Sentry's signature
        return os.environ.get(key, default)

    server.env = env
    return server


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch):
    """Run sentry.conf.py with exactly the given environment; return its namespace."""

    def run(**environment: str) -> dict:
        for name in (*CONTRACT, "SENTRY_RUNNING_UWSGI"):
            monkeypatch.delenv(name, raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setitem(sys.modules, "sentry", types.ModuleType("sentry"))
        monkeypatch.setitem(sys.modules, "sentry.conf", types.ModuleType("sentry.conf"))
        monkeypatch.setitem(sys.modules, "sentry.conf.server", _stub_server())
        namespace: dict = {"__file__": str(CONF), "__name__": "temp_config"}
        exec(compile(CONF.read_text(encoding="utf-8"), str(CONF), "exec"), namespace)
        return namespace

    return run


def _settings(namespace: dict) -> set[str]:
    return {name for name in namespace if name.isupper()} - STUB_NAMES


# --- the file itself --------------------------------------------------------------------


def test_compiles_and_has_no_python3_only_syntax() -> None:
    source = CONF.read_text(encoding="utf-8")
    compile(source, str(CONF), "exec")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        assert not isinstance(node, ast.JoinedStr), f"f-string at line {node.lineno}"
        assert not isinstance(node, ast.AnnAssign), f"annotation at line {node.lineno}"
        assert not isinstance(node, ast.NamedExpr), f"walrus at line {node.lineno}"
        if isinstance(node, ast.FunctionDef):
            assert node.returns is None, f"return annotation on {node.name}"
            args = node.args
            assert not args.kwonlyargs and not args.posonlyargs, f"py3-only parameters on {node.name}"
            for arg in [*args.args, args.vararg, args.kwarg]:
                assert arg is None or arg.annotation is None, f"annotation on {node.name}"
        if isinstance(node, ast.Raise):
            assert node.cause is None, f"raise ... from at line {node.lineno}"
        assert not isinstance(node, ast.Nonlocal | ast.YieldFrom | ast.AsyncFunctionDef | ast.Await)
        if isinstance(node, ast.Call):
            assert not (isinstance(node.func, ast.Name) and node.func.id == "print"), "print"


def test_is_ascii_because_python2_needs_a_coding_line_otherwise() -> None:
    CONF.read_bytes().decode("ascii")


def test_starts_with_the_sentry_defaults() -> None:
    tree = ast.parse(CONF.read_text(encoding="utf-8"))
    first = tree.body[0]
    assert isinstance(first, ast.ImportFrom)
    assert first.module == "sentry.conf.server"
    assert [alias.name for alias in first.names] == ["*"]


def test_has_no_literal_secret() -> None:
    source = CONF.read_text(encoding="utf-8")
    assert "BEGIN RSA" not in source and "PRIVATE KEY-----" not in source
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            # A token-like literal: long, no spaces or dots, letters and digits mixed; not the
            # name of an environment variable (SENTRY_S3_...).
            tokenish = len(text) >= 16 and " " not in text and "." not in text and "/" not in text
            tokenish = tokenish and not re.fullmatch(r"[A-Z][A-Z0-9_]*", text)
            assert not (tokenish and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)), text
    # A value assigned to a secret-looking setting or option is never a non-empty literal.
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                name = ""
                if isinstance(target, ast.Name):
                    name = target.id
                elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                    name = str(target.slice.value)
                if any(word in name.lower() for word in ("secret", "password", "private", "token")):
                    assert node.value.value in ("", None), f"literal for {name}"


def test_without_optional_variables_no_secret_is_invented(load) -> None:
    ns = load(**REQUIRED)
    options = ns["SENTRY_OPTIONS"]
    assert ns["DATABASES"]["default"]["PASSWORD"] == ""
    assert "password" not in options["redis.clusters"]["default"]["hosts"][0]
    assert ns["BROKER_URL"] == "redis://sentry-redis:6379/0"
    assert options["system.secret-key"] == REQUIRED["SENTRY_SECRET_KEY"]
    assert not [key for key in options if key.startswith(("github-app.", "mail.password"))]
    assert not [name for name in ns if name.startswith(("GITHUB_", "GITLAB_"))]


def test_defines_only_intended_settings(load) -> None:
    full = {
        **REQUIRED,
        "SENTRY_USE_SSL": "true",
        "GITHUB_APP_ID": "Iv1.client",
        "GITHUB_API_SECRET": "gh-secret",
        "GITHUB_BASE_DOMAIN": "git.example.com",
        "GITHUB_API_DOMAIN": "api.git.example.com",
        "GITLAB_APP_ID": "gl-app",
        "GITLAB_APP_SECRET": "gl-secret",
        "GITLAB_BASE_DOMAIN": "http://gitlab.internal",
    }
    ns = load(**full)
    # Helpers and intermediate values are lowercase, so Sentry does not take them for settings.
    assert _settings(ns) == SETTINGS_THE_FILE_MAY_DEFINE


# --- required variables -----------------------------------------------------------------


def test_missing_secret_key_fails_clearly(load) -> None:
    with pytest.raises(RuntimeError, match=r"SENTRY_SECRET_KEY is not set"):
        load(SENTRY_POSTGRES_HOST="pg", SENTRY_REDIS_HOST="redis")
    with pytest.raises(RuntimeError, match=r"SENTRY_SECRET_KEY is not set"):
        load(SENTRY_SECRET_KEY="   ", SENTRY_POSTGRES_HOST="pg", SENTRY_REDIS_HOST="redis")


@pytest.mark.parametrize("missing", ["SENTRY_POSTGRES_HOST", "SENTRY_REDIS_HOST"])
def test_missing_server_fails_clearly(load, missing: str) -> None:
    environment = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(RuntimeError, match=missing + " is not set"):
        load(**environment)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SENTRY_POSTGRES_PORT", "54x2", "SENTRY_POSTGRES_PORT must be a whole number, not '54x2'"),
        ("SENTRY_REDIS_DB", "-1", "SENTRY_REDIS_DB must be a whole number"),
        ("SENTRY_WEB_WORKERS", "two", "SENTRY_WEB_WORKERS must be a whole number"),
        ("GITHUB_APP_INTEGRATION_ID", "my-app", "GITHUB_APP_INTEGRATION_ID must be a whole number"),
        ("SENTRY_USE_SSL", "maybe", "SENTRY_USE_SSL must be true or false, not 'maybe'"),
    ],
)
def test_unparsable_values_fail_naming_the_variable(load, name: str, value: str, expected: str) -> None:
    with pytest.raises(RuntimeError) as raised:
        load(**REQUIRED, **{name: value})
    assert expected in str(raised.value)


# --- database, redis, filestore ---------------------------------------------------------


def test_database_from_environment(load) -> None:
    ns = load(
        **REQUIRED,
        SENTRY_POSTGRES_PORT="5433",
        SENTRY_DB_NAME="sentrydb",
        SENTRY_DB_USER="sentryuser",
        SENTRY_DB_PASSWORD=AWKWARD_PASSWORD,
    )
    default = ns["DATABASES"]["default"]
    assert default["ENGINE"] == "sentry.db.postgres"
    assert default["HOST"] == "sentry-postgres"
    assert default["PORT"] == "5433"
    assert default["NAME"] == "sentrydb"
    assert default["USER"] == "sentryuser"
    # Passed through untouched: no stripping or quoting of a password.
    assert default["PASSWORD"] == AWKWARD_PASSWORD
    assert ns["SENTRY_USE_BIG_INTS"] is True


def test_database_defaults(load) -> None:
    default = load(**REQUIRED)["DATABASES"]["default"]
    assert (default["NAME"], default["USER"], default["PORT"]) == ("sentry", "sentry", "5432")


def test_broker_url_carries_the_quoted_redis_password(load) -> None:
    ns = load(
        **REQUIRED,
        SENTRY_REDIS_PORT="6380",
        SENTRY_REDIS_DB="3",
        SENTRY_REDIS_PASSWORD=AWKWARD_PASSWORD,
    )
    url = ns["BROKER_URL"]
    assert AWKWARD_PASSWORD not in url
    assert "%40" in url and "%3A" in url and "%2F" in url and "%23" in url
    parts = urlsplit(url)
    # kombu 3.0 (Celery 3.1) splits the URL like this and unquotes the password.
    assert parts.scheme == "redis"
    assert parts.hostname == "sentry-redis"
    assert parts.port == 6380
    assert parts.path == "/3"
    assert unquote(parts.password) == AWKWARD_PASSWORD


def test_redis_cluster_from_environment(load) -> None:
    ns = load(**REQUIRED, SENTRY_REDIS_PORT="6380", SENTRY_REDIS_DB="2", SENTRY_REDIS_PASSWORD="r3dis pw")
    options = ns["SENTRY_OPTIONS"]
    assert options["redis.clusters"] == {
        "default": {"hosts": {0: {"host": "sentry-redis", "port": 6380, "db": 2, "password": "r3dis pw"}}}
    }
    assert ns["SENTRY_CACHE"] == "sentry.cache.redis.RedisCache"
    assert ns["SENTRY_BUFFER"] == "sentry.buffer.redis.RedisBuffer"
    assert ns["SENTRY_QUOTAS"] == "sentry.quotas.redis.RedisQuota"
    assert ns["SENTRY_TSDB"] == "sentry.tsdb.redis.RedisTSDB"
    # Not the Redis digests backend: its Lua script writes a global, which Redis >= 6.2.7 refuses.
    assert ns["SENTRY_DIGESTS"] == "sentry.digests.backends.dummy.DummyBackend"
    assert ns["SENTRY_RATELIMITER"] == "sentry.ratelimits.redis.RedisRateLimiter"


def test_filestore(load) -> None:
    options = load(**REQUIRED, SENTRY_FILESTORE_DIR="/data/files")["SENTRY_OPTIONS"]
    assert options["filestore.backend"] == "filesystem"
    assert options["filestore.options"] == {"location": "/data/files"}
    default = load(**REQUIRED)["SENTRY_OPTIONS"]["filestore.options"]
    assert default == {"location": "/var/lib/sentry/files"}


# --- general, web, TLS ------------------------------------------------------------------


def test_url_prefix_only_when_given(load) -> None:
    assert "system.url-prefix" not in load(**REQUIRED)["SENTRY_OPTIONS"]
    assert "system.url-prefix" not in load(**REQUIRED, SENTRY_URL_PREFIX="")["SENTRY_OPTIONS"]
    options = load(**REQUIRED, SENTRY_URL_PREFIX="https://sentry.example.com/")["SENTRY_OPTIONS"]
    assert options["system.url-prefix"] == "https://sentry.example.com"


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("true", True), ("false", False), ("False", False)])
def test_single_organization(load, value: str | None, expected: bool) -> None:
    extra = {} if value is None else {"SENTRY_SINGLE_ORGANIZATION": value}
    assert load(**REQUIRED, **extra)["SENTRY_SINGLE_ORGANIZATION"] is expected


def test_web_server_defaults_and_workers(load) -> None:
    ns = load(**REQUIRED)
    assert (ns["SENTRY_WEB_HOST"], ns["SENTRY_WEB_PORT"]) == ("0.0.0.0", 9000)
    options = ns["SENTRY_WEB_OPTIONS"]
    # The workers speak HTTP on the port: no router process, which a graceful shutdown
    # would SIGKILL at once (the real Sentry tier's stop-sequence test).
    assert options["http-socket"] == "0.0.0.0:9000"
    assert "http" not in options and "uwsgi-socket" not in options
    assert options["workers"] == 2
    ns = load(**REQUIRED, SENTRY_WEB_WORKERS="5", SENTRY_WEB_PORT="8000", SENTRY_WEB_HOST="127.0.0.1")
    assert ns["SENTRY_WEB_OPTIONS"]["workers"] == 5
    assert ns["SENTRY_WEB_OPTIONS"]["http-socket"] == "127.0.0.1:8000"
    # Every value is of a type Sentry can turn into a UWSGI_* variable.
    for value in ns["SENTRY_WEB_OPTIONS"].values():
        assert value is None or isinstance(value, bool | int | str)


def test_sigterm_is_a_graceful_shutdown_bounded_by_the_grace_period(load) -> None:
    from constructs.sentry_web import DRAIN_SECONDS, PRESTOP_DELAY_SECONDS, TERMINATION_GRACE_SECONDS

    options = load(**REQUIRED)["SENTRY_WEB_OPTIONS"]
    # uWSGI 2.0.18: the master-start hook replaces die-on-term's SIGTERM handler.
    assert options["hook-master-start"] == "unix_signal:15 gracefully_kill_them_all"
    assert options["worker-reload-mercy"] == DRAIN_SECONDS
    assert TERMINATION_GRACE_SECONDS > PRESTOP_DELAY_SECONDS + DRAIN_SECONDS


def test_proxy_headers(load) -> None:
    ns = load(**REQUIRED)
    # Reached directly (a NodePort), a client could set X-Forwarded-Host/-For itself.
    assert ns["USE_X_FORWARDED_HOST"] is False
    assert ns["SENTRY_USE_X_FORWARDED_FOR"] is False
    behind_ingress = load(**REQUIRED, SENTRY_TRUSTED_PROXY="true")
    assert behind_ingress["USE_X_FORWARDED_HOST"] is True
    assert behind_ingress["SENTRY_USE_X_FORWARDED_FOR"] is True
    # Without TLS in front, a client must not be able to claim HTTPS with a header.
    assert "SECURE_PROXY_SSL_HEADER" not in ns
    assert "SESSION_COOKIE_SECURE" not in ns


def test_ssl_behind_the_ingress(load) -> None:
    ns = load(**REQUIRED, SENTRY_USE_SSL="true")
    assert ns["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert ns["SESSION_COOKIE_SECURE"] is True
    assert ns["CSRF_COOKIE_SECURE"] is True
    assert ns["SOCIAL_AUTH_REDIRECT_IS_HTTPS"] is True
    assert "SECURE_PROXY_SSL_HEADER" not in load(**REQUIRED, SENTRY_USE_SSL="false")


# --- mail -------------------------------------------------------------------------------


def test_mail_dummy_without_host(load) -> None:
    options = load(**REQUIRED, SENTRY_EMAIL_HOST="")["SENTRY_OPTIONS"]
    assert options["mail.backend"] == "dummy"
    assert not {"mail.host", "mail.password", "mail.username"} & set(options)


def test_mail_smtp_with_host(load) -> None:
    options = load(
        **REQUIRED,
        SENTRY_EMAIL_HOST="smtp.example.com",
        SENTRY_EMAIL_PORT="587",
        SENTRY_EMAIL_USER="mailer",
        SENTRY_EMAIL_PASSWORD=AWKWARD_PASSWORD,
        SENTRY_EMAIL_USE_TLS="true",
        SENTRY_SERVER_EMAIL="sentry@example.com",
    )["SENTRY_OPTIONS"]
    assert options["mail.backend"] == "smtp"
    assert options["mail.host"] == "smtp.example.com"
    # Sentry validates option types: the port is an integer, use-tls a boolean.
    assert options["mail.port"] == 587
    assert options["mail.use-tls"] is True
    assert options["mail.username"] == "mailer"
    assert options["mail.password"] == AWKWARD_PASSWORD
    assert options["mail.from"] == "sentry@example.com"


def test_mail_smtp_defaults(load) -> None:
    options = load(**REQUIRED, SENTRY_EMAIL_HOST="smtp.example.com")["SENTRY_OPTIONS"]
    assert (options["mail.port"], options["mail.use-tls"], options["mail.password"]) == (25, False, "")
    assert "mail.from" not in options


# --- GitHub login (plugin) and GitHub App (integration) ---------------------------------


def test_github_login_only_when_set(load) -> None:
    ns = load(**REQUIRED)
    assert not {"GITHUB_APP_ID", "GITHUB_API_SECRET", "GITHUB_REQUIRE_VERIFIED_EMAIL"} & set(ns)
    ns = load(**REQUIRED, GITHUB_APP_ID="Iv1.0123abcd", GITHUB_API_SECRET="gh-client-secret")
    assert ns["GITHUB_APP_ID"] == "Iv1.0123abcd"
    assert ns["GITHUB_API_SECRET"] == "gh-client-secret"
    assert ns["GITHUB_REQUIRE_VERIFIED_EMAIL"] is True
    assert "GITHUB_BASE_DOMAIN" not in ns and "GITHUB_API_DOMAIN" not in ns


def test_github_login_options(load) -> None:
    ns = load(
        **REQUIRED,
        GITHUB_APP_ID="Iv1.0123abcd",
        GITHUB_API_SECRET="gh-client-secret",
        GITHUB_REQUIRE_VERIFIED_EMAIL="false",
        GITHUB_BASE_DOMAIN="git.example.com",
        GITHUB_API_DOMAIN="api.git.example.com",
    )
    assert ns["GITHUB_REQUIRE_VERIFIED_EMAIL"] is False
    assert ns["GITHUB_BASE_DOMAIN"] == "git.example.com"
    assert ns["GITHUB_API_DOMAIN"] == "api.git.example.com"


def test_github_login_without_secret_fails_clearly(load) -> None:
    with pytest.raises(RuntimeError, match="GITHUB_API_SECRET is not set"):
        load(**REQUIRED, GITHUB_APP_ID="Iv1.0123abcd")


def test_github_app_options_only_when_set(load) -> None:
    options = load(**REQUIRED)["SENTRY_OPTIONS"]
    assert not [key for key in options if key.startswith("github-app.")]
    options = load(
        **REQUIRED,
        GITHUB_APP_INTEGRATION_ID="123456",
        GITHUB_APP_NAME="acme-sentry",
        GITHUB_APP_CLIENT_ID="Iv1.0123abcd",
        GITHUB_APP_CLIENT_SECRET="gh-client-secret",
        GITHUB_APP_WEBHOOK_SECRET="gh-webhook-secret",
        GITHUB_APP_PRIVATE_KEY=PEM,
    )["SENTRY_OPTIONS"]
    # github-app.id is registered as an integer option in Sentry 9.1.
    assert options["github-app.id"] == 123456
    assert options["github-app.name"] == "acme-sentry"
    assert options["github-app.client-id"] == "Iv1.0123abcd"
    assert options["github-app.client-secret"] == "gh-client-secret"
    assert options["github-app.webhook-secret"] == "gh-webhook-secret"
    assert options["github-app.private-key"] == PEM


def test_github_app_partial(load) -> None:
    options = load(**REQUIRED, GITHUB_APP_NAME="acme-sentry")["SENTRY_OPTIONS"]
    assert [key for key in options if key.startswith("github-app.")] == ["github-app.name"]


def test_github_private_key_with_escaped_newlines(load) -> None:
    one_line = PEM.strip().replace("\n", "\\n")
    options = load(**REQUIRED, GITHUB_APP_PRIVATE_KEY=one_line)["SENTRY_OPTIONS"]
    assert options["github-app.private-key"] == PEM


# --- GitLab login (plugin) --------------------------------------------------------------


def test_gitlab_login_only_when_set(load) -> None:
    ns = load(**REQUIRED)
    assert not [name for name in ns if name.startswith("GITLAB_")]
    ns = load(**REQUIRED, GITLAB_APP_ID="gl-application-id", GITLAB_APP_SECRET="gl-secret")
    assert ns["GITLAB_APP_ID"] == "gl-application-id"
    assert ns["GITLAB_APP_SECRET"] == "gl-secret"
    # The plugin has no default host; login only needs the user's profile.
    assert ns["GITLAB_BASE_DOMAIN"] == "gitlab.com"
    assert ns["GITLAB_AUTH_SCOPE"] == "read_user"
    assert "GITLAB_HTTP_SCHEME" not in ns


def test_gitlab_self_hosted(load) -> None:
    ns = load(**REQUIRED, GITLAB_APP_ID="a", GITLAB_APP_SECRET="s", GITLAB_BASE_DOMAIN="git.example.com")
    assert ns["GITLAB_BASE_DOMAIN"] == "git.example.com"
    ns = load(**REQUIRED, GITLAB_APP_ID="a", GITLAB_APP_SECRET="s", GITLAB_BASE_DOMAIN="http://gitlab.internal/")
    assert (ns["GITLAB_HTTP_SCHEME"], ns["GITLAB_BASE_DOMAIN"]) == ("http", "gitlab.internal")


def test_gitlab_login_without_secret_fails_clearly(load) -> None:
    with pytest.raises(RuntimeError, match="GITLAB_APP_SECRET is not set"):
        load(**REQUIRED, GITLAB_APP_ID="gl-application-id")


# --- config.yml -------------------------------------------------------------------------


def test_config_yml_does_not_override_what_sentry_conf_py_builds(load) -> None:
    # Sentry applies config.yml after sentry.conf.py: a key there would replace the value
    # built from the environment.
    loaded = yaml.safe_load(CONFIG_YML.read_text(encoding="utf-8"))
    assert loaded is None or isinstance(loaded, dict)
    built = set(
        load(
            **REQUIRED,
            SENTRY_URL_PREFIX="https://sentry.example.com",
            SENTRY_EMAIL_HOST="smtp.example.com",
            SENTRY_SERVER_EMAIL="sentry@example.com",
            GITHUB_APP_INTEGRATION_ID="1",
            GITHUB_APP_NAME="n",
            GITHUB_APP_CLIENT_ID="c",
            GITHUB_APP_CLIENT_SECRET="s",
            GITHUB_APP_WEBHOOK_SECRET="w",
            GITHUB_APP_PRIVATE_KEY=PEM,
        )["SENTRY_OPTIONS"]
    )
    assert not built & set(loaded or {})
    # Outside comments, no line mentions a secret or a password.
    lines = CONFIG_YML.read_text(encoding="utf-8").splitlines()
    active = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert not [line for line in active if "secret" in line or "password" in line]


# --- under Python 2.7, when one is installed ---------------------------------------------

PY2_DRIVER = r"""
import imp, json, os, sys
server = imp.new_module("sentry.conf.server")
server.SENTRY_OPTIONS = {}
server.SENTRY_FEATURES = {}
server.env = lambda key, default="", type=None: os.environ.get(key, default)
sys.modules["sentry"] = imp.new_module("sentry")
sys.modules["sentry.conf"] = imp.new_module("sentry.conf")
sys.modules["sentry.conf.server"] = server
namespace = {"__file__": sys.argv[1], "__name__": "temp_config"}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), namespace)
options = namespace["SENTRY_OPTIONS"]
print(json.dumps({
    "broker": namespace["BROKER_URL"],
    "port": namespace["DATABASES"]["default"]["PORT"],
    "mail_port": options["mail.port"],
    "app_id": options["github-app.id"],
    "workers": namespace["SENTRY_WEB_OPTIONS"]["workers"],
}))
"""


def _python2() -> str | None:
    candidates = [shutil.which("python2.7"), shutil.which("python2")]
    for root in {os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")}:
        if root:
            candidates += sorted(glob.glob(os.path.join(root, "versions", "2.7*", "bin", "python2.7")))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


def test_runs_under_python_2_7() -> None:
    python2 = _python2()
    if python2 is None:
        pytest.skip("no Python 2.7 interpreter on this machine")
    environment = {
        "PATH": os.environ.get("PATH", ""),
        **REQUIRED,
        "SENTRY_REDIS_PASSWORD": "p@ss:w/rd#1%? +",
        "SENTRY_EMAIL_HOST": "smtp.example.com",
        "SENTRY_EMAIL_PORT": "587",
        "GITHUB_APP_INTEGRATION_ID": "42",
    }
    done = subprocess.run(
        [python2, "-c", PY2_DRIVER, str(CONF)], capture_output=True, text=True, env=environment, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert unquote(urlsplit(result["broker"]).password) == "p@ss:w/rd#1%? +"
    assert result == {
        "broker": result["broker"],
        "port": "5432",
        "mail_port": 587,
        "app_id": 42,
        "workers": 2,
    }


def test_sign_up_is_closed_unless_allowed(load) -> None:
    # Sentry 9.1.2 shows the form when the feature and the option are both on
    # (sentry/utils/auth.py): the switch sets both, so it really opens sign-up.
    closed = load(**REQUIRED)
    assert closed["SENTRY_FEATURES"]["auth:register"] is False
    assert closed["SENTRY_OPTIONS"]["auth.allow-registration"] is False
    opened = load(**REQUIRED, SENTRY_ALLOW_REGISTRATION="true")
    assert opened["SENTRY_FEATURES"]["auth:register"] is True
    assert opened["SENTRY_OPTIONS"]["auth.allow-registration"] is True


def test_no_usage_beacon_unless_asked(load) -> None:
    assert load(**REQUIRED)["SENTRY_BEACON"] is False
    assert load(**REQUIRED, SENTRY_BEACON="true")["SENTRY_BEACON"] is True


# --- the environment a pod really gets ---------------------------------------------------


def _sentry_containers(dist: Dist) -> list[tuple[dict, dict]]:
    """(pod spec, container) of every container that runs Sentry with this file."""
    found = []
    for obj in dist.objects:
        for spec in pod_specs(obj):
            for container in spec.get("initContainers", []) + spec["containers"]:
                env = {e["name"] for e in container.get("env", [])}
                if "SENTRY_CONF" in env:
                    found.append((spec, container))
    return found


def test_service_links_cannot_change_a_setting(load, any_dist: Dist) -> None:
    # The kubelet's Docker-link variables for a Service `sentry-web` include
    # SENTRY_WEB_PORT=tcp://10.96.0.13:9000: read as a setting, it stopped every `sentry`
    # command. The pods turn the links off; should one ever have them on, every name the
    # file reads that a link could set must be set by the manifest itself (which wins).
    services = any_dist.of_kind("Service")
    # Services named after every prefix this file reads, in case a user's namespace has them.
    services += [
        {"metadata": {"name": name.lower().replace("_", "-")}, "spec": {"ports": [{"port": 1, "name": "p"}]}}
        for name in {re.sub(r"_(PORT|SERVICE_HOST|SERVICE_PORT)$", "", n) for n in CONTRACT}
    ]
    checked = 0
    for spec, container in _sentry_containers(any_dist):
        manifest = manifest_env(container, {**FULL_SECRETS})
        expected = _comparable(load(**manifest))
        linked = {**injected_env({**spec, "enableServiceLinks": True}, services), **manifest}
        assert _comparable(load(**linked)) == expected, container["name"]
        checked += 1
    assert checked >= 5


def test_every_pod_turns_service_links_off(any_dist: Dist) -> None:
    for obj in any_dist.objects:
        for spec in pod_specs(obj):
            assert spec.get("enableServiceLinks") is False, obj["metadata"]["name"]


def _comparable(namespace: dict) -> str:
    return json.dumps({k: namespace[k] for k in _settings(namespace)}, sort_keys=True, default=repr)
