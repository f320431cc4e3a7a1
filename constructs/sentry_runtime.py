"""SentryRuntime: what every Sentry pod shares (config, env, volumes, waits, security).

Web, worker, cron, the migration Job and the cleanup CronJob run the same image
with different commands. This construct owns the pieces they have in common, so
each workload construct only says what makes it different:
- the ConfigMap with sentry.conf.py and config.yml, mounted at /etc/sentry, and its
  checksum, put on pod templates so a configuration change rolls the pods;
- the environment: non-secret settings as values, every secret as a secretKeyRef;
- the filestore PVC (release files, source maps, debug files);
- the init containers that wait for PostgreSQL and for this image's migrations.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

import cdk8s_plus_27 as kplus
import yaml

from constructs import Construct, images
from constructs.checks import Check, Image, PullPolicy, fail, props
from constructs.endpoints import PostgresEndpoint, RedisEndpoint
from constructs.kube import claim, metadata, plain_env, pod_metadata, secret_env, shell_command
from constructs.naming import Component
from constructs.props import (
    GcsFilestore,
    GithubConfig,
    GitlabConfig,
    PodSettings,
    Resources,
    S3Filestore,
    SmtpConfig,
    Storage,
)
from constructs.secret_keys import SecretKeys
from constructs.workload import (
    WAIT_RESOURCES,
    container_resources,
    container_security,
    finish,
    pod_security,
    pull_policy,
)

SENTRY_FILES_DIR = Path(__file__).parent / "sentry_files"
CONFIG_MOUNT = images.SENTRY.paths["config"]
FILESTORE_MOUNT = images.SENTRY.paths["filestore"]
SENTRY_PORT = 9000
# The image's `sentry` account (constructs/images.py). The image has no USER line; as root,
# its entrypoint does three things only: mkdir and chown the filestore to `sentry`, then
# `gosu sentry` (setuid/setgid). Nothing else needs root. So the pods start as 999 directly
# with `sentry ...` as the command (skipping the entrypoint, which would skip those steps for
# a non-root user anyway), fsGroup 999 makes the filestore volume writable instead of the
# chown, and no capability is left (pod_security.py drops ALL). Sentry writes only /tmp
# (emptyDir) and the filestore; /etc/sentry is a read-only ConfigMap, the root filesystem
# read-only.
SENTRY_UID = images.SENTRY.uid
CHECKSUM_ANNOTATION = "checksum/config"
# The image's own init, which its entrypoint puts in front of every command: as PID 1 it
# forwards SIGTERM to Sentry, so uWSGI and Celery shut down gracefully, and reaps zombies.
TINI = [images.SENTRY.executable("tini"), "--"]
GCS_KEY_MOUNT = "/var/run/secrets/google"
GCS_KEY_FILE = "credentials.json"


def _url_origin(value: str) -> None:
    """system.url-prefix: Sentry 9.1 is served from the root of its host, so an origin only."""
    if value and not re.match(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$", value):
        raise ValueError(
            f"{value!r} is not a public URL: use http:// or https://, a host and an optional "
            "port, with no path and no trailing slash (e.g. https://sentry.example.com)"
        )


def _python_settings(value: str) -> None:
    """Extra sentry.conf.py lines: ASCII (Python 2 rejects other bytes without a coding line)
    and valid syntax, so a typo fails the synth instead of every Sentry pod's start."""
    if not value.isascii():
        raise ValueError("must be ASCII: Python 2.7 rejects other characters in a file without a coding line")
    try:
        compile(value, "sentry.conf_py_extra", "exec")
    except SyntaxError as exc:
        raise ValueError(f"is not valid Python: line {exc.lineno}: {exc.msg}") from None


def _yaml_mapping(value: str) -> None:
    if not value.strip():
        return
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"must be a YAML mapping of option names to values, not {type(data).__name__}")


