# Restore a dump written by postgres-backup.sh into the running PostgreSQL server,
# replacing every database and role it contains. See the README's restore runbook:
# Sentry must be scaled to 0 first, and this script refuses to run while other
# clients are connected.
#
# 1. choose: RESTORE_FILE is "latest" (the newest dump by its UTC time stamp) or a
#    dump's file name in BACKUP_DIR;
# 2. verify before touching the server: decompress everything (gzip CRC), require
#    pg_dumpall's completion trailer and closed COPY blocks; note each table's row
#    count and each role, to check them after the restore;
# 3. wait up to RESTORE_WAIT_SECONDS for other client sessions to end, else refuse;
# 4. replay the dump with psql. pg_dumpall --clean drops and re-creates every
#    database and role, which fails in two expected ways for the role we connect
#    as (it cannot drop itself, and its CREATE ROLE finds it exists; the ALTER ROLE
#    that follows still restores its attributes and password). Exactly those two
#    errors are allowed; any other error, and any failure of psql, fails the restore;
# 5. check every table's row count and every role against step 2, then ANALYZE
#    (a dump carries no planner statistics).
#
# Environment: PGHOST, PGPORT, PGUSER (a superuser), PGPASSWORD, BACKUP_DIR,
# RESTORE_FILE, RESTORE_WAIT_SECONDS. Writes only to $TMPDIR (default /tmp).
#
# PostgreSQL 9.6 (the manifests) and 15 (the tests) write differently shaped dumps;
# both replay correctly when psql starts in the `postgres` database:
# - 9.6's pg_dumpall first drops every database except postgres and template1,
#   creates the others itself, then cleans postgres and template1 object by object;
#   from 11 on, pg_dumpall hands database creation to pg_dump --create, which with
#   --clean drops and re-creates template1 (while connected to postgres) and
#   postgres (while connected to template1).
# - 9.6 writes unqualified COPY targets under `SET search_path = ...`; 10.3 and
#   later write schema-qualified ones. The checks replay the search_path lines.
# - 9.6 stores md5 password hashes, 15 SCRAM ones; a dump restores what it holds,
#   so the roles get the passwords they had when the dump was taken.
# - pg_dump 15.14 and later (and other branches' matching minor releases) write
#   \restrict lines that older psql does not know: restore with a psql at least as
#   new as the pg_dumpall that wrote the dump (the same image, in the manifests).
set -euo pipefail
umask 077

dir="${BACKUP_DIR:?BACKUP_DIR is required}"
choice="${RESTORE_FILE:-latest}"
wait_seconds="${RESTORE_WAIT_SECONDS:-300}"
user="${PGUSER:?PGUSER is required}"
[[ $wait_seconds =~ ^[0-9]+$ ]] || { echo "restore: RESTORE_WAIT_SECONDS must be a number" >&2; exit 2; }
# Server messages in English, whatever lc_messages says: the allowlist below matches them.
export PGOPTIONS="${PGOPTIONS:-} -c lc_messages=C"
export LC_MESSAGES=C
work="$(mktemp -d "${TMPDIR:-/tmp}/restore.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

fail() {
  echo "restore: FAILED: $*" >&2
  exit 1
}
# Every connection starts in `postgres`: the one database neither dump shape drops
# while connected to it (see above).
sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 --no-password --dbname=postgres "$@"; }

