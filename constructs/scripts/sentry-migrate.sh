# The migration Job's one step, in the Sentry image: migrate the database, create the
# superuser on the first successful run only, and record both, all while holding one
# PostgreSQL advisory lock. Every configuration change makes a new Job (its name follows
# its pod template), so an older Job may still be running or retrying when a new one
# starts: without the lock, two `sentry upgrade` could migrate at once and two bootstraps
# could race. With it, the second Job waits, then finds the work done.
#
# Why one process: an advisory lock belongs to a database session, and a session ends
# with the process that holds it, so the lock cannot span containers. The Sentry image has
# no psql, but it has Python 2.7 and psycopg2 (Sentry's own database driver): the lock
# holder below is a small Python program that runs the Sentry commands as its children
# and keeps its session for the whole sequence:
# 1. take the lock (pg_try_advisory_lock, polled, saying who holds it meanwhile);
# 2. `sentry upgrade --noinput`;
# 3. one transaction, open until the end: claim the admin bootstrap by inserting its row
#    into k8s_sentry_bootstrap (a primary key decides, not a check before an action);
#    only the Job whose insert went in creates the superuser, and only if auth_user has
#    no such login yet (a database fact, not an error message); its password is set
#    from the Secret while it has none; then the superuser must exist. The same
#    transaction records the image's migrations in k8s_sentry_migrations, which web,
#    worker and cron wait for (wait-for-migrations.sh), and commits both records at once;
#    a failure anywhere rolls both back, so the next run does the bootstrap again;
# 4. the session ends, and with it the lock.
# A bootstrap recorded once is never done again, so an admin renamed or removed in Sentry
# is not created again by a later upgrade. With sentry.create_admin false
# (SENTRY_CREATE_ADMIN) there is no bootstrap at all.
#
# If the session is lost while a Sentry command runs (the server restarted, a network
# cut), another Job may take the lock: the command is stopped and nothing is recorded.
# SIGTERM (a deadline, the Job deleted) is passed on to the running command, and the lock
# is kept until it has exited. The admin password never appears on a command line or in
# the log: `sentry exec` reads a script on stdin that takes it from the environment.
#
# Environment: what sentry.conf.py reads for the database (SENTRY_POSTGRES_HOST,
# SENTRY_POSTGRES_PORT, SENTRY_DB_NAME, SENTRY_DB_USER, SENTRY_DB_PASSWORD; libpq's
# PGSSL* for TLS), SENTRY_MIGRATION_VERSION, SENTRY_CREATE_ADMIN, SENTRY_ADMIN_EMAIL,
# SENTRY_ADMIN_PASSWORD. The program is written for Python 2.7 (the image) and 3 (the
# tests): no f-strings, print as a function, ASCII only.
set -euo pipefail
exec python - <<'PY'
from __future__ import print_function

import os
import signal
import subprocess
import sys
import time

import psycopg2

# The lock's two keys: a constant of this project ("SENT") and 1, the migrations. An
# advisory lock is per database, so Sentry installs in other databases do not contend.
LOCK = (0x53454E54, 1)
POLL_SECONDS = 1
REPORT_SECONDS = 30
HEARTBEAT_SECONDS = 30
# Sets the password only while the user has none, so a password changed in the UI is
# never reset by a later run.
PASSWORD_SCRIPT = """
import os
email = os.environ["SENTRY_ADMIN_EMAIL"]
user = User.objects.get(username=email)
if user.has_usable_password():
    print("migrations: superuser %s already has a password; unchanged" % email)
else:
    user.set_password(os.environ["SENTRY_ADMIN_PASSWORD"])
    user.save()
    print("migrations: password of superuser %s set from the Secret" % email)
"""


def log(message):
    print("migrations: " + message)
    sys.stdout.flush()


def fail(message, code=1):
    print("migrations: FAILED: " + message, file=sys.stderr)
    sys.stderr.flush()
    sys.exit(code)


def setting(value, default=""):
    """A non-secret value without surrounding whitespace; `default` when unset or empty."""
    return (value or "").strip() or default


version = setting(os.environ.get("SENTRY_MIGRATION_VERSION"))
if not version:
    fail("SENTRY_MIGRATION_VERSION is required", 2)
create_admin = setting(os.environ.get("SENTRY_CREATE_ADMIN"), "false") == "true"
email = setting(os.environ.get("SENTRY_ADMIN_EMAIL"))
if create_admin and (not email or not os.environ.get("SENTRY_ADMIN_PASSWORD")):
    fail("SENTRY_ADMIN_EMAIL and SENTRY_ADMIN_PASSWORD are required to create the superuser", 2)

running = [None]  # the Sentry command being run, if any
stopped = [0]  # the signal that asked this program to stop