# The variables SentryRuntime.env() may set itself: an extra_env of the same name is refused.
OWN_ENV = frozenset(
    {
        "SENTRY_CONF",
        "SENTRY_WEB_HOST",
        "SENTRY_WEB_PORT",
        "SENTRY_POSTGRES_HOST",
        "SENTRY_POSTGRES_PORT",
        "SENTRY_DB_NAME",
        "SENTRY_DB_USER",
        "SENTRY_DB_PASSWORD",
        "SENTRY_REDIS_HOST",
        "SENTRY_REDIS_PORT",
        "SENTRY_REDIS_DB",
        "SENTRY_REDIS_PASSWORD",
        "SENTRY_SECRET_KEY",
        "SENTRY_FILESTORE_DIR",
        "SENTRY_S3_BUCKET",
        "SENTRY_S3_REGION",
        "SENTRY_S3_ENDPOINT_URL",
        "SENTRY_S3_ACCESS_KEY_ID",
        "SENTRY_S3_ADDRESSING_STYLE",
        "SENTRY_S3_SECRET_ACCESS_KEY",
        "SENTRY_GCS_BUCKET",
        "SENTRY_GCS_PROJECT_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SENTRY_SINGLE_ORGANIZATION",
        "SENTRY_ALLOW_REGISTRATION",
        "SENTRY_BEACON",
        "SENTRY_USE_SSL",
        "SENTRY_TRUSTED_PROXY",
        "SENTRY_SERVER_EMAIL",
        "SENTRY_URL_PREFIX",
        "SENTRY_STATSD_HOST",
        "SENTRY_STATSD_PORT",
        "SENTRY_EMAIL_HOST",
        "SENTRY_EMAIL_PORT",
        "SENTRY_EMAIL_USER",
        "SENTRY_EMAIL_USE_TLS",
        "SENTRY_EMAIL_PASSWORD",
        "GITHUB_APP_ID",
        "GITHUB_REQUIRE_VERIFIED_EMAIL",
        "GITHUB_API_SECRET",
        "GITHUB_APP_INTEGRATION_ID",
        "GITHUB_APP_NAME",
        "GITHUB_APP_CLIENT_ID",
        "GITHUB_APP_CLIENT_SECRET",
        "GITHUB_APP_PRIVATE_KEY",
        "GITHUB_APP_WEBHOOK_SECRET",
        "GITLAB_APP_ID",
        "GITLAB_BASE_DOMAIN",
        "GITLAB_APP_SECRET",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    }
)


def _extra_env(value: Mapping[str, str]) -> None:
    bad = sorted(name for name in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name))
    if bad:
        raise ValueError(f"{bad} are not environment variable names (letters, digits and '_')")
    clashes = sorted(set(value) & OWN_ENV)
    if clashes:
        raise ValueError(f"{', '.join(clashes)} are set by the stack itself; choose other names")


UrlOrigin = Annotated[str, Check(_url_origin)]
PythonSettings = Annotated[str, Check(_python_settings)]
YamlOptions = Annotated[str, Check(_yaml_mapping)]
ExtraEnv = Annotated[Mapping[str, str], Check(_extra_env)]


