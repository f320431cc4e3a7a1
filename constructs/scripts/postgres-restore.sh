# Restore a backup written by postgres-backup.sh into the running PostgreSQL server:
# the Sentry database it holds (dropped and re-created), the roles (when the backup
# has them and they may be restored) and, on request, the filestore. See the restore
# runbook in docs/operations.md: Sentry must be scaled to 0 first, and this script refuses to run
# while other clients are connected.
#
# 1. choose: RESTORE_FILE is "latest" (the newest backup by its UTC time stamp) or a
#    backup's name in BACKUP_DIR (sentry-YYYYMMDDTHHMMSSZ);
# 2. verify before touching the server: every file matches MD5SUMS and no file is
#    missing or extra (the backup read everything back before it wrote MD5SUMS, so an
#    unchanged backup is a verified one), pg_restore reads the table of contents,
#    and db.rows has a row count for exactly the tables in it;
# 3. wait up to RESTORE_WAIT_SECONDS for other client sessions to end, else refuse;
# 4. replay: roles.sql with psql (CREATE ROLE fails for roles that exist, and the
#    ALTER ROLE that follows resets their attributes and password: exactly those
#    errors are allowed), then pg_restore --create --clean with RESTORE_JOBS workers,
#    which stops at any error; then, with RESTORE_FILESTORE_DIR, replace the
#    filestore's contents with the archive;
# 5. check every table's row count against db.rows, then ANALYZE (a dump carries no
#    planner statistics).
#
# Environment: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (the database to connect
# to first, normally postgres; the restored database's name comes from the backup),
# BACKUP_DIR, RESTORE_FILE, RESTORE_WAIT_SECONDS, RESTORE_JOBS, RESTORE_ROLES (auto:
# when the backup has roles and PGUSER is a superuser; yes; no), RESTORE_FILESTORE_DIR
# (empty: leave the filestore alone). Writes only to $TMPDIR (default /tmp) and the
# filestore.
#
# Client tools: restore with a pg_restore at least as new as the pg_dump that wrote
# the backup (the same image, in the manifests; 15 in the tests). Both 9.6 and 15
# print `pg_restore --list` lines as "ID; TABLEOID OID TYPE SCHEMA NAME OWNER", which
# the post-check relies on; psql's \gexec, which it uses, exists from 9.6 on.
set -euo pipefail
umask 077

dir="${BACKUP_DIR:?BACKUP_DIR is required}"
choice="${RESTORE_FILE:-latest}"
wait_seconds="${RESTORE_WAIT_SECONDS:-300}"
workers="${RESTORE_JOBS:-2}"
roles="${RESTORE_ROLES:-auto}"
filestore="${RESTORE_FILESTORE_DIR:-}"
user="${PGUSER:?PGUSER is required}"
maintenance="${PGDATABASE:-postgres}"
usage() { echo "restore: $*" >&2; exit 2; }
[[ $wait_seconds =~ ^[0-9]+$ ]] || usage "RESTORE_WAIT_SECONDS must be a number"
[[ $workers =~ ^[1-9][0-9]*$ ]] || usage "RESTORE_JOBS must be a whole number >= 1, not '$workers'"
[[ $roles =~ ^(auto|yes|no)$ ]] || usage "RESTORE_ROLES must be auto, yes or no, not '$roles'"
[[ -z $filestore || -d $filestore ]] || usage "RESTORE_FILESTORE_DIR $filestore is not a directory"
export LC_MESSAGES=C
work="$(mktemp -d "${TMPDIR:-/tmp}/restore.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

fail() {
  echo "restore: FAILED: $*" >&2
  exit 1
}
indent() { sed 's/^/  /'; }
sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 --no-password --dbname="$maintenance" "$@"; }

