# Dump every database and every role of the PostgreSQL server into one
# gzip-compressed, verified file in BACKUP_DIR, then keep the newest BACKUP_KEEP.
#
# Why a file can be trusted: it only ever gets its final name
# (sentry-YYYYMMDDTHHMMSSZ.sql.gz, UTC) after pg_dumpall and gzip both exited 0,
# the file was synced, and a full decompression showed an intact gzip stream that
# ends with pg_dumpall's "cluster dump complete" trailer, with every COPY block
# closed. Until then it is a hidden .partial-* file, removed on failure, on
# SIGTERM (deadline, pod deletion) and at the start of the next run.
#
# Environment: the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD; PGUSER must
# be a superuser to dump roles), BACKUP_DIR, BACKUP_KEEP (>= 1), BACKUP_GZIP_LEVEL
# (1-9), BACKUP_LOCK_WAIT_TIMEOUT_MS (how long pg_dump may wait for a table lock).
# Runs with the client tools of postgres:9.6 (the manifests) and of PostgreSQL 15
# (the tests). Their dumps are shaped differently (see postgres-restore.sh), so the
# verification relies only on what both write: COPY blocks ended by \. and the
# closing "cluster dump complete" comment. Both accept --lock-wait-timeout in ms.
set -euo pipefail
umask 077 # dumps hold every row and the roles' password hashes

dir="${BACKUP_DIR:?BACKUP_DIR is required}"
keep="${BACKUP_KEEP:-7}"
level="${BACKUP_GZIP_LEVEL:-6}"
lock_wait_ms="${BACKUP_LOCK_WAIT_TIMEOUT_MS:-600000}"
[[ $keep =~ ^[1-9][0-9]*$ ]] || { echo "backup: BACKUP_KEEP must be a whole number >= 1, not '$keep'" >&2; exit 2; }
[[ $level =~ ^[1-9]$ ]] || { echo "backup: BACKUP_GZIP_LEVEL must be 1-9, not '$level'" >&2; exit 2; }
[[ $lock_wait_ms =~ ^[0-9]+$ ]] || { echo "backup: BACKUP_LOCK_WAIT_TIMEOUT_MS must be a number" >&2; exit 2; }

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
final="$dir/sentry-$stamp.sql.gz"
partial="$dir/.partial-sentry-$stamp.sql.gz"
dump_job=""

cleanup() {
  # Stop the dump pipeline: `jobs -p` names its first process, $dump_job its last.
  # shellcheck disable=SC2046 # PIDs, one word each
  [[ -z $dump_job ]] || kill $(jobs -p) "$dump_job" 2>/dev/null || true
  rm -f "$partial"
}
# As PID 1 of its container, bash ignores SIGTERM unless it traps it: without this
# trap a deadline or pod deletion would wait for the SIGKILL and leave the partial file.
trap cleanup EXIT
trap 'echo "backup: interrupted, removing $partial" >&2; exit 143' TERM INT

# A run that was SIGKILLed leaves its hidden partial file behind; none can belong to a
# running backup, because the CronJob forbids concurrent runs.
rm -f "$dir"/.partial-sentry-*
[[ ! -e $final ]] || { echo "backup: $final already exists" >&2; exit 1; }

echo "backup: dumping all databases and roles of ${PGHOST:-localhost}:${PGPORT:-5432} as ${PGUSER:-?} (gzip -$level)"
started=$SECONDS
# --clean --if-exists: the restore drops and re-creates every database it restores.
# --no-password: fail rather than prompt. --lock-wait-timeout: fail instead of queueing
# behind a long-held exclusive lock (e.g. a migration) until the deadline.
# The pipeline runs in the background so that `wait` returns at once on SIGTERM; with
# pipefail its status is that of the last command that failed (pg_dumpall, or gzip
# on a full volume), and both print their own reason above.
pg_dumpall --clean --if-exists --no-password --lock-wait-timeout="$lock_wait_ms" | gzip "-$level" >"$partial" &
dump_job=$!
status=0
wait "$dump_job" || status=$?
dump_job=""
if ((status != 0)); then
  echo "backup: FAILED: pg_dumpall | gzip exited with status $status; no backup was written" >&2
  exit 1
fi
sync "$partial"
echo "backup: dump took $((SECONDS - started))s, verifying"

# Verify by decompressing everything (gzip checks its CRC and length) and reading the
# SQL: every COPY block must end with \. and the last thing in the file must be the
# trailer pg_dumpall writes only after the last database dumped successfully.
if ! stats="$(gzip -dc "$partial" | awk '
  in_copy { if ($0 == "\\.") in_copy = 0; else rows++; next }
  /^COPY .* FROM stdin;$/ { in_copy = 1; tables++; complete = 0; next }
  /^\\connect / { databases[$0] = 1; complete = 0; next }
  $0 == "-- PostgreSQL database cluster dump complete" { complete = 1; next }
  $0 != "" && $0 != "--" { complete = 0 }
  END {
    for (name in databases) count++
    if (in_copy || !complete) exit 1
    printf "%d databases, %d tables, %d rows", count, tables, rows
  }')"; then
  echo "backup: FAILED verification: $partial is corrupt or incomplete; no backup was written" >&2
  exit 1
fi

mv "$partial" "$final"
sync "$dir"
echo "backup: wrote $final ($(wc -c <"$final") bytes; $stats) in $((SECONDS - started))s"

# Retention: keep the newest $keep dumps by their UTC time stamp. Only verified files
# carry this name, and the one just written is never removed (even if a wrong clock
# made it sort older than the others), so the newest good dump always survives.
shopt -s nullglob
list_dumps() { dumps=("$dir"/sentry-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.sql.gz); }
list_dumps
excess=$((${#dumps[@]} - keep))
for old in "${dumps[@]}"; do # the glob sorts oldest first
  ((excess > 0)) || break
  [[ $old == "$final" ]] && continue
  echo "backup: removing $old (keeping the newest $keep)"
  rm -f "$old"
  excess=$((excess - 1))
done
list_dumps
echo "backup: done; ${#dumps[@]} dumps in $dir, newest $(basename "${dumps[-1]}")"
