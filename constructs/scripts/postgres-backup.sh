# Dump every database and the roles of the PostgreSQL server into a compressed,
# verified file in BACKUP_DIR, then keep only the newest BACKUP_KEEP good dumps.
# A dump counts only after it is complete and verified: it is written under a
# temporary name and renamed at the end, so a failed or killed run never leaves
# anything that looks like a backup.
set -euo pipefail
dir="${BACKUP_DIR:-/backups}"
keep="${BACKUP_KEEP:-7}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
final="$dir/sentry-$stamp.sql.gz"
partial="$dir/.partial-sentry-$stamp.sql.gz"
trap 'rm -f "$partial"' EXIT

rm -f "$dir"/.partial-sentry-*.sql.gz
echo "backup: dumping databases and roles from ${PGHOST}:${PGPORT:-5432}"
pg_dumpall --clean --if-exists | gzip -6 > "$partial"

# pg_dumpall writes this line last, only when it finished every database.
gzip -t "$partial"
if ! gzip -dc "$partial" | tail -n 5 | grep -q '^-- PostgreSQL database cluster dump complete'; then
  echo "backup: verification failed: the dump is incomplete" >&2
  exit 1
fi
mv "$partial" "$final"
echo "backup: wrote $final ($(wc -c < "$final") bytes)"

# Retention counts verified dumps only; the one just written is always among the newest.
ls -1 "$dir"/sentry-*.sql.gz | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
  echo "backup: removing $old (keeping the newest $keep)"
  rm -f "$old"
done
