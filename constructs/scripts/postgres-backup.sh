# Back up the Sentry database (PGDATABASE) and, with BACKUP_DATABASES=all, every other
# database of the server, the roles (when allowed) and, optionally, the Sentry filestore
# into one verified directory in BACKUP_DIR, then keep the newest BACKUP_KEEP.
#
# A backup is the directory sentry-YYYYMMDDTHHMMSSZ (UTC) holding:
#   db/               the Sentry database in pg_dump's directory format: toc.dat and
#                     one zlib-compressed file per table, written by BACKUP_JOBS workers
#                     in parallel and restorable in parallel (pg_restore -j);
#   db.rows           each of its tables' row count, as counted in the verification;
#   databases/N/, databases/N.rows
#                     the same for each other database (BACKUP_DATABASES=all), N = 1, 2,
#                     ... in name order; its name is in its table of contents. What
#                     pg_dumpall would hold, but dumped in parallel: every database
#                     that accepts connections and is not a template (template0 and
#                     template1 are the server's own);
#   roles.sql         pg_dumpall --globals-only (absent when roles are not dumped);
#   filestore.tar.gz  the filestore (absent without BACKUP_FILESTORE_DIR);
#   MD5SUMS           a checksum of every other file, written last.
#
# Why a backup can be trusted: it only gets its final name after pg_dump and pg_dumpall
# exited 0, tar exited 0 (or 1, a file that changed while it was read: a warning), and
# a verification read everything back (from the page cache, as the read-back of the
# earlier single-file format did): pg_restore parsed the
# table of contents, every table's data file decompressed with a good gzip CRC and
# ended with COPY's end-of-data marker (\. and two empty lines, what pg_dump writes
# after a table's last row), the roles file ended with pg_dumpall's completion
# trailer and the filestore archive listed in full. Until then it is a hidden
# .partial-* directory with a per-run name, removed on failure and on SIGTERM. The
# restore checks MD5SUMS (accidental damage since the backup) before it touches the
# server, and compares every table's row count with db.rows afterwards.
#
# One run at a time: a run holds flock on BACKUP_DIR/.backup.lock (the kernel drops
# it when the process dies, so a killed run leaves no stale lock). A manual run that
# starts beside the scheduled one waits up to BACKUP_LOCK_WAIT_SECONDS for it and
# never touches its partial directory. Leftovers of killed runs are removed only
# while holding the lock, when no other run can be writing.
#
# Space: before dumping, the run estimates the space it needs (the newest backup's
# size plus 10%). If the volume has less free, it removes the oldest backups first,
# as far as retention would after this run anyway (down to BACKUP_KEEP - 1, and
# never the newest one); if that is still not enough it fails and says how much is
# needed, instead of filling the volume.
#
# Environment: the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE),
# BACKUP_DATABASES (all: every database, which needs a superuser, the stack's own server;
# one: PGDATABASE only, a managed server, whose owner role may not read the others and
# whose other databases are not the stack's), BACKUP_DIR, BACKUP_KEEP (>= 1), BACKUP_COMPRESSION_LEVEL (zlib 1-9), BACKUP_JOBS
# (parallel pg_dump workers), BACKUP_ROLES (auto: only when PGUSER is a superuser,
# as a managed PostgreSQL's user is not; yes; no), BACKUP_FILESTORE_DIR (empty: no
# filestore), BACKUP_LOCK_WAIT_SECONDS, BACKUP_LOCK_WAIT_TIMEOUT_MS (how long pg_dump
# may wait for a table lock).
#
# Runs with the client tools of postgres:9.6 (the manifests; a Debian image: bash
# 4.4 or later, mawk, GNU tar, util-linux flock) and of PostgreSQL 15 (the tests). Both
# pg_dump versions write the same directory layout: toc.dat, <dumpId>.dat.gz per
# table ending in "\.\n\n\n", and the same `pg_restore -l` line format.
set -euo pipefail
umask 077 # backups hold every row and the roles' password hashes

