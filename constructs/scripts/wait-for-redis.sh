# Block until Redis answers PING with this stack's password, then exit 0; give up
# after WAIT_TIMEOUT_SECONDS so a broken or misconfigured Redis shows up as a failing
# init container with this log. redis-cli reads the password from REDISCLI_AUTH (the
# Secret), so it is never on a command line.
host="${REDIS_HOST:?REDIS_HOST is required}"
port="${REDIS_PORT:-6379}"
: "${REDISCLI_AUTH:?REDISCLI_AUTH is required}"
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
echo "Redis at $host:$port is answering"