def on_signal(signum, frame):
    stopped[0] = signum
    child = running[0]
    if child is not None and child.poll() is None:
        # Keep the lock until the command has exited: it is passed the signal and the
        # loop in run() sees it end.
        child.send_signal(signum)
    else:
        fail("stopped by signal %d; nothing was recorded" % signum, 128 + signum)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def connect():
    """A session of its own, with the same server, database and user as Sentry's own
    connection (sentry.conf.py). Keepalives both ways: a client that vanished (its node
    died) lets the server end the session, and the lock, in about a minute instead of the
    kernel's two hours."""
    session = psycopg2.connect(
        host=setting(os.environ.get("SENTRY_POSTGRES_HOST")),
        port=setting(os.environ.get("SENTRY_POSTGRES_PORT"), "5432"),
        dbname=setting(os.environ.get("SENTRY_DB_NAME"), "sentry"),
        user=setting(os.environ.get("SENTRY_DB_USER"), "sentry"),
        password=os.environ.get("SENTRY_DB_PASSWORD") or "",
        application_name="sentry-migrations",
        connect_timeout=30,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    session.autocommit = True
    # A managed server may end idle sessions or idle transactions (settings of the role
    # or the database): this one is idle while Sentry works, and must not lose its lock.
    # Only the settings this server has (idle_session_timeout is PostgreSQL 14 and later).
    session.cursor().execute(
        "SELECT pg_catalog.set_config(s.name, v.value, false) FROM pg_catalog.pg_settings s"
        " JOIN (VALUES ('idle_in_transaction_session_timeout', '0'), ('idle_session_timeout', '0'),"
        " ('statement_timeout', '0'), ('tcp_keepalives_idle', '30'), ('tcp_keepalives_interval', '10'),"
        " ('tcp_keepalives_count', '3')) AS v (name, value) ON v.name = s.name"
    )
    return session


HOLDER = (
    "SELECT a.pid, coalesce(nullif(a.application_name, ''), '-'), coalesce(a.client_addr::text, 'local'),"
    " a.backend_start FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2"
    " AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())"
)


def holding():
    """Whether this session still holds the lock (False once the session is gone)."""
    try:
        cursor.execute(HOLDER + " AND l.pid = pg_catalog.pg_backend_pid()", LOCK)
        return cursor.fetchone() is not None
    except psycopg2.Error as error:
        log("the session holding the lock failed: %s" % str(error).strip())
        return False


def run(args, what, stdin_text=None):
    """Run a Sentry command under the lock; fail unless it exits 0 with the lock still held."""
    log("running %s" % what)
    devnull = open(os.devnull)
    child = subprocess.Popen(
        args, stdin=subprocess.PIPE if stdin_text is not None else devnull, universal_newlines=True
    )
    running[0] = child
    if stdin_text is not None:
        try:
            child.stdin.write(stdin_text)
            child.stdin.close()
        except (IOError, OSError):
            pass  # it exited without reading: its status tells why
    beat = time.time()
    while child.poll() is None:
        time.sleep(0.2)
        if time.time() - beat >= HEARTBEAT_SECONDS:
            beat = time.time()
            if not holding():
                child.terminate()
                child.wait()
                fail("lost the lock while %s ran (another Job may take it): stopped it; nothing was recorded" % what)
    running[0] = None
    devnull.close()
    if stopped[0]:
        fail("stopped by signal %d during %s; nothing was recorded" % (stopped[0], what), 128 + stopped[0])
    if child.returncode != 0:
        fail("%s exited %d; nothing was recorded" % (what, child.returncode))
    if not holding():
        fail("lost the lock while %s ran (another Job may have taken it); nothing was recorded" % what)


def take_lock():
    started = time.time()
    reported = None
    while True:
        cursor.execute("SELECT pg_catalog.pg_try_advisory_lock(%s, %s)", LOCK)
        if cursor.fetchone()[0]:
            log("holding the migration lock (waited %ds)" % (time.time() - started))
            return
        if reported is None or time.time() - reported >= REPORT_SECONDS:
            reported = time.time()
            cursor.execute(HOLDER, LOCK)
            holder = cursor.fetchone()
            who = "pid %s (%s from %s, connected %s)" % holder if holder else "a session that just ended"
            log("waiting for the migration lock, held by %s: another migration Job is running" % who)
        time.sleep(POLL_SECONDS)


def superuser_state():
    """None when auth_user has no user with this login, else whether it is a superuser."""
    cursor.execute("SELECT is_superuser FROM auth_user WHERE username = %s", (email,))
    row = cursor.fetchone()
    return None if row is None else bool(row[0])


def bootstrap_admin():
    state = superuser_state()
    if state is None:
        log("creating superuser %s" % email)
        args = ["sentry", "createuser", "--no-input", "--superuser", "--email", email, "--no-password"]
        run(args, "sentry createuser")
        state = superuser_state()
        if state is None:
            fail("sentry createuser exited 0, but auth_user has no user %s; nothing was recorded" % email)
    else:
        # An earlier run created it and failed before its record was committed, or it was
        # made by hand: it is not created again.
        log("user %s already exists (superuser: %s); not created again" % (email, "yes" if state else "no"))
    run(["sentry", "exec"], "sentry exec (the password)", PASSWORD_SCRIPT)


try:
    connection = connect()
    cursor = connection.cursor()
    take_lock()
    run(["sentry", "upgrade", "--noinput"], "sentry upgrade")
    cursor.execute("BEGIN")
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS k8s_sentry_migrations ("
        " version text PRIMARY KEY, completed_at timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE IF NOT EXISTS k8s_sentry_bootstrap ("
        " item text PRIMARY KEY, done_at timestamptz NOT NULL DEFAULT now())"
    )
    if create_admin:
        cursor.execute(
            "INSERT INTO k8s_sentry_bootstrap (item) VALUES ('admin') ON CONFLICT (item) DO NOTHING RETURNING item"
        )
        if cursor.fetchone() is not None:
            bootstrap_admin()
            log("recording the admin bootstrap")
        else:
            cursor.execute("SELECT done_at FROM k8s_sentry_bootstrap WHERE item = 'admin'")
            log("admin bootstrap already done at %s; the superuser is not created again" % cursor.fetchone()[0])
    else:
        log("no superuser bootstrap (sentry.create_admin is false)")
    cursor.execute(
        "INSERT INTO k8s_sentry_migrations (version) VALUES (%s)"
        " ON CONFLICT (version) DO UPDATE SET completed_at = now()",
        (version,),
    )
    cursor.execute("COMMIT")
    log("recorded completed migrations for %s" % version)
except psycopg2.Error as error:
    fail("database: %s; nothing was recorded" % str(error).strip())
connection.close()
log("done")
PY