dir="${BACKUP_DIR:?BACKUP_DIR is required}"
database="${PGDATABASE:?PGDATABASE is required}"
keep="${BACKUP_KEEP:-7}"
level="${BACKUP_COMPRESSION_LEVEL:-2}"
workers="${BACKUP_JOBS:-2}"
roles="${BACKUP_ROLES:-auto}"
scope="${BACKUP_DATABASES:-one}"
filestore="${BACKUP_FILESTORE_DIR:-}"
lock_wait_s="${BACKUP_LOCK_WAIT_SECONDS:-3600}"
lock_wait_ms="${BACKUP_LOCK_WAIT_TIMEOUT_MS:-600000}"
usage() { echo "backup: $*" >&2; exit 2; }
[[ $keep =~ ^[1-9][0-9]*$ ]] || usage "BACKUP_KEEP must be a whole number >= 1, not '$keep'"
[[ $level =~ ^[1-9]$ ]] || usage "BACKUP_COMPRESSION_LEVEL must be 1-9, not '$level'"
[[ $workers =~ ^[1-9][0-9]*$ ]] || usage "BACKUP_JOBS must be a whole number >= 1, not '$workers'"
[[ $roles =~ ^(auto|yes|no)$ ]] || usage "BACKUP_ROLES must be auto, yes or no, not '$roles'"
[[ $scope =~ ^(all|one)$ ]] || usage "BACKUP_DATABASES must be all or one, not '$scope'"
[[ $lock_wait_s =~ ^[0-9]+$ ]] || usage "BACKUP_LOCK_WAIT_SECONDS must be a number"
[[ $lock_wait_ms =~ ^[0-9]+$ ]] || usage "BACKUP_LOCK_WAIT_TIMEOUT_MS must be a number"
[[ -z $filestore || -d $filestore ]] || usage "BACKUP_FILESTORE_DIR $filestore is not a directory"

