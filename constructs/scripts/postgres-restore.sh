# Restore a backup written by postgres-backup.sh into the running PostgreSQL server:
# every database it holds (Sentry's and, in a backup of the whole in-cluster server, the
# others), the roles (when the backup has them and they may be restored) and, on
# request, the filestore. See the restore runbook in docs/operations.md: Sentry must be
# scaled to 0 first, and this script refuses to run while other clients are connected.
#
# 1. choose: RESTORE_FILE is "latest" (the newest backup by its UTC time stamp) or a
#    backup's name in BACKUP_DIR (sentry-YYYYMMDDTHHMMSSZ);
# 2. verify before touching the server: every file matches MD5SUMS and no file is
#    missing or extra (the backup read everything back before it wrote MD5SUMS, so an
#    unchanged backup is a verified one), pg_restore reads each database's table of
#    contents, and its .rows file has a row count for exactly the tables in it;
# 3. check, before anything changes, that PGUSER may do all the restore will do
#    (below); else refuse, saying what is missing;
# 4. wait up to RESTORE_WAIT_SECONDS for other client sessions to end, else refuse;
# 5. replay: roles.sql with psql (CREATE ROLE fails for roles that exist, and the
#    ALTER ROLE that follows resets their attributes and password: exactly those
#    errors are allowed), then each database (below); then, with RESTORE_FILESTORE_DIR,
#    replace the filestore's contents with the archive;
# 6. check every table's row count against the backup's, then ANALYZE (a dump carries
#    no planner statistics).
#
# How a database is replayed depends on who restores it:
# - a superuser (the in-cluster server): pg_restore --create --clean with RESTORE_JOBS
#   workers drops the database and creates it again from the backup (a restore into
#   the old one would keep tables a later migration added), stopping at the first error;
# - anyone else (a managed server's owner role, which typically may not create
#   databases: --create --clean would drop the database and then fail to create it):
#   in place, in ONE transaction: everything in the database is dropped (every schema
#   but public; the tables, views, sequences, routines and types in public; not the
#   extensions), then the backup is replayed into it (without the entries of the
#   extensions the database has). Any error rolls all of it back: a failed restore
#   leaves the database as it was. This needs CONNECT to the database, its ownership
#   (or membership in its owner role), CREATE in it and in public, every schema but
#   public and everything in public belonging to the user (or a role it is a member
#   of), and every extension of the backup already in the database; a database that
#   does not exist yet needs CREATEDB. One transaction: no parallel workers.
#
# Environment: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (the database to connect
# to first, normally postgres; the restored databases' names come from the backup),
# BACKUP_DIR, RESTORE_FILE, RESTORE_WAIT_SECONDS, RESTORE_JOBS, RESTORE_ROLES (auto:
# when the backup has roles and PGUSER is a superuser; yes; no), RESTORE_FILESTORE_DIR
# (empty: leave the filestore alone). Writes only to $TMPDIR (default /tmp) and the
# filestore.
#
# Client tools: restore with a pg_restore at least as new as the pg_dump that wrote
# the backup (the same image, in the manifests; 15 in the tests). Both 9.6 and 15
# print `pg_restore --list` lines as "ID; TABLEOID OID TYPE SCHEMA NAME OWNER", which
# the checks rely on; psql's \gexec, which they use, exists from 9.6 on.
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
# psql in database $1, named by PGDATABASE, which libpq never reads as a connection string
# (a --dbname holding "=" would be).
sql_in() {
  local db="$1"
  shift
  PGDATABASE="$db" psql -X -q -A -t -v ON_ERROR_STOP=1 --no-password "$@"
}

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
# The databases: db/ (Sentry's), then databases/1/, 2/, ... (the rest of the server).
dumps=(db)
while [[ -d $backup/databases/${#dumps[@]} ]]; do dumps+=("databases/${#dumps[@]}"); done
names=()
tables=0
rows=0
for k in "${!dumps[@]}"; do
  dump="${dumps[k]}"
  pg_restore --list "$backup/$dump" >"$work/toc.$k" 2>&1 || corrupt "pg_restore cannot read the table of contents of $dump"
  name="$(sed -n -E 's/^;[[:space:]]+dbname: (.*)$/\1/p' "$work/toc.$k")"
  [[ -n $name ]] || corrupt "the table of contents of $dump names no database"
  for other in "${names[@]}"; do [[ $other != "$name" ]] || corrupt "it holds database $name twice"; done
  names+=("$name")
  # ID <TAB> "schema name owner" <TAB> rows, for every table's data, in TOC order.
  sed -n -E 's/^([0-9]+); [0-9]+ [0-9]+ TABLE DATA (.*)$/\1\t\2/p' "$work/toc.$k" >"$work/data.$k"
  cmp -s <(cut -f1 "$work/data.$k") <(cut -f1 "$backup/$dump.rows") ||
    corrupt "$dump.rows does not match the table of contents of $dump"
  paste "$work/data.$k" <(cut -f2 "$backup/$dump.rows") >"$work/expected.$k"
  tables=$((tables + $(wc -l <"$work/expected.$k")))
  rows=$((rows + $(awk -F '\t' '{ n += $3 } END { printf "%d", n }' "$work/expected.$k")))
done
listed="database$( ((${#names[@]} == 1)) || echo s) $(printf '%s, ' "${names[@]}" | sed 's/, $//')"

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
echo "restore: verified: $listed ($tables tables, $rows rows)$([[ $with_roles == 1 ]] && echo ", roles")$([[ -n $filestore ]] && echo ", filestore")"

# --- 3. what the user may do, before anything changes --------------------------------
refuse() { fail "$*; nothing was changed"; }
# How each database is replayed: recreate (a superuser), inplace, or create (a database
# that does not exist yet: created empty, then in place).
modes=()
if [[ $superuser == t ]]; then
  for k in "${!names[@]}"; do modes+=(recreate); done
else
  createdb="$(sql -c "SELECT rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = current_user")"
  for k in "${!names[@]}"; do
    name="${names[k]}"
    facts="$(sql -v name="$name" <<'SQL'
SELECT pg_catalog.pg_has_role(current_user, datdba, 'MEMBER'), pg_catalog.pg_get_userbyid(datdba),
       pg_catalog.has_database_privilege(oid, 'CONNECT'), pg_catalog.has_database_privilege(oid, 'CREATE')
  FROM pg_catalog.pg_database WHERE datname = :'name'
SQL
    )" || refuse "cannot read what $user may do in database $name"
    : >"$work/extensions.$k"
    if [[ -z $facts ]]; then
      [[ $createdb == t ]] ||
        refuse "database $name does not exist, and $user may not create databases (CREATEDB): create it, owned by $user, then run the restore again"
      modes+=(create)
      continue
    fi
    IFS='|' read -r owns owner connect create <<<"$facts"
    [[ $owns == t ]] ||
      refuse "$user is not a superuser and does not own database $name (its owner is $owner): restore as its owner or as a superuser"
    [[ $connect == t ]] || refuse "$user may not connect to database $name (CONNECT)"
    [[ $create == t ]] || refuse "$user may not create schemas in database $name (CREATE)"
    # In place, everything in the database is dropped: it must all be droppable by this
    # user (extension members go with their extension, which stays).
    problems="$(sql_in "$name" -f - <<'SQL'
WITH objects AS (
  SELECT pg_catalog.format('schema %I', n.nspname) AS what, n.nspowner AS owner,
         'pg_catalog.pg_namespace'::pg_catalog.regclass AS classid, n.oid
    FROM pg_catalog.pg_namespace n
   WHERE n.nspname NOT IN ('public', 'information_schema') AND n.nspname !~ '^pg_'
  UNION ALL
  SELECT pg_catalog.format('%s public.%I', CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
           WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'type' ELSE 'table' END, c.relname),
         c.relowner, 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  UNION ALL
  SELECT o.type || ' ' || o.identity, p.proowner, 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace,
         pg_catalog.pg_identify_object('pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, 0) o
   WHERE n.nspname = 'public'
  UNION ALL
  SELECT pg_catalog.format('type public.%I', t.typname), t.typowner, 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
   WHERE n.nspname = 'public' AND t.typtype IN ('d', 'e', 'r')
)
SELECT pg_catalog.format('%s belongs to %s', what, pg_catalog.pg_get_userbyid(owner)) FROM objects o
 WHERE NOT pg_catalog.pg_has_role(current_user, owner, 'MEMBER')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.oid AND d.deptype = 'e')
UNION ALL
SELECT current_user || ' may not create objects in schema public (CREATE)'
  FROM pg_catalog.pg_namespace WHERE nspname = 'public' AND NOT pg_catalog.has_schema_privilege(oid, 'CREATE')
ORDER BY 1;
SQL
    )" || refuse "cannot connect to database $name as $user"
    if [[ -n $problems ]]; then
      echo "restore: in place, everything in database $name is dropped first, but $user may not drop:" >&2
      head -n 20 <<<"$problems" | indent >&2
      refuse "restore as a superuser, or make $user the owner of these"
    fi
    sql_in "$name" -c "SELECT extname FROM pg_catalog.pg_extension" >"$work/extensions.$k" ||
      refuse "cannot list the extensions of database $name"
    modes+=(inplace)
  done
  # The backup's extensions ("ID; 3079 OID EXTENSION - NAME " in its table of contents,
  # with an empty owner) must be there already: creating one takes a superuser (or, from
  # PostgreSQL 13 on, a trusted extension and CREATE), which the in-place replay cannot
  # promise without trying.
  for k in "${!names[@]}"; do
    missing="$(sed -n -E 's/^[0-9]+; [0-9]+ [0-9]+ EXTENSION - (.*) $/\1/p' "$work/toc.$k" |
      grep -v -x -F -f "$work/extensions.$k" || true)"
    [[ -z $missing ]] ||
      refuse "database ${names[k]} lacks the extension(s) $(paste -s -d ' ' <<<"$missing") of the backup, and $user is not a superuser: create them in it (CREATE EXTENSION, as a user who may), then run the restore again"
  done
