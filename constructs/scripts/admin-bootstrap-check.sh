# Decide whether this migration Job creates the superuser: only if no earlier Job
# recorded that it did (mark-migrated.sh records it). So an admin who was renamed or
# removed in Sentry is never created again by a later upgrade. The decision is a file
# on the Job's shared emptyDir, read by the `migrate` step and by mark-migrated.sh.
pending="${SENTRY_ADMIN_PENDING_FILE:?SENTRY_ADMIN_PENDING_FILE is required}"
rm -f "$pending"
done_at=$(psql -X -q -t -A -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE IF NOT EXISTS k8s_sentry_bootstrap (
  item text PRIMARY KEY,
  done_at timestamptz NOT NULL DEFAULT now()
);
SELECT done_at FROM k8s_sentry_bootstrap WHERE item = 'admin';
SQL
) || { echo "admin bootstrap: cannot read k8s_sentry_bootstrap" >&2; exit 1; }
if [ -n "$done_at" ]; then
  echo "admin bootstrap: already done at $done_at; the superuser is not created again"
else
  : >"$pending"
  echo "admin bootstrap: not done yet; this Job creates the superuser"
fi
