"""The keys of the stack's Secret: its contract with the workloads that read it.

Every construct that reads a secret names one of these keys (by secretKeyRef); the
application's secrets store (app/secrets_store.py) fills them, or the user's own Secret
(`secrets.existing_secret`) holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

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