partial=""
work=""
cleanup() {
  # Stop background work (the dump, verification workers) before removing its output.
  # shellcheck disable=SC2046 # PIDs, one word each
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  [[ -z $partial ]] || rm -rf "$partial"
  [[ -z $work ]] || rm -rf "$work"
}
# As PID 1 of its container, bash ignores SIGTERM unless it traps it: without this
# trap a deadline or pod deletion would wait for the SIGKILL and leave the partial dir.
trap cleanup EXIT
trap 'echo "backup: interrupted, removing ${partial:-nothing}" >&2; exit 143' TERM INT
fail() {
  echo "backup: FAILED: $*; no backup was written" >&2
  exit 1
}
mib() { echo "$((($1 + 1048575) / 1048576)) MiB"; }
describe_databases() {
  local others=$((${#names[@]} - 1))
  printf 'database %s' "$database"
  ((others == 0)) || printf ' and %d more (%s)' "$others" "$(printf '%s, ' "${names[@]:1}" | sed 's/, $//')"
}
# df's KiB times 1024 in bash: mawk prints large products in exponent notation.
free_bytes() { echo $(($(df -Pk "$dir" | awk 'NR == 2 { print $4 }') * 1024)); }

# --- one run at a time ------------------------------------------------------------
exec 9>>"$dir/.backup.lock"
if ! flock -n 9; then
  echo "backup: another backup run holds $dir/.backup.lock; waiting up to ${lock_wait_s}s"
  flock -w "$lock_wait_s" 9 || fail "another backup run still holds $dir/.backup.lock after ${lock_wait_s}s"
fi
# Holding the lock, no other run is writing: hidden directories are leftovers of
# SIGKILLed runs.
rm -rf "$dir"/.partial-sentry-*

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
final="$dir/sentry-$stamp"
[[ ! -e $final ]] || fail "$final already exists"
work="$(mktemp -d "${TMPDIR:-/tmp}/backup.XXXXXX")"

shopt -s nullglob
list_backups() { backups=("$dir"/sentry-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z); }

# --- space: prune before dumping rather than fail for good -------------------------
list_backups
if ((${#backups[@]} > 0)); then
  newest="${backups[-1]}"
  last_bytes=$(($(du -sk "$newest" | cut -f1) * 1024))
  need=$((last_bytes + last_bytes / 10))
  floor=$((keep > 1 ? keep - 1 : 1)) # what retention keeps beside the new backup; never 0
  while (($(free_bytes) < need && ${#backups[@]} > floor)); do
    echo "backup: $(mib "$(free_bytes)") free, about $(mib "$need") needed: removing ${backups[0]} before dumping (keeping the newest $floor)"
    rm -rf "${backups[0]}"
    list_backups
  done
  free=$(free_bytes)
  if ((free < need)); then
    fail "$dir has $(mib "$free") free, and this backup needs about $(mib "$need") (the newest, $(basename "$newest"), is $(mib "$last_bytes")); retention (keep: $keep) allows no more removals: grow the backup volume or lower keep"
  fi
fi

# --- dump ---------------------------------------------------------------------------
partial="$(mktemp -d "$dir/.partial-sentry-$stamp.XXXXXX")"
superuser="$(psql -X -A -t -q --no-password -c "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")" ||
  fail "cannot connect to ${PGHOST:-localhost}:${PGPORT:-5432}/$database as ${PGUSER:-?}"
case $roles in
  yes) with_roles=1 ;;
  no) with_roles=0 ;;
  auto) [[ $superuser == t ]] && with_roles=1 || with_roles=0 ;;
esac
# The databases and where each goes: Sentry's first, in db/.
names=("$database")
dumps=(db)
if [[ $scope == all ]]; then
  [[ $superuser == t ]] ||
    fail "BACKUP_DATABASES is all, but ${PGUSER:-?} is not a superuser and cannot read every database"
  # NUL-separated: a database name may hold any character but NUL. (psql 15 ends the last
  # name with a NUL as well, 9.6 with a newline: that one is cut.)
  psql -X -A -t -q -0 --no-password -c "SELECT datname FROM pg_catalog.pg_database
    WHERE datallowconn AND NOT datistemplate AND datname <> pg_catalog.current_database() ORDER BY datname" \
    >"$work/databases" || fail "cannot list the databases of ${PGHOST:-localhost}:${PGPORT:-5432}"
  readarray -d '' others <"$work/databases"
  if ((${#others[@]} > 0)); then
    others[-1]="${others[-1]%$'\n'}"
    mkdir "$partial/databases"
  fi
  for i in "${!others[@]}"; do
    names+=("${others[i]}")
    dumps+=("databases/$((i + 1))")
  done
fi
echo "backup: dumping $(describe_databases) of ${PGHOST:-localhost}:${PGPORT:-5432} as ${PGUSER:-?}" \
  "($workers jobs, zlib $level; roles: $([[ $with_roles == 1 ]] && echo yes || echo no); filestore: ${filestore:-no})"
started=$SECONDS

if ((with_roles)); then
  # Roles without --clean: the restore creates missing roles and resets the attributes
  # and passwords of existing ones, and never drops a role.
  pg_dumpall --globals-only --no-password >"$partial/roles.sql" || fail "pg_dumpall --globals-only exited $?"
fi

# The filestore archive is made while pg_dump runs: tar reads files, pg_dump mostly
# waits for the server and compresses. GNU tar exits 1 when a file changed while it
# was read (Sentry may write during a backup): the archive is complete, so that is a
# warning; 2 (unreadable or vanished files) is a failure.
if [[ -n $filestore ]]; then
  { tar -C "$filestore" --exclude=./lost+found -cf - . 2>"$work/tar.err" && echo 0 >"$work/tar.status" || echo $? >"$work/tar.status"; } 9>&- |
    gzip "-$level" >"$partial/filestore.tar.gz" 9>&- &
  tar_job=$!
fi

# --no-password: fail rather than prompt. --lock-wait-timeout: fail instead of queueing
# behind a long-held exclusive lock (e.g. a migration) until the deadline. In the
# background, so that `wait` returns at once on SIGTERM. One database after the other,
# each with all the workers. The name goes in PGDATABASE, which libpq never reads as a
# connection string (a --dbname could be one).
# (9>&-: the lock belongs to this script, not to children that might outlive it.)
for i in "${!dumps[@]}"; do
  PGDATABASE="${names[i]}" pg_dump --format=directory --jobs="$workers" --compress="$level" \
    --file="$partial/${dumps[i]}" --no-password --lock-wait-timeout="$lock_wait_ms" 9>&- &
  status=0
  wait "$!" || status=$?
  if ((status != 0)); then
    free=$(free_bytes)
    size="$(PGDATABASE="${names[i]}" psql -X -A -t -q --no-password \
      -c "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())" 2>/dev/null || echo 0)"
    fail "pg_dump exited $status on database ${names[i]} ($(mib "$free") free on $dir; the database is $(mib "${size:-0}") uncompressed, the newest backup $([[ -n ${last_bytes:-} ]] && mib "$last_bytes" || echo none))"
  fi
done
if [[ -n $filestore ]]; then
  wait "$tar_job" || fail "writing the filestore archive failed (gzip exited $?)"
  case "$(cat "$work/tar.status")" in
    0) ;;
    1) echo "backup: warning: a file changed while it was archived (Sentry wrote during the backup): $(cat "$work/tar.err")" >&2 ;;
    *) cat "$work/tar.err" >&2; fail "archiving the filestore $filestore failed (tar exited $(cat "$work/tar.status"))" ;;
  esac
fi
echo "backup: dump took $((SECONDS - started))s, verifying"
verify_started=$SECONDS

# --- verify: read everything back -----------------------------------------------------
# One worker per data file, at most $workers at a time. A worker writes its row count
# only if the whole pipeline succeeded: gzip's CRC and length check AND the
# end-of-data marker (pipefail makes a bad CRC fail the pipeline even though the
# decompressed text looks complete).
verify_data() {
  local rows
  if rows="$(gzip -dc -- "$2/$1.dat.gz" |
    awk '{ l3 = l2; l2 = l1; l1 = $0 } END { if (NR < 3 || l3 != "\\." || l2 != "" || l1 != "") exit 1; print NR - 3 }')"; then
    echo "$rows" >"$work/rows/$1"
  else
    echo "backup: $2/$1.dat.gz is damaged or incomplete" >&2
  fi
}
tables=0
rows=0
for dump in "${dumps[@]}"; do
  pg_restore --list "$partial/$dump" >"$work/toc" ||
    fail "pg_restore cannot read the table of contents of $partial/$dump"
  sed -n -E 's/^([0-9]+); [0-9]+ [0-9]+ TABLE DATA .*/\1/p' "$work/toc" >"$work/ids"
  rm -rf "$work/rows"
  mkdir "$work/rows"
  while read -r id; do
    while (($(jobs -p -r | wc -l) >= workers)); do wait -n || true; done
    verify_data "$id" "$partial/$dump" &
  done <"$work/ids"
  wait
  : >"$partial/$dump.rows"
  while read -r id; do
    [[ -f $work/rows/$id ]] || fail "verification: table data $id of $partial/$dump is damaged or incomplete"
    n="$(cat "$work/rows/$id")"
    printf '%s\t%s\n' "$id" "$n" >>"$partial/$dump.rows"
    tables=$((tables + 1))
    rows=$((rows + n))
  done <"$work/ids"
done
if ((with_roles)); then
  # The last line that is not blank, "--" or (15.14 and later) \unrestrict.
  awk '$0 != "" && $0 != "--" && !/^\\unrestrict / { last = $0 }
    END { exit !(last == "-- PostgreSQL database cluster dump complete") }' "$partial/roles.sql" ||
    fail "verification: $partial/roles.sql lacks pg_dumpall's completion trailer"
fi
files=0
if [[ -n $filestore ]]; then
  files="$(gzip -dc "$partial/filestore.tar.gz" | tar -tf - | wc -l)" ||
    fail "verification: the filestore archive $partial/filestore.tar.gz is damaged"
fi
(cd "$partial" && find . -type f -printf '%P\0' | sort -z | xargs -0 -r md5sum) >"$work/MD5SUMS" ||
  fail "could not write the checksums"
mv "$work/MD5SUMS" "$partial/MD5SUMS"
echo "backup: verified in $((SECONDS - verify_started))s"
sync -f "$partial/MD5SUMS"

mv "$partial" "$final"
partial=""
sync -f "$dir"
bytes=$(($(du -sk "$final" | cut -f1) * 1024))
echo "backup: wrote $final ($bytes bytes; ${#names[@]} database$( ((${#names[@]} == 1)) || echo s), $tables tables, $rows rows$([[ $with_roles == 1 ]] && echo ", roles")$([[ -n $filestore ]] && echo ", filestore: $files entries"), $((SECONDS - started))s)"

# --- retention ------------------------------------------------------------------------
# Keep the newest $keep backups by their UTC time stamp. Only verified backups carry
# this name, and the one just written is never removed (even if a wrong clock made it
# sort older than the others), so the newest good backup always survives.
list_backups
excess=$((${#backups[@]} - keep))
for old in "${backups[@]}"; do # the glob sorts oldest first
  ((excess > 0)) || break
  [[ $old == "$final" ]] && continue
  echo "backup: removing $old (keeping the newest $keep)"
  rm -rf "$old"
  excess=$((excess - 1))
done
list_backups
echo "backup: done; ${#backups[@]} backups in $dir, newest $(basename "${backups[-1]}"), $(mib "$(free_bytes)") free"

# --- metrics ----------------------------------------------------------------------------
# With the stack's statsd exporter (sentry.metrics), report the newest verified backup's
# time and size as gauges, so an alert can fire when backups stop. bash's /dev/udp sends
# one datagram with no client in the image; a lost datagram only delays the metric, so
# it never fails a backup that was written.
if [[ -n ${BACKUP_STATSD_HOST:-} ]]; then
  printf 'sentry_backup.last_success_timestamp_seconds:%s|g\nsentry_backup.size_bytes:%s|g\n' \
    "$(date +%s)" "$bytes" >"/dev/udp/$BACKUP_STATSD_HOST/${BACKUP_STATSD_PORT:-9125}" ||
    echo "backup: could not send the metrics to $BACKUP_STATSD_HOST (the backup is fine)" >&2
fi
