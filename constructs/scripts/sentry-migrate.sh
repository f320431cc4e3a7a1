# Migrate the database and, on the first successful run only, create the superuser,
# idempotently, so the Job can run again (re-apply, image upgrade, retry) without harm.
# Whether to create it was decided by admin-bootstrap-check.sh (a file on the Job's
# emptyDir); with sentry.create_admin false that step is absent and no admin is made.
# The admin password never appears on a command line: the user is created
# without one and the password is set from the environment by a script that
# `sentry exec` reads on stdin.
set -euo pipefail

echo "migrations: sentry upgrade --noinput"
sentry upgrade --noinput

if [ ! -f "${SENTRY_ADMIN_PENDING_FILE:-/nonexistent}" ]; then
  echo "migrations: superuser bootstrap not needed (done earlier, or sentry.create_admin is false)"
  echo "migrations: done"
  exit 0
fi
email="${SENTRY_ADMIN_EMAIL:?SENTRY_ADMIN_EMAIL is required}"
: "${SENTRY_ADMIN_PASSWORD:?SENTRY_ADMIN_PASSWORD is required}"

echo "migrations: creating superuser $email"
status=0
output=$(sentry createuser --no-input --superuser --email "$email" --no-password 2>&1) || status=$?
printf '%s\n' "$output"
if [ "$status" -ne 0 ]; then
  # Only "this user already exists" counts as success: the unique-key error of
  # older Sentry versions, or the explicit message of newer ones.
  if printf '%s\n' "$output" | grep -qF -e "($email) already exists" -e "User: $email exists"; then
    echo "migrations: superuser $email already exists"
  else
    echo "migrations: createuser failed with status $status" >&2
    exit "$status"
  fi
fi

# Sets the password only while the user has none, so a password changed in
# the UI is never reset by a later run.
sentry exec <<'PY'
import os
email = os.environ["SENTRY_ADMIN_EMAIL"]
user = User.objects.get(username=email)
if user.has_usable_password():
    print("migrations: superuser %s already has a password; unchanged" % email)
else:
    user.set_password(os.environ["SENTRY_ADMIN_PASSWORD"])
    user.save()
    print("migrations: password of superuser %s set from the Secret" % email)
PY
echo "migrations: done"
