"""Where secret values come from, and how they stay stable across synths.

Order of precedence for each key:
1. an environment variable `SENTRY_K8S_<KEY>` (e.g. SENTRY_K8S_POSTGRES_PASSWORD);
2. the local secrets file (default `.secrets/<release>.yaml`, git-ignored, mode 0600);
3. for keys that can be invented (passwords, the Sentry secret key): a strong random
   value, generated once and written to the secrets file.

Step 3 is why re-synthesizing never rotates a password: PostgreSQL and Redis keep
the password they were initialised with, so a new random value on every synth
would lock Sentry out of its own database.

With `secrets.existing_secret` none of this runs: the workloads reference the
user's Secret and no secret value is read or written at all.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from constructs.config import StackConfig

ENV_PREFIX = "SENTRY_K8S_"
SECRETS_FILE_ENV = "SENTRY_K8S_SECRETS_FILE"


@dataclass(frozen=True)
class SecretKey:
    key: str
    description: str
    generated_length: int = 0  # 0: cannot be invented, the user must supply it

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper().replace("-", "_")


POSTGRES_PASSWORD = SecretKey("postgres-password", "PostgreSQL password of the Sentry role", 32)
REDIS_PASSWORD = SecretKey("redis-password", "Redis password (requirepass)", 32)
SENTRY_SECRET_KEY = SecretKey("sentry-secret-key", "Sentry's SECRET_KEY (sessions, signing)", 50)
ADMIN_PASSWORD = SecretKey("admin-password", "Password of the Sentry superuser", 20)
GITHUB_CLIENT_SECRET = SecretKey("github-client-secret", "GitHub App OAuth client secret")
GITHUB_PRIVATE_KEY = SecretKey("github-private-key", "GitHub App private key (PEM)")
GITHUB_WEBHOOK_SECRET = SecretKey("github-webhook-secret", "GitHub App webhook secret")
GITLAB_APPLICATION_SECRET = SecretKey("gitlab-application-secret", "GitLab OAuth application secret")
SMTP_PASSWORD = SecretKey("smtp-password", "SMTP password")
S3_SECRET_ACCESS_KEY = SecretKey("s3-secret-access-key", "Secret key for the offsite backup bucket")
FILESTORE_S3_SECRET_ACCESS_KEY = SecretKey("filestore-s3-secret-access-key", "Secret key for the s3 filestore")
GCS_CREDENTIALS = SecretKey("gcs-credentials", "Google service account key (JSON) for the gcs filestore")

ALL_KEYS: tuple[SecretKey, ...] = (
    POSTGRES_PASSWORD,
    REDIS_PASSWORD,
    SENTRY_SECRET_KEY,
    ADMIN_PASSWORD,
    GITHUB_CLIENT_SECRET,
    GITHUB_PRIVATE_KEY,
    GITHUB_WEBHOOK_SECRET,
    GITLAB_APPLICATION_SECRET,
    SMTP_PASSWORD,
    S3_SECRET_ACCESS_KEY,
    FILESTORE_S3_SECRET_ACCESS_KEY,
    GCS_CREDENTIALS,
)


class SecretsError(ValueError):
    """A secret the configuration needs is missing or the secrets file is unreadable."""


def required_keys(config: StackConfig) -> tuple[SecretKey, ...]:
    """The keys this configuration's workloads reference."""
    keys = [POSTGRES_PASSWORD, REDIS_PASSWORD, SENTRY_SECRET_KEY, ADMIN_PASSWORD]
    sentry = config.sentry
    if sentry.github.login_enabled or sentry.github.app_id:
        keys += [GITHUB_CLIENT_SECRET]
    if sentry.github.app_id:
        keys += [GITHUB_PRIVATE_KEY, GITHUB_WEBHOOK_SECRET]
    if sentry.gitlab.login_enabled:
        keys.append(GITLAB_APPLICATION_SECRET)
    if sentry.smtp.host and sentry.smtp.user:
        keys.append(SMTP_PASSWORD)
    if config.postgres.backup.enabled and config.postgres.backup.offsite.enabled:
        keys.append(S3_SECRET_ACCESS_KEY)
    files = sentry.filestore
    if files.backend == "s3" and files.s3.access_key_id:
        keys.append(FILESTORE_S3_SECRET_ACCESS_KEY)
    if files.backend == "gcs" and files.gcs.key_file:
        keys.append(GCS_CREDENTIALS)
    return tuple(keys)


def inventable(key: SecretKey, config: StackConfig) -> bool:
    """Whether a missing value may be generated. An external server already has its
    password: a generated one would only lock Sentry out of it."""
    external = {POSTGRES_PASSWORD: config.postgres.external.host, REDIS_PASSWORD: config.redis.external.host}
    return bool(key.generated_length) and not external.get(key)


def default_secrets_file(config: StackConfig, project_dir: Path) -> Path:
    return project_dir / ".secrets" / f"{config.namespace}-{config.release}.yaml"


@dataclass(frozen=True)
class ResolvedSecrets:
    """Secret values for the synthesized Secret; empty when an existing Secret is used."""

    values: Mapping[str, str] = field(default_factory=dict)
    generated: tuple[str, ...] = ()
    path: Path | None = None


def _read_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SecretsError(f"secrets file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise SecretsError(f"secrets file {path} must map key names to string values")
    known = {k.key for k in ALL_KEYS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SecretsError(f"secrets file {path} has unknown keys {unknown}; allowed: {sorted(known)}")
    return data


def _write_file(path: Path, values: Mapping[str, str]) -> None:
    """Write atomically with mode 0600 so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("# Generated by the Sentry cdk8s project. Keep it: the running databases\n")
            handle.write("# were initialised with these values. Never commit this file.\n")
            yaml.safe_dump(dict(sorted(values.items())), handle, default_flow_style=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve_secrets(
    config: StackConfig,
    path: Path,
    environ: Mapping[str, str] | None = None,
) -> ResolvedSecrets:
    """Collect every secret the configuration needs, generating and persisting the missing ones."""
    if config.secrets.existing_secret:
        return ResolvedSecrets()
    env = os.environ if environ is None else environ
    stored = _read_file(path)
    values: dict[str, str] = {}
    generated: list[str] = []
    for key in required_keys(config):
        value = env.get(key.env_var) or stored.get(key.key)
        if not value:
            if not inventable(key, config):
                raise SecretsError(
                    f"secret {key.key!r} ({key.description}) is required by this configuration: "
                    f"set {key.env_var}, add it to {path}, or use secrets.existing_secret"
                )
            value = secrets.token_urlsafe(key.generated_length)[: key.generated_length]
            generated.append(key.key)
        values[key.key] = value
    if generated:
        from_env = {k.key for k in ALL_KEYS if env.get(k.env_var)}
        to_store = {**stored, **{k: v for k, v in values.items() if k not in from_env}}
        _write_file(path, to_store)
        print(
            f"generated {', '.join(generated)} into {path}; keep this file: re-synthesizing reads the same values back",
            file=sys.stderr,
        )
    return ResolvedSecrets(values=values, generated=tuple(generated), path=path)
