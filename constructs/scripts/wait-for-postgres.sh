# Block until PostgreSQL accepts connections, then exit 0; give up after
# WAIT_TIMEOUT_SECONDS so a broken database shows up as a failing init container
# (with this log) instead of a pod that hangs forever.
host="${PGHOST:?PGHOST is required}"
port="${PGPORT:-5432}"
timeout="${WAIT_TIMEOUT_SECONDS:-600}"
interval="${WAIT_INTERVAL_SECONDS:-2}"
waited=0
until pg_isready -h "$host" -p "$port" -t 3 >/dev/null 2>&1; do
  if [ "$waited" -ge "$timeout" ]; then
    echo "gave up: PostgreSQL at $host:$port not accepting connections after ${waited}s" >&2
    exit 1
  fi
  echo "waiting for PostgreSQL at $host:$port (${waited}s)"
  sleep "$interval"
  waited=$((waited + interval))
done
echo "PostgreSQL at $host:$port is accepting connections"