fi

# --- 4. no other clients ------------------------------------------------------------
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

# --- 5. replay ------------------------------------------------------------------------
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
# In place: drop what the database holds, in the transaction that replays the backup.
# (Extension members stay with their extension; step 3 checked the owners.)
cat >"$work/drop.sql" <<'SQL'
SET client_min_messages = warning;
SELECT pg_catalog.format('DROP SCHEMA %I CASCADE', n.nspname) FROM pg_catalog.pg_namespace n
 WHERE n.nspname NOT IN ('public', 'information_schema') AND n.nspname !~ '^pg_'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
                    AND d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objid = n.oid)
\gexec
SELECT pg_catalog.format('DROP %s IF EXISTS %s CASCADE', kind, name) FROM (
  SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
           WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS kind,
         pg_catalog.format('public.%I', c.relname) AS name,
         'pg_catalog.pg_class'::pg_catalog.regclass AS classid, c.oid, 1 AS step
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  UNION ALL
  SELECT pg_catalog.upper(o.type), o.identity, 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, 2
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace,
         pg_catalog.pg_identify_object('pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, 0) o
   WHERE n.nspname = 'public'
  UNION ALL
  SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.format('public.%I', t.typname),
         'pg_catalog.pg_type'::pg_catalog.regclass, t.oid, 3
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
   WHERE n.nspname = 'public' AND t.typtype IN ('d', 'e', 'r')
) x
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = x.classid AND d.objid = x.oid AND d.deptype = 'e')
 ORDER BY step