# --- 1. choose ------------------------------------------------------------------
shopt -s nullglob
backups=("$dir"/sentry-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z)
shopt -u nullglob
if [[ $choice == latest ]]; then
  ((${#backups[@]} > 0)) || fail "there is no backup in $dir"
  backup="${backups[-1]}"
elif [[ $choice =~ ^sentry-[0-9]{8}T[0-9]{6}Z$ ]]; then
  backup="$dir/$choice"
  if [[ ! -d $backup ]]; then
    echo "restore: backups in $dir:" >&2
    for b in "${backups[@]}"; do echo "  $(basename "$b")" >&2; done
    fail "$backup does not exist"
  fi
else
  fail "RESTORE_FILE must be 'latest' or a backup's name like sentry-20240101T030000Z, not '$choice'"
fi
echo "restore: chose $backup ($(du -sk "$backup" | cut -f1) KiB)"

# --- 2. verify ------------------------------------------------------------------------
corrupt() { fail "$backup is corrupt or incomplete: $*; nothing was changed"; }
[[ -f $backup/MD5SUMS ]] || corrupt "it has no MD5SUMS"
(cd "$backup" && find . -type f ! -name MD5SUMS -printf '%P\n' | sort) >"$work/present"
sed -E 's/^[0-9a-f]{32} [ *]//' "$backup/MD5SUMS" | sort >"$work/listed"
if ! cmp -s "$work/present" "$work/listed"; then
  diff "$work/listed" "$work/present" | sed -n 's/^[<>] /  /p' >&2 || true
  corrupt "its files differ from those listed in MD5SUMS"
fi
(cd "$backup" && md5sum --quiet --strict -c MD5SUMS) >&2 || corrupt "files changed since the backup (see above)"
pg_restore --list "$backup/db" >"$work/toc" 2>&1 || corrupt "pg_restore cannot read its table of contents"
database="$(sed -n -E 's/^;[[:space:]]+dbname: (.*)$/\1/p' "$work/toc")"
[[ -n $database ]] || corrupt "its table of contents names no database"
# ID <TAB> "schema name owner" <TAB> rows, for every table's data, in TOC order.
sed -n -E 's/^([0-9]+); [0-9]+ [0-9]+ TABLE DATA (.*)$/\1\t\2/p' "$work/toc" >"$work/data"
cmp -s <(cut -f1 "$work/data") <(cut -f1 "$backup/db.rows") || corrupt "db.rows does not match its table of contents"
paste "$work/data" <(cut -f2 "$backup/db.rows") >"$work/expected"
tables=$(wc -l <"$work/expected")
rows=$(awk -F '\t' '{ n += $3 } END { printf "%d", n }' "$work/expected")

superuser="$(sql -c "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")" ||
  fail "cannot connect to ${PGHOST:-localhost}:${PGPORT:-5432} as $user; nothing was changed"
with_roles=0
if [[ -f $backup/roles.sql ]]; then
  case $roles in
    yes) with_roles=1 ;;
    auto) [[ $superuser != t ]] || with_roles=1 ;;
  esac
elif [[ $roles == yes ]]; then
  fail "RESTORE_ROLES is yes, but $backup has no roles.sql; nothing was changed"
fi
if [[ -n $filestore && ! -f $backup/filestore.tar.gz ]]; then
  fail "a filestore restore was asked for, but $backup has no filestore.tar.gz; nothing was changed"
fi
echo "restore: verified: database $database ($tables tables, $rows rows)$([[ $with_roles == 1 ]] && echo ", roles")$([[ -n $filestore ]] && echo ", filestore")"

# --- 3. no other clients ------------------------------------------------------------
version="$(sql -c 'SHOW server_version_num')"
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
    indent <<<"$sessions" >&2
    fail "stop Sentry (scale web, worker and cron to 0) and suspend the backup CronJob, then retry; nothing was changed"
  fi
  echo "restore: waiting for $(wc -l <<<"$sessions") other session(s) to end: $(head -n 1 <<<"$sessions") ..."
  sleep 2
done

# --- 4. replay ------------------------------------------------------------------------
partly="the server may be partly restored: fix the cause and run the restore again"
if ((with_roles)); then
  echo "restore: restoring roles"
  # Server messages in English, whatever lc_messages says: the allowlist below matches
  # them. Only here: setting lc_messages needs a superuser, which restoring roles needs
  # anyway, while a managed server's owner role restores the database without it.
  export PGOPTIONS="${PGOPTIONS:-} -c lc_messages=C"
  # psql's messages go to the log (and this pod's log); query output is not needed.
  set +e
  psql -X -q -v ON_ERROR_STOP=0 --no-password --dbname="$maintenance" -f "$backup/roles.sql" 2>&1 >/dev/null |
    tee "$work/psql.log"
  status=("${PIPESTATUS[@]}")
  set -e
  # CREATE ROLE of a role that exists is the one expected error, for the roles the
  # file creates (a quoted name loses its quotes and doubled quotes in the message).
  sed -n -E 's/^CREATE ROLE (.*);$/\1/p' "$backup/roles.sql" | sed -E 's/^"(.*)"$/\1/; s/""/"/g' |
    while IFS= read -r role; do printf 'ERROR:  role "%s" already exists\n' "$role"; done >"$work/allowed"
  # Errors from the server (ERROR/FATAL/PANIC) and from psql itself, with psql's
  # "psql:FILE:LINE: " prefix removed.
  unexpected="$(sed -E 's/^psql:.*:[0-9]+: //' "$work/psql.log" | grep -E -i '^(error|fatal|panic)[: ]|^psql: ' |
    grep -v -x -F -f "$work/allowed" || true)"
  if [[ -n $unexpected || ${status[0]} != 0 ]]; then
    [[ -z $unexpected ]] || { echo "restore: unexpected errors:" >&2; indent <<<"$unexpected" >&2; }
    fail "restoring the roles failed (psql exited ${status[0]}); $partly"
  fi
