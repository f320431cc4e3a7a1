# Block until the migration Job has recorded that the database schema is migrated
# for SENTRY_MIGRATION_VERSION (the Sentry image this pod runs), then exit 0.
# Pods of a new image therefore wait for their own migrations while the old
# pods keep serving. The marker is a row in the database, so it survives the Job
# being deleted. psql's -c does not expand variables, hence the SQL on stdin.
version="${SENTRY_MIGRATION_VERSION:?SENTRY_MIGRATION_VERSION is required}"
timeout="${WAIT_TIMEOUT_SECONDS:-3600}"
interval="${WAIT_INTERVAL_SECONDS:-5}"
waited=0
while :; do
  found=$(printf '%s\n' "SELECT 1 FROM k8s_sentry_migrations WHERE version = :'version';" |
    psql -X -q -t -A -v ON_ERROR_STOP=1 -v version="$version" 2>/dev/null || true)
  if [ "$found" = "1" ]; then
    echo "migrations for $version are complete"
    exit 0
  fi
  if [ "$waited" -ge "$timeout" ]; then
    echo "gave up: no completed migrations for $version after ${waited}s; check the migration Job's logs" >&2
    exit 1
  fi
  echo "waiting for the migration Job to finish migrations for $version (${waited}s)"
  sleep "$interval"
  waited=$((waited + interval))
done
