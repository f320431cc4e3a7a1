# Block until the migration Job has recorded that the database schema is migrated
# for SENTRY_MIGRATION_VERSION (the Sentry image this pod runs), then exit 0.
# Pods of a new image therefore wait for their own migrations while the old
# pods keep serving. The marker is a row in the database, so it survives the Job
# being deleted. psql's -c does not expand variables, hence the SQL on stdin.
# Every wait line says why it still waits, psql's error included: a marker table that
# is not there yet is the normal case, anything else (no permission, a lost connection)
# is shown as psql says it, rather than passed off as "not migrated yet".
version="${SENTRY_MIGRATION_VERSION:?SENTRY_MIGRATION_VERSION is required}"
timeout="${WAIT_TIMEOUT_SECONDS:-3600}"
interval="${WAIT_INTERVAL_SECONDS:-5}"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"
waited=0
while :; do
  if found=$(printf '%s\n' "SELECT 1 FROM k8s_sentry_migrations WHERE version = :'version';" |
    psql -X -q -t -A -v ON_ERROR_STOP=1 -v version="$version" 2>&1); then
    if [ "$found" = "1" ]; then
      echo "migrations for $version are complete"
      exit 0
    fi
    why="the migration Job has not recorded them yet"
  else
    found=$(printf '%s' "$found" | tr '\n\t' '  ')
    case $found in
      *'relation "k8s_sentry_migrations" does not exist'*) why="the migration Job has not recorded any migrations yet" ;;
      *) why="psql: $found" ;;
    esac
  fi
  if [ "$waited" -ge "$timeout" ]; then
    echo "gave up: no completed migrations for $version after ${waited}s ($why); check the migration Job's logs" >&2
    exit 1
  fi
  echo "waiting for the migration Job to finish migrations for $version (${waited}s): $why"
  sleep "$interval"
  waited=$((waited + interval))
done