fi
echo "restore: restoring database $database with $workers jobs"
# --create --clean: drop the database and create it again from the backup (a
# restore into the old one would keep tables a later migration added).
# --exit-on-error: no error is expected here, so the first one stops the restore.
pg_restore --create --clean --if-exists --exit-on-error --jobs="$workers" --no-password \
  --dbname="$maintenance" "$backup/db" || fail "pg_restore exited $?; $partly"
if [[ -n $filestore ]]; then
  echo "restore: replacing the contents of $filestore with the archive"
  # lost+found belongs to the volume, not to Sentry (and is not in the archive).
  find "$filestore" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} + ||
    fail "could not empty $filestore; $partly"
  # --no-overwrite-dir: the mount point itself may not be ours to change.
  gzip -dc "$backup/filestore.tar.gz" | tar -x -f - -C "$filestore" --no-same-owner --no-overwrite-dir ||
    fail "extracting the filestore failed; $partly"
fi
echo "restore: replayed in $((SECONDS - started))s"

# --- 5. check, then analyze --------------------------------------------------------------
# Find each table by what `pg_restore --list` prints for it ("schema name owner";
# names are not quoted there, so the catalog decides), then compare its row count
# (ONLY: a table's data in the backup never includes its inheritance children's).
# Prints one line per table that cannot be found or has another count.
sed 's/\\/\\\\/g' "$work/expected" >"$work/expected.copy"
cat >"$work/check.sql" <<EOF
CREATE TEMPORARY TABLE expected (id int, what text, n bigint);
\\copy expected FROM '$work/expected.copy'
CREATE TEMPORARY VIEW found AS
  SELECT e.id, e.what, e.n, s.nspname, c.relname FROM expected e
  LEFT JOIN (pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace AND c.relkind IN ('r', 'p'))
    ON s.nspname || ' ' || c.relname || ' ' || pg_catalog.pg_get_userbyid(c.relowner) = e.what;
SELECT pg_catalog.format('no single table matches entry %s of the backup (%s)', id, what)
  FROM found GROUP BY id, what HAVING count(relname) <> 1;
SELECT pg_catalog.format('SELECT %L || n || %L FROM (SELECT pg_catalog.count(*) AS n FROM ONLY %I.%I) c WHERE n <> %s',
    pg_catalog.format('table %I.%I has ', nspname, relname), ' rows, the backup has ' || n, nspname, relname, n)
  FROM found WHERE id IN (SELECT id FROM found GROUP BY id HAVING count(relname) = 1)
\\gexec
EOF
mismatches="$(psql -X -q -A -t -v ON_ERROR_STOP=1 --no-password --dbname="$database" -f "$work/check.sql")" ||
  fail "the post-restore check could not run"
if [[ -n $mismatches ]]; then
  indent <<<"$mismatches" >&2
  fail "the restored database differs from the backup"
fi
echo "restore: checked: all $tables tables have the backup's row counts"
vacuumdb --analyze-only --quiet --jobs="$workers" --no-password --dbname="$database"
echo "restore: done in $((SECONDS - started))s: $(basename "$backup") (database $database: $tables tables, $rows rows)"
