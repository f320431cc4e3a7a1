# Record that migrations for SENTRY_MIGRATION_VERSION completed, and (when this Job
# created the superuser) that the admin bootstrap is done. Runs as the migration
# Job's last step, only after `sentry upgrade` and the superuser step succeeded
# (they run before it as init containers). Idempotent.
version="${SENTRY_MIGRATION_VERSION:?SENTRY_MIGRATION_VERSION is required}"
admin=false
[ -n "${SENTRY_ADMIN_PENDING_FILE:-}" ] && [ -f "$SENTRY_ADMIN_PENDING_FILE" ] && admin=true
psql -X -q -v ON_ERROR_STOP=1 -v version="$version" -v admin="$admin" <<'SQL'
CREATE TABLE IF NOT EXISTS k8s_sentry_migrations (
  version text PRIMARY KEY,
  completed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO k8s_sentry_migrations (version) VALUES (:'version')
  ON CONFLICT (version) DO UPDATE SET completed_at = now();
CREATE TABLE IF NOT EXISTS k8s_sentry_bootstrap (
  item text PRIMARY KEY,
  done_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO k8s_sentry_bootstrap (item) SELECT 'admin' WHERE :'admin'::boolean
  ON CONFLICT (item) DO NOTHING;
SQL
echo "recorded completed migrations for $version"
[ "$admin" = true ] && echo "recorded the admin bootstrap"
exit 0
