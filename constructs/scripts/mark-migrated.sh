# Record that migrations for SENTRY_MIGRATION_VERSION completed. Runs as the
# migration Job's last step, only after `sentry upgrade` and the superuser step
# succeeded (they run before it as init containers). Idempotent.
version="${SENTRY_MIGRATION_VERSION:?SENTRY_MIGRATION_VERSION is required}"
psql -X -q -v ON_ERROR_STOP=1 -v version="$version" <<'SQL'
CREATE TABLE IF NOT EXISTS k8s_sentry_migrations (
  version text PRIMARY KEY,
  completed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO k8s_sentry_migrations (version) VALUES (:'version')
  ON CONFLICT (version) DO UPDATE SET completed_at = now();
SQL
echo "recorded completed migrations for $version"
