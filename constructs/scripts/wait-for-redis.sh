# Block until Redis answers PING, check that it evicts nothing, then exit 0; give up
# after WAIT_TIMEOUT_SECONDS so a broken or misconfigured Redis shows up as a failing
# init container with this log. redis-cli reads the password from REDISCLI_AUTH (the
# Secret), so it is never on a command line. REDIS_AUTH=none says the server takes no
# password (an external Redis set up so, e.g. ElastiCache without in-transit encryption,
# which allows no AUTH): then none is sent.
host="${REDIS_HOST:?REDIS_HOST is required}"
port="${REDIS_PORT:-6379}"
if [ "${REDIS_AUTH:-password}" = none ]; then
  unset REDISCLI_AUTH
else
  : "${REDISCLI_AUTH:?REDISCLI_AUTH is required (or REDIS_AUTH=none for a server without a password)}"
fi
timeout="${WAIT_TIMEOUT_SECONDS:-600}"
interval="${WAIT_INTERVAL_SECONDS:-2}"
waited=0
while :; do
  reply=$(redis-cli -h "$host" -p "$port" ping 2>&1 | head -n 1)
  [ "$reply" = "PONG" ] && break
  if [ "$waited" -ge "$timeout" ]; then
    echo "gave up: Redis at $host:$port did not answer PING after ${waited}s (last reply: ${reply:-none})" >&2
    exit 1
  fi
  echo "waiting for Redis at $host:$port (${waited}s): ${reply:-no reply}"
  sleep "$interval"
  waited=$((waited + interval))
done
# Sentry 9.1.2 keeps each event's body in Redis with a time to live and queues only its
# key: a Redis that evicts when full (any maxmemory-policy but noeviction) drops queued
# events without a word. INFO, unlike CONFIG, is allowed on managed servers.
memory=$(redis-cli -h "$host" -p "$port" info memory | tr -d '\r')
limit=$(printf '%s\n' "$memory" | sed -n 's/^maxmemory://p')
policy=$(printf '%s\n' "$memory" | sed -n 's/^maxmemory_policy://p')
if [ "${limit:-0}" != 0 ] && [ "$policy" != noeviction ]; then
  echo "refused: Redis at $host:$port evicts keys when it is full (maxmemory-policy ${policy:-unknown}), which loses queued Sentry events; set its maxmemory-policy to noeviction (a managed Redis: in its parameter group or configuration)" >&2
  exit 1
fi
echo "Redis at $host:$port is answering (maxmemory ${limit:-0}, maxmemory-policy ${policy:-unknown})"