@props
class SentryRuntimeOptions:
    """What every Sentry pod shares, as a user chooses it."""

    image: Image = "sentry:9.1.2"
    """The Sentry image of every pod. Default: the stock sentry:9.1.2, which has neither the
    GitHub/GitLab login plugins nor the gcs filestore's library (images/sentry-auth has both)."""
    image_pull_policy: PullPolicy = "IfNotPresent"
    """Pull policy of every container. Default: IfNotPresent, so minikube can use a preloaded image."""
    url_prefix: UrlOrigin = ""
    """Sentry's public URL (system.url-prefix), an origin such as https://sentry.example.com.
    Empty, Sentry 9.1.2 does not take it from requests: until the first administrator enters it
    on Sentry's setup page (which keeps it in the database), DSNs show empty and the links
    Sentry builds (mail, chunk uploads) have no host. Default: empty."""
    single_organization: bool = True
    """One organization for everyone (Sentry's single-organization mode). Default: true."""
    allow_registration: bool = False
    """Show the Register form on the login page, so anyone who reaches it can make an account.
    Default: false (the admin invites members)."""
    beacon: bool = False
    """Send Sentry's anonymous usage beacon to sentry.io every hour. Default: false."""
    filestore: Storage | S3Filestore | GcsFilestore = Storage(size="10Gi")
    """Where Sentry keeps release files, source maps and debug files: a claim of this size
    (Storage), or a bucket (S3Filestore, GcsFilestore; then no claim is made). Default: a
    10Gi ReadWriteOnce claim."""
    smtp: SmtpConfig = SmtpConfig()
    """Outgoing mail. Default: none (no host), from sentry@localhost."""
    github: GithubConfig = GithubConfig()
    """Sign in with GitHub, and the GitHub App integration. Default: neither."""
    gitlab: GitlabConfig = GitlabConfig()
    """Sign in with GitLab. Default: off."""
    extra_env: ExtraEnv = field(default_factory=dict)
    """Plain environment variables of every Sentry container (never secrets); a name the
    construct sets itself is refused. Default: none."""
    conf_py_extra: PythonSettings = ""
    """Python appended to sentry.conf.py, after the project's settings. Default: none."""
    config_yml_extra: YamlOptions = ""
    """Options appended to config.yml, after the project's. Default: none."""

    def __post_init__(self) -> None:
        for name in ("filestore",):
            value = getattr(self, name)
            if isinstance(value, S3Filestore | GcsFilestore) and not value.bucket:
                fail(self, name, f"{type(value).__name__}.bucket is required")


@props
class SentryRuntimeProps(SentryRuntimeOptions):
    """Props of SentryRuntime: the options, and where the Sentry pods connect."""

    config_component: Component
    """Names and labels of the ConfigMap."""
    filestore_component: Component
    """Names and labels of the filestore claim."""
    postgres: PostgresEndpoint
    """The database (in the cluster or external): where, how to connect, the client image."""
    redis: RedisEndpoint
    """The broker and cache (in the cluster or external)."""
    secret: kplus.ISecret
    """The Secret every Sentry pod reads."""
    secret_keys: SecretKeys = SecretKeys()
    """The names of the keys in `secret`. Default: the stack's names (SecretKeys())."""
    use_ssl: bool = False
    """Whether Sentry is served over TLS (an Ingress with a TLS secret). Default: false."""
    service_account: str | None = None
    """ServiceAccount of every Sentry pod. Default: the namespace's default (no token either way)."""
    statsd: tuple[str, int] | None = None
    """Where Sentry sends its statsd metrics (host, UDP port). Default: nowhere."""
    trusted_proxy: bool = False
    """Whether every request reaches Sentry through a proxy that sets X-Forwarded-Host and
    X-Forwarded-For (an Ingress, with no NodePort or LoadBalancer beside it), so Sentry may
    trust those headers. Default: false (a direct client could choose them)."""