# --- 1. choose ------------------------------------------------------------------
shopt -s nullglob
dumps=("$dir"/sentry-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.sql.gz)
shopt -u nullglob
if [[ $choice == latest ]]; then
  ((${#dumps[@]} > 0)) || fail "there is no dump in $dir"
  file="${dumps[-1]}"
elif [[ $choice =~ ^sentry-[0-9]{8}T[0-9]{6}Z\.sql\.gz$ ]]; then
  file="$dir/$choice"
  if [[ ! -f $file ]]; then
    echo "restore: dumps in $dir:" >&2
    for f in "${dumps[@]}"; do echo "  $(basename "$f")" >&2; done
    fail "$file does not exist"
  fi
else
  fail "RESTORE_FILE must be 'latest' or a dump's file name like sentry-20240101T030000Z.sql.gz, not '$choice'"
fi
echo "restore: chose $file ($(wc -c <"$file") bytes)"

# --- 2. verify, and note what to check afterwards ---------------------------------
# The awk program reads the SQL once. Data lines only occur inside COPY blocks, where
# a line that is exactly \. ends the block (a data value "\." is written as "\\.").
# It writes check.sql: the dump's own \connect and search_path lines, and after each
# COPY block a query that prints a line only if the table's row count differs.
if ! stats="$(gzip -dc "$file" | awk -v check="$work/check.sql" '
  function literal(s) { gsub(/'\''/, "'\'''\''", s); return "'\''" s "'\''" }
  # The table name as written after COPY: up to the first space outside double quotes.
  function table_name(s,   i, c, quoted) {
    quoted = 0
    for (i = 1; i <= length(s); i++) {
      c = substr(s, i, 1)
      if (c == "\"") quoted = !quoted
      else if (c == " " && !quoted) break
    }
    return substr(s, 1, i - 1)
  }
  in_copy {
    if ($0 != "\\.") { rows++; next }
    in_copy = 0
    printf "SELECT pg_catalog.format(%s, pg_catalog.current_database(), %s, n, %d) FROM (SELECT pg_catalog.count(*) AS n FROM %s) c WHERE n <> %d;\n", \
      literal("%s: table %s has %s rows, the dump has %s"), literal(table), rows, table, rows > check
    total_rows += rows
    next
  }
  /^COPY .* FROM stdin;$/ { table = table_name(substr($0, 6)); in_copy = 1; rows = 0; tables++; complete = 0; next }
  /^\\connect / { print > check; connected = 1; databases[$0] = 1; complete = 0; next }
  /^SET search_path = / || /^SELECT pg_catalog.set_config\(.search_path., / { print > check; complete = 0; next }
  /^CREATE ROLE .*;$/ && !connected {
    role = substr($0, 13, length($0) - 13)
    printf "SELECT pg_catalog.format(%s, %s) WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE pg_catalog.quote_ident(rolname) = %s);\n", \
      literal("role %s is missing"), literal(role), literal(role) > check
    roles++
    complete = 0
    next
  }
  $0 == "-- PostgreSQL database cluster dump complete" { complete = 1; next }
  $0 != "" && $0 != "--" { complete = 0 }
  END {
    close(check)
    for (name in databases) count++
    if (in_copy || !complete) exit 1
    printf "%d databases, %d tables, %d rows, %d roles", count, tables, total_rows, roles
  }')"; then
  fail "$file is corrupt or incomplete (see above); nothing was changed"
fi
echo "restore: verified the dump: $stats"

# --- 3. no other clients ------------------------------------------------------------
version="$(sql -c 'SHOW server_version_num')" || fail "cannot connect to ${PGHOST:-localhost}:${PGPORT:-5432} as $user"
if ((version >= 100000)); then
  others="backend_type = 'client backend'"
else # 9.6 has no backend_type; its pg_stat_activity lists client backends and autovacuum workers
  others="query NOT LIKE 'autovacuum: %'"
fi
sessions_sql="SELECT pg_catalog.format('%s@%s from %s (%s, %s)', usename, datname,
    coalesce(client_addr::text, 'local'), coalesce(nullif(application_name, ''), '-'), state)
  FROM pg_catalog.pg_stat_activity
  WHERE pid <> pg_catalog.pg_backend_pid() AND datname IS NOT NULL AND $others"
deadline=$((SECONDS + wait_seconds))
while :; do
  sessions="$(sql -c "$sessions_sql")"
  [[ -n $sessions ]] || break
  if ((SECONDS >= deadline)); then
    echo "restore: other clients are still connected after ${wait_seconds}s:" >&2
    echo "$sessions" | sed 's/^/  /' >&2
    fail "stop Sentry (scale web, worker and cron to 0) and suspend the backup CronJob, then retry; nothing was changed"
  fi
  echo "restore: waiting for $(wc -l <<<"$sessions") other session(s) to end: $(head -n 1 <<<"$sessions") ..."
  sleep 2
done

# --- 4. replay ------------------------------------------------------------------------
echo "restore: replaying $(basename "$file") into ${PGHOST:-localhost}:${PGPORT:-5432} as $user"
# psql's messages go to the log (and this pod's log); query output is not needed.
set +e
gzip -dc "$file" | psql -X -q -v ON_ERROR_STOP=0 --no-password --dbname=postgres -f - 2>&1 >/dev/null |
  tee "$work/psql.log"
status=("${PIPESTATUS[@]}")
set -e
allowed=("ERROR:  current user cannot be dropped" "ERROR:  role \"$user\" already exists")
# Errors from the server (ERROR/FATAL/PANIC) and from psql itself (error:, fatal:,
# a failed \connect), with psql's "psql:<stdin>:LINE: " prefix removed.
unexpected="$(sed -E 's/^psql:[^:]*:[0-9]+: //' "$work/psql.log" |
  grep -E -i '^(error|fatal|panic)[: ]|^psql: |^\\connect' |
  grep -v -x -F -e "${allowed[0]}" -e "${allowed[1]}" || true)"
expected="$(sed -E 's/^psql:[^:]*:[0-9]+: //' "$work/psql.log" | grep -c -x -F -e "${allowed[0]}" -e "${allowed[1]}" || true)"
if [[ -n $unexpected || ${status[0]} != 0 || ${status[1]} != 0 ]]; then
  [[ -z $unexpected ]] || { echo "restore: unexpected errors:" >&2; echo "$unexpected" | sed 's/^/  /' >&2; }
  fail "gzip exited ${status[0]}, psql exited ${status[1]}; the databases may be partly restored: fix the cause and run the restore again"
fi
echo "restore: replayed in $((SECONDS - started))s ($expected expected errors about role $user, none other)"

# --- 5. check, then analyze --------------------------------------------------------------
mismatches="$(sql -f "$work/check.sql")" || fail "the post-restore check could not run"
if [[ -n $mismatches ]]; then
  echo "$mismatches" | sed 's/^/  /' >&2
  fail "the restored databases differ from the dump"
fi
echo "restore: checked: every table has the dump's row count and every role exists"
vacuumdb --all --analyze-only --quiet --no-password
echo "restore: done in $((SECONDS - started))s: $(basename "$file") ($stats)"