\gexec
SQL
restore_in_place() {
  local k="$1" name="${names[$1]}" dump="$backup/${dumps[$1]}"
  # The backup without the extensions the database has, nor their comments (which only
  # an extension's owner may set): those stay as they are.
  pg_restore --list "$dump" >"$work/toc.in-place"
  awk 'NR == FNR { have[$0]; next }
    { name = "" }
    match($0, /^[0-9]+; [0-9]+ [0-9]+ EXTENSION - /) { name = substr($0, RLENGTH + 1) }
    match($0, /^[0-9]+; [0-9]+ [0-9]+ COMMENT - EXTENSION /) { name = substr($0, RLENGTH + 1) }
    { sub(/ $/, "", name); if (name != "" && name in have) $0 = ";" $0; print }' \
    "$work/extensions.$k" "$work/toc.in-place" >"$work/list.$k"
  # One transaction (psql --single-transaction with ON_ERROR_STOP): the drops, then the
  # backup as SQL. If pg_restore fails, perhaps in the middle of a table's data, the
  # lines after it end any COPY and raise an error, so that psql rolls everything back
  # instead of committing a part at the end of its input.
  {
    cat "$work/drop.sql"
    if ! pg_restore --no-password --file=- --use-list="$work/list.$k" "$dump" 2>"$work/pg_restore.err"; then
      printf '\n\\.\nDO $$ BEGIN RAISE EXCEPTION %s; END $$;\n' "'pg_restore failed: rolling back'"
    fi
  } | sql_in "$name" --single-transaction -f - >/dev/null 2>"$work/psql.err" || {
    cat "$work/pg_restore.err" "$work/psql.err" | indent >&2
    fail "restoring database $name in place failed and was rolled back: it is as it was$([[ -z $restored ]] || echo "; restored before it: $restored")"
  }
}
restored=""
for k in "${!names[@]}"; do
  name="${names[k]}"
  if [[ ${modes[k]} == recreate ]]; then
    echo "restore: restoring database $name with $workers jobs"
    # --create --clean: drop the database and create it again from the backup (a
    # restore into the old one would keep tables a later migration added); from
    # template1 when it is the database this script connects to.
    # --exit-on-error: no error is expected here, so the first one stops the restore.
    from="$maintenance"
    [[ $name != "$maintenance" ]] || from=template1
    pg_restore --create --clean --if-exists --exit-on-error --jobs="$workers" --no-password \
      --dbname="$from" "$backup/${dumps[k]}" || fail "pg_restore exited $? on database $name; $partly"
  else
    if [[ ${modes[k]} == create ]]; then
      echo "restore: creating database $name, owned by $user"
      sql -v name="$name" <<<"SELECT pg_catalog.format('CREATE DATABASE %I', :'name') \gexec" >/dev/null ||
        fail "could not create database $name$([[ -z $restored ]] || echo "; restored before it: $restored")"
    fi
    echo "restore: restoring database $name in place, in one transaction ($user is not a superuser)"
    restore_in_place "$k"
  fi
  restored="${restored:+$restored, }$name"
done
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

# --- 6. check, then analyze --------------------------------------------------------------
# Find each table by what `pg_restore --list` prints for it ("schema name owner";
# names are not quoted there, so the catalog decides), then compare its row count
# (ONLY: a table's data in the backup never includes its inheritance children's).
# Prints one line per table that cannot be found or has another count.
for k in "${!names[@]}"; do
  name="${names[k]}"
  sed 's/\\/\\\\/g' "$work/expected.$k" >"$work/expected.copy"
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
  mismatches="$(sql_in "$name" -f "$work/check.sql")" || fail "the post-restore check of database $name could not run"
  if [[ -n $mismatches ]]; then
    indent <<<"$mismatches" >&2
    fail "the restored database $name differs from the backup"
  fi
  PGDATABASE="$name" vacuumdb --analyze-only --quiet --jobs="$workers" --no-password
done
echo "restore: checked: all $tables tables have the backup's row counts"
echo "restore: done in $((SECONDS - started))s: $(basename "$backup") ($listed: $tables tables, $rows rows)"
