"""The keys of the Secret the constructs read: their names (a prop, `SecretKeys`) and what
each holds (`SecretKey`, for the application that fills the Secret).

Every construct that reads a secret takes it by secretKeyRef under the name its
`secret_keys` prop gives; the application's secrets store (app/secrets_store.py) fills the
stack's own Secret under the default names, or the user's own Secret
(`secrets.existing_secret`) holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from constructs.checks import Pattern, props

ENV_PREFIX = "SENTRY_K8S_"


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

KeyName = Annotated[str, Pattern(r"[-._a-zA-Z0-9]+", "a Secret key: letters, digits, '-', '_' and '.'")]


@props
class SecretKeys:
    """Under which key of the Secret each value is. Default: the stack's own names, which the
    application's secrets store writes."""

    postgres_password: KeyName = POSTGRES_PASSWORD.key
    """PostgreSQL password of the Sentry role. Default: postgres-password."""
    redis_password: KeyName = REDIS_PASSWORD.key
    """Redis password. Default: redis-password."""
    sentry_secret_key: KeyName = SENTRY_SECRET_KEY.key
    """Sentry's secret key. Default: sentry-secret-key."""
    admin_password: KeyName = ADMIN_PASSWORD.key
    """Password of the superuser the migrations create. Default: admin-password."""
    github_client_secret: KeyName = GITHUB_CLIENT_SECRET.key
    """GitHub OAuth client secret. Default: github-client-secret."""
    github_private_key: KeyName = GITHUB_PRIVATE_KEY.key
    """GitHub App private key. Default: github-private-key."""
    github_webhook_secret: KeyName = GITHUB_WEBHOOK_SECRET.key
    """GitHub App webhook secret. Default: github-webhook-secret."""
    gitlab_application_secret: KeyName = GITLAB_APPLICATION_SECRET.key
    """GitLab OAuth application secret. Default: gitlab-application-secret."""
    smtp_password: KeyName = SMTP_PASSWORD.key
    """SMTP password. Default: smtp-password."""
    s3_secret_access_key: KeyName = S3_SECRET_ACCESS_KEY.key
    """Secret key of the offsite backup bucket. Default: s3-secret-access-key."""
    filestore_s3_secret_access_key: KeyName = FILESTORE_S3_SECRET_ACCESS_KEY.key
    """Secret key of the s3 filestore. Default: filestore-s3-secret-access-key."""
    gcs_credentials: KeyName = GCS_CREDENTIALS.key
    """Google service account key of the gcs filestore. Default: gcs-credentials."""
