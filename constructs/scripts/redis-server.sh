# Start Redis with the password from the environment. The password goes into a
# config file written by the shell's printf builtin, so it never appears on a
# command line (visible in `ps` and /proc/*/cmdline).
conf=/run/redis/redis.conf
umask 077
mkdir -p /run/redis
# Escape \ and " for Redis's quoted-string syntax; sed reads the password on stdin.
escaped=$(printf '%s' "${REDIS_PASSWORD:?REDIS_PASSWORD is required}" | sed 's/[\\"]/\\&/g')
printf 'requirepass "%s"\n' "$escaped" > "$conf"
cat >> "$conf" <<CONF
port ${REDIS_PORT:-6379}
dir ${REDIS_DATA_DIR:-/data}
appendonly yes
appendfsync everysec
CONF
exec redis-server "$conf"
