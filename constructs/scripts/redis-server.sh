# Start Redis with the password from the environment. The password goes into a
# config file written by the shell's printf builtin, so it never appears on a
# command line (visible in `ps` and /proc/*/cmdline).
# REDIS_MAXMEMORY (bytes) stays well below the container's memory limit: an AOF rewrite
# forks, and the child's copy-on-write pages count against the same limit. The policy
# (volatile-lru) evicts only keys with a time to live (caches, rate-limit windows);
# Celery's queues and unacknowledged tasks have none, so a backlog is never evicted:
# once nothing can be evicted, writes fail with an OOM error that Sentry reports,
# instead of the kernel killing Redis into a crash loop.
conf="${REDIS_CONF:-/run/redis/redis.conf}"
maxmemory="${REDIS_MAXMEMORY:?REDIS_MAXMEMORY is required}"
policy="${REDIS_MAXMEMORY_POLICY:-volatile-lru}"
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
