# Block until PostgreSQL lets this pod log in, then exit 0: a query with the pod's own
# role, password and database (libpq's PG* variables), so what is checked is what Sentry
# will do, not only that something listens. While the server is not there yet (connection
# refused, starting up, no DNS name yet), wait; give up after WAIT_TIMEOUT_SECONDS so a
# broken database shows up as a failing init container with this log. When the server
# answers but refuses the login (a password it does not have, a role or database it lacks,
# TLS that does not verify), exit 1 at once with psql's own words: waiting cannot fix that,
# and a pod that only waited would leave the cause to be guessed from later failures.
host="${PGHOST:?PGHOST is required}"
port="${PGPORT:-5432}"
timeout="${WAIT_TIMEOUT_SECONDS:-600}"
interval="${WAIT_INTERVAL_SECONDS:-2}"
# One attempt must not hang on an address that drops packets.
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"
docs="docs/operations.md"
refused() {
  echo "error: PostgreSQL at $host:$port refused the login of role ${PGUSER:-?} to database ${PGDATABASE:-?}: $1" >&2
  echo "$2" >&2
  exit 1
}
waited=0
while :; do
  if reply=$(psql -X -q -t -A -c 'SELECT 1' </dev/null 2>&1); then
    echo "PostgreSQL at $host:$port lets role ${PGUSER:-?} log in to database ${PGDATABASE:-?}"
    exit 0
  fi
  reply=$(printf '%s' "$reply" | tr '\n\t' '  ')
  case $reply in
    *"password authentication failed"* | *"no password supplied"*)
      refused "$reply" "Either the Secret's postgres-password is not this role's password on the server (PostgreSQL keeps the one it was initialised with: see $docs, Rotating the PostgreSQL password, or Recovering lost secrets), or the server has no role ${PGUSER:-?} (postgres.user renamed? see $docs, Renaming the database user or the database): a server tells the two apart only in its own log." ;;
    *'role "'*'" does not exist'*)
      refused "$reply" "postgres.user names a role the server does not have (the image creates its role only when the volume is first initialised): see $docs, Renaming the database user or the database." ;;
    *'database "'*'" does not exist'*)
      refused "$reply" "postgres.database names a database the server does not have: see $docs, Renaming the database user or the database." ;;
    *"pg_hba.conf"* | *"certificate"* | *"does not support SSL"* | *"SSL is not enabled"*)
      refused "$reply" "The server does not accept this connection as configured (postgres.external: sslmode, ca, and the server's own access rules)." ;;
  esac
  if [ "$waited" -ge "$timeout" ]; then
    echo "gave up: PostgreSQL at $host:$port not accepting connections after ${waited}s (last answer: $reply)" >&2
    exit 1
  fi
  echo "waiting for PostgreSQL at $host:$port (${waited}s): $reply"
  sleep "$interval"
  waited=$((waited + interval))
done
