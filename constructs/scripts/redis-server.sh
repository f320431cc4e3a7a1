# Start Redis with the password from the environment. The password goes into a
# config file written by the shell's printf builtin, so it never appears on a
# command line (visible in `ps` and /proc/*/cmdline).
# REDIS_MAXMEMORY (bytes) stays well below the container's memory limit: an AOF rewrite
# forks, and the child's copy-on-write pages count against the same limit. The policy
# must evict nothing (noeviction): Sentry 9.1.2 queues only an event's key and keeps its
# body in the cache with a time to live, so a policy that evicts keys with a TTL
# (volatile-*) drops exactly the bodies of queued events, and the worker that finds one
# gone drops the event. Full, Redis refuses writes with an OOM error instead (new events
# are refused at the API; docs/operations.md says what else), and the kernel never kills it.
conf="${REDIS_CONF:-/run/redis/redis.conf}"
maxmemory="${REDIS_MAXMEMORY:?REDIS_MAXMEMORY is required}"
policy="${REDIS_MAXMEMORY_POLICY:-noeviction}"
umask 077
mkdir -p "$(dirname "$conf")"
# Escape \ and " for Redis's quoted-string syntax; sed reads the password on stdin.
escaped=$(printf '%s' "${REDIS_PASSWORD:?REDIS_PASSWORD is required}" | sed 's/[\\"]/\\&/g')
printf 'requirepass "%s"\n' "$escaped" > "$conf"
cat >> "$conf" <<CONF
port ${REDIS_PORT:-6379}
dir ${REDIS_DATA_DIR:-/data}
appendonly yes
appendfsync everysec
maxmemory $maxmemory
maxmemory-policy $policy
CONF
exec redis-server "$conf"