class SentryRuntime(Construct):
    """Shared configuration of the Sentry pods; see the module docstring."""

    def __init__(self, scope: Construct, id: str, props: SentryRuntimeProps) -> None:
        super().__init__(scope, id)
        self.props = props
        self.image = props.image
        self.image_pull_policy = pull_policy(props.image_pull_policy)
        files = {
            "sentry.conf.py": (SENTRY_FILES_DIR / "sentry.conf.py").read_text(encoding="utf-8"),
            "config.yml": (SENTRY_FILES_DIR / "config.yml").read_text(encoding="utf-8"),
        }
        # The user's own lines come last, so they override the project's settings.
        if props.conf_py_extra.strip():
            files["sentry.conf.py"] += f"\n# --- sentry.conf_py_extra, from the values file ---\n{props.conf_py_extra}"
        if props.config_yml_extra.strip():
            files["config.yml"] += (
                f"\n# --- sentry.config_yml_extra, from the values file ---\n{props.config_yml_extra}"
            )
        self.config_map = kplus.ConfigMap(
            self,
            "config",
            metadata=metadata(props.config_component),
            data=files,
        )
        self.checksum = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        comp = props.filestore_component
        # With an object store there is nothing to mount: no claim.
        self.filestore_claim = (
            claim(self, "filestore", comp.name, comp, props.filestore) if _on_a_claim(props.filestore) else None
        )

    @property
    def migration_version(self) -> str:
        """What the migration marker is keyed on: the image, so an upgrade waits for its own migrations."""
        return self.image

    def env(self) -> dict[str, kplus.EnvValue]:
        """The environment sentry.conf.py reads. Secrets only as secretKeyRef."""
        cfg, pg, redis = self.props, self.props.postgres, self.props.redis
        values = {
            "SENTRY_CONF": CONFIG_MOUNT,
            "SENTRY_WEB_HOST": "0.0.0.0",
            "SENTRY_WEB_PORT": str(SENTRY_PORT),
            "SENTRY_POSTGRES_HOST": pg.host,
            "SENTRY_POSTGRES_PORT": str(pg.port),
            "SENTRY_DB_NAME": pg.database,
            "SENTRY_DB_USER": pg.user,
            "SENTRY_REDIS_HOST": redis.host,
            "SENTRY_REDIS_PORT": str(redis.port),
            "SENTRY_REDIS_DB": str(redis.db),
            **self._filestore_settings(),
            "SENTRY_SINGLE_ORGANIZATION": _bool(cfg.single_organization),
            "SENTRY_ALLOW_REGISTRATION": _bool(cfg.allow_registration),
            "SENTRY_BEACON": _bool(cfg.beacon),
            "SENTRY_USE_SSL": _bool(self.props.use_ssl),
            "SENTRY_TRUSTED_PROXY": _bool(self.props.trusted_proxy),
            "SENTRY_SERVER_EMAIL": cfg.smtp.from_address,
        }
        if cfg.url_prefix:
            values["SENTRY_URL_PREFIX"] = cfg.url_prefix
        if isinstance(cfg.filestore, GcsFilestore) and cfg.filestore.key_file:
            values["GOOGLE_APPLICATION_CREDENTIALS"] = f"{GCS_KEY_MOUNT}/{GCS_KEY_FILE}"
        if self.props.statsd is not None:
            values |= {"SENTRY_STATSD_HOST": self.props.statsd[0], "SENTRY_STATSD_PORT": str(self.props.statsd[1])}
        if cfg.smtp.host:
            values |= {
                "SENTRY_EMAIL_HOST": cfg.smtp.host,
                "SENTRY_EMAIL_PORT": str(cfg.smtp.port),
                "SENTRY_EMAIL_USER": cfg.smtp.user,
                "SENTRY_EMAIL_USE_TLS": _bool(cfg.smtp.use_tls),
            }
        github = cfg.github
        if github.login_enabled:
            values |= {
                "GITHUB_APP_ID": github.client_id,
                "GITHUB_REQUIRE_VERIFIED_EMAIL": _bool(github.require_verified_email),
            }
        if github.app_id:
            values |= {
                "GITHUB_APP_INTEGRATION_ID": github.app_id,
                "GITHUB_APP_NAME": github.app_name,
                "GITHUB_APP_CLIENT_ID": github.client_id,
            }
        if cfg.gitlab.login_enabled:
            values |= {"GITLAB_APP_ID": cfg.gitlab.application_id, "GITLAB_BASE_DOMAIN": cfg.gitlab.base_domain}

        secret, keys = self.props.secret, self.props.secret_keys
        client = pg.client_env()
        env = {
            **plain_env(values),
            # libpq (under Django's psycopg2) reads the TLS settings itself.
            **{k: v for k, v in client.items() if k.startswith("PGSSL")},
            "SENTRY_SECRET_KEY": secret_env(secret, keys.sentry_secret_key),
            "SENTRY_DB_PASSWORD": client["PGPASSWORD"],
        }
        # Redis's password as its own clients get it, or none for a server that takes none
        # (then sentry.conf.py puts none in the broker URL and the cluster options).
        redis_auth = redis.client_env().get("REDISCLI_AUTH")
        if redis_auth is not None:
            env["SENTRY_REDIS_PASSWORD"] = redis_auth
        if cfg.smtp.host and cfg.smtp.user:
            env["SENTRY_EMAIL_PASSWORD"] = secret_env(secret, keys.smtp_password)
        if github.login_enabled:
            env["GITHUB_API_SECRET"] = secret_env(secret, keys.github_client_secret)
        if github.app_id:
            env["GITHUB_APP_CLIENT_SECRET"] = secret_env(secret, keys.github_client_secret)
            env["GITHUB_APP_PRIVATE_KEY"] = secret_env(secret, keys.github_private_key)
            env["GITHUB_APP_WEBHOOK_SECRET"] = secret_env(secret, keys.github_webhook_secret)
        if cfg.gitlab.login_enabled:
            env["GITLAB_APP_SECRET"] = secret_env(secret, keys.gitlab_application_secret)
        files = cfg.filestore
        if isinstance(files, S3Filestore) and files.access_key_id:
            env["SENTRY_S3_SECRET_ACCESS_KEY"] = secret_env(secret, keys.filestore_s3_secret_access_key)
        # Names the stack sets are refused in extra_env by the props (OWN_ENV); this keeps
        # that list true.
        assert set(env) <= OWN_ENV, sorted(set(env) - OWN_ENV)
        return {**env, **plain_env(dict(cfg.extra_env))}

    def _filestore_settings(self) -> dict[str, str]:
        files = self.props.filestore
        if _on_a_claim(files):
            return {"SENTRY_FILESTORE_DIR": FILESTORE_MOUNT}
        if isinstance(files, S3Filestore):
            s3 = files
            named = {
                "SENTRY_S3_BUCKET": s3.bucket,
                "SENTRY_S3_REGION": s3.region,
                "SENTRY_S3_ENDPOINT_URL": s3.endpoint_url,
                "SENTRY_S3_ACCESS_KEY_ID": s3.access_key_id,
                "SENTRY_S3_ADDRESSING_STYLE": s3.addressing_style if s3.addressing_style != "auto" else "",
            }
            return {k: v for k, v in named.items() if v}
        gcs = files
        named = {"SENTRY_GCS_BUCKET": gcs.bucket, "SENTRY_GCS_PROJECT_ID": gcs.project_id}
        return {k: v for k, v in named.items() if v}

    def pod_annotations(self) -> dict[str, str]:
        return {CHECKSUM_ANNOTATION: self.checksum}

    def pod_props(
        self,
        scope: Construct,
        component: Component,
        init_containers: list[kplus.ContainerProps],
        name: str | None = None,
    ) -> dict[str, Any]:
        """Props every Sentry workload shares: labels (selected by the caller), the config
        checksum, the non-root pod security context, no service account token, and the
        init containers (the waits for what the workload needs)."""
        return {
            "metadata": metadata(component, name),
            "pod_metadata": pod_metadata(component, self.pod_annotations()),
            "select": False,
            "automount_service_account_token": False,
            "security_context": self.security_context(),
            "init_containers": init_containers,
        }

    def finish(
        self,
        workload: kplus.Deployment | kplus.Job | kplus.CronJob,
        component: Component,
        pods: PodSettings,
        sizes: dict[str, Resources],
        spread_by_default: bool = False,
        job_name: str | None = None,
    ) -> None:
        """workload.finish for a Sentry workload, with the runtime's ServiceAccount."""
        finish(
            workload,
            component,
            pods=pods,
            service_account=self.props.service_account,
            sizes=sizes,
            spread_by_default=spread_by_default,
            job_name=job_name,
        )

    def container(
        self,
        scope: Construct,
        name: str,
        command: Sequence[str],
        resources: Resources,
        filestore: bool = True,
        env: Mapping[str, kplus.EnvValue] | None = None,
        extra_mounts: Sequence[kplus.VolumeMount] = (),
        **extra: Any,
    ) -> kplus.ContainerProps:
        """A container of the Sentry image: `command` under tini, with the shared env, mounts
        and security."""
        return kplus.ContainerProps(
            name=name,
            image=self.image,
            image_pull_policy=self.image_pull_policy,
            command=[*TINI, *command],
            env_variables=dict(env) if env is not None else self.env(),
            resources=container_resources(resources),
            security_context=self.container_security(),
            volume_mounts=[*self.volume_mounts(scope, filestore=filestore), *extra_mounts],
            **extra,
        )

    def security_context(self) -> kplus.PodSecurityContextProps:
        return pod_security(SENTRY_UID, SENTRY_UID)

    def container_security(self) -> kplus.ContainerSecurityContextProps:
        return container_security(SENTRY_UID, SENTRY_UID)

    def volume_mounts(self, scope: Construct, filestore: bool = True) -> list[kplus.VolumeMount]:
        """/etc/sentry (config, read-only), /tmp (scratch), the database's CA certificate if
        it has one, and, optionally, the filestore."""
        config_volume = kplus.Volume.from_config_map(scope, "config-volume", self.config_map, name="config")
        mounts = [
            kplus.VolumeMount(path=CONFIG_MOUNT, volume=config_volume, read_only=True),
            kplus.VolumeMount(path="/tmp", volume=kplus.Volume.from_empty_dir(scope, "tmp-volume", "tmp")),
            *self.props.postgres.client_mounts(scope),
        ]
        files = self.props.filestore
        if isinstance(files, GcsFilestore) and files.key_file:
            key = kplus.Volume.from_secret(
                scope,
                "gcs-key-volume",
                self.props.secret,
                name="gcs-key",
                items={self.props.secret_keys.gcs_credentials: kplus.PathMapping(path=GCS_KEY_FILE)},
            )
            mounts.append(kplus.VolumeMount(path=GCS_KEY_MOUNT, volume=key, read_only=True))
        if filestore and self.filestore_claim is not None:
            claim = kplus.PersistentVolumeClaim.from_claim_name(scope, "filestore-claim", self.filestore_claim.name)
            volume = kplus.Volume.from_persistent_volume_claim(scope, "filestore-volume", claim, name="filestore")
            mounts.append(kplus.VolumeMount(path=FILESTORE_MOUNT, volume=volume))
        return mounts

    def wait_for_postgres(self, scope: Construct) -> kplus.ContainerProps:
        """Init container: block until PostgreSQL accepts connections (pg_isready of the server's image)."""
        return self.postgres_client(scope, "wait-for-postgres", "wait-for-postgres")

    def wait_for_redis(self) -> kplus.ContainerProps:
        """Init container: block until Redis answers PING with the stack's password."""
        redis = self.props.redis
        return kplus.ContainerProps(
            name="wait-for-redis",
            image=redis.client_image,
            image_pull_policy=self.image_pull_policy,
            command=shell_command("wait-for-redis"),
            env_variables=redis.client_env(),
            resources=container_resources(WAIT_RESOURCES),
            security_context=container_security(SENTRY_UID, SENTRY_UID),
        )

    def postgres_client(
        self,
        scope: Construct,
        name: str,
        script: str,
        extra: dict[str, str] | None = None,
        volume_mounts: Sequence[kplus.VolumeMount] = (),
    ) -> kplus.ContainerProps:
        """A small container of the PostgreSQL image (so psql/pg_isready match the server's
        major version) running one of constructs/scripts as the database's client."""
        pg = self.props.postgres
        return kplus.ContainerProps(
            name=name,
            image=pg.client_image,
            image_pull_policy=self.image_pull_policy,
            command=shell_command(script),
            env_variables={**pg.client_env(), **plain_env(extra or {})},
            resources=container_resources(WAIT_RESOURCES),
            security_context=container_security(SENTRY_UID, SENTRY_UID),
            volume_mounts=[*pg.client_mounts(scope), *volume_mounts],
        )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _on_a_claim(filestore: Storage | S3Filestore | GcsFilestore) -> bool:
    return not isinstance(filestore, S3Filestore | GcsFilestore)
