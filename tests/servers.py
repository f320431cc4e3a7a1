"""Throwaway database servers for tests that run the shipped scripts for real.

`PostgresServer` runs a private PostgreSQL cluster from the Debian packages
(`/usr/lib/postgresql/<major>/bin`): its own temporary directory, TCP on
127.0.0.1 only (no Unix socket, so paths never hit the socket-name limit), a
free port, and one superuser that logs in with a password, like the stack's
`sentry` role in the postgres image (which has no `postgres` role)::

    with PostgresServer(superuser="sentry", password="secret") as pg:
        pg.psql("CREATE TABLE t (x int)")
        subprocess.run(["pg_dumpall"], env={**pg.env(), "PATH": pg.path()}, check=True)

Starting is fast: `initdb` runs once per process and configuration, later servers
copy that cluster (about 0.15 s instead of 1 s). Durability is switched off
(fsync, full_page_writes): a crash loses nothing a test cares about.

initdb and the server refuse to run as root. As root (the CI), every server
command runs as the `postgres` account through `runuser`, and the directories are
handed to it; as any other user they run as that user.

A server can be stopped and started again on the same port (to test clients that
wait for it, or fail while it is down). Everything is removed by `cleanup()`, by
leaving the `with` block, or at interpreter exit for servers a test forgot.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

__all__ = ["PostgresServer", "ServerError", "find_postgres_bin", "free_port"]

SERVER_ACCOUNT = "postgres"


class ServerError(RuntimeError):
    """A test server could not be created, started or queried; the message carries its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_postgres_bin() -> Path:
    """The newest Debian PostgreSQL bin dir, or $PG_BIN_DIR if set."""
    if os.environ.get("PG_BIN_DIR"):
        return Path(os.environ["PG_BIN_DIR"])
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name.split(".")[0])
    )
    if not candidates:
        raise ServerError("no PostgreSQL server found in /usr/lib/postgresql (apt-get install postgresql)")
    return candidates[-1].parent


def _as_root() -> bool:
    return os.geteuid() == 0


def _give_to_server_account(path: Path) -> None:
    if _as_root():
        shutil.chown(path, SERVER_ACCOUNT, SERVER_ACCOUNT)


def _server_command(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_ACCOUNT, "--", *argv] if _as_root() else argv


# initdb output per configuration, copied for every later server of this process.
_TEMPLATES: dict[tuple[str, str, str, str], Path] = {}
# The real Sentry tier starts servers from a thread of its own while other tests run.
_TEMPLATES_LOCK = threading.Lock()
_TEMPLATE_ROOT: Path | None = None
_LIVE: set[PostgresServer] = set()


@atexit.register
def _cleanup_everything() -> None:
    for server in list(_LIVE):
        server.cleanup()
    if _TEMPLATE_ROOT is not None:
        shutil.rmtree(_TEMPLATE_ROOT, ignore_errors=True)


class PostgresServer:
    """A private PostgreSQL server on 127.0.0.1 with one password-authenticated superuser.

    Args:
        superuser: name of the bootstrap superuser (the only role at first).
        password: its password.
        auth: how TCP clients authenticate. "scram-sha-256" (the PG 14+ default), or
            "md5", which also stores passwords as md5 hashes, like PostgreSQL 9.6.
        settings: extra postgresql.conf settings, e.g. {"shared_buffers": "256MB"}.
        bin_dir: server and client binaries (default: find_postgres_bin()).
        base_dir: parent of the server's temporary directory (default: the system
            temp dir). It must be reachable by the `postgres` account when running
            as root, which pytest's private tmp_path is not.
        listen: the address it listens on (default 127.0.0.1); another loopback
            address gives a server the port a manifest names (the real Sentry tier).
        command_prefix: what the server's commands and psql() run under, e.g. nsenter
            into the network and PID namespaces of a real Sentry tier cluster (default:
            none, this process's own namespaces).
        clone_from: a running server to copy instead of a new cluster (pg_basebackup:
            its roles, passwords and databases, in a second or two); superuser,
            password and auth must be the source's.
    """

    def __init__(
        self,
        superuser: str = "postgres",
        password: str = "postgres",
        auth: Literal["scram-sha-256", "md5"] = "scram-sha-256",
        settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
        base_dir: Path | None = None,
        listen: str = "127.0.0.1",
        command_prefix: Sequence[str] = (),
        clone_from: PostgresServer | None = None,
    ) -> None:
        if auth not in ("scram-sha-256", "md5"):
            raise ValueError(f"auth must be scram-sha-256 or md5, not {auth!r}")
        self.superuser = superuser
        self.password = password
        self.auth = auth
        self.settings = dict(settings or {})
        self.bin_dir = bin_dir or find_postgres_bin()
        self.host = listen
        self.command_prefix = list(command_prefix)
        self.clone_from = clone_from
        self.port: int | None = None
        self.root = Path(tempfile.mkdtemp(prefix="pgtest-", dir=base_dir))
        self.root.chmod(0o755)
        _give_to_server_account(self.root)
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._created = False
        self._running = False
        self._md5_done = False
        _LIVE.add(self)

    # --- lifecycle -----------------------------------------------------------

    def start(self, port: int | None = None) -> PostgresServer:
        """Start (creating the cluster the first time) and wait until it accepts connections.

        Keeps the port of an earlier start unless `port` is given; otherwise picks a
        free one, and retries with another if the port was taken in the meantime.
        """
        if self._running:
            return self
        if not self._created:
            self._create()
        attempts = 1 if (port or self.port) else 3
        for attempt in range(attempts):
            self.port = ((port or self.port) if attempt == 0 else None) or free_port()
            result = self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", f"-p {self.port}")
            if result.returncode == 0:
                self._running = True
                if self.auth == "md5" and not self._md5_done:
                    self._store_md5_password()
                return self
            if "could not bind" not in self.log():
                break
        raise ServerError(f"PostgreSQL did not start on port {self.port}:\n{result.stdout}{self.log()[-3000:]}")

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server (keeps the data; start() again reuses the port)."""
        if not self._running:
            return
        result = self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)
        if result.returncode != 0:
            raise ServerError(f"PostgreSQL did not stop:\n{result.stdout}{self.log()[-3000:]}")
        self._running = False

    def cleanup(self) -> None:
        """Stop at once and delete everything. Safe to call more than once."""
        with contextlib.suppress(ServerError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def running(self) -> bool:
        return self._running

    # --- clients -------------------------------------------------------------

    def env(self, database: str = "postgres", user: str | None = None, password: str | None = None) -> dict[str, str]:
        """libpq variables that reach this server as the superuser (or `user`/`password`)."""
        if self.port is None:
            raise ServerError("the server has not been started, so it has no port yet")
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": user or self.superuser,
            "PGPASSWORD": password if password is not None else self.password,
            "PGDATABASE": database,
        }

    def path(self, base: str | None = None) -> str:
        """A PATH with this server's bin dir (psql, pg_dumpall, pg_isready, ...) first."""
        rest = os.environ.get("PATH", "/usr/bin:/bin") if base is None else base
        return f"{self.bin_dir}{os.pathsep}{rest}"

    def psql(
        self,
        sql: str,
        database: str = "postgres",
        user: str | None = None,
        password: str | None = None,
        check: bool = True,
    ) -> str:
        """Run SQL (any number of statements) and return unaligned, tuples-only output.

        Stops at the first error; with check=True (default) that raises ServerError
        with psql's message, with check=False the output (stdout + stderr) is returned.
        """
        result = subprocess.run(
            self._in_netns([str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]),
            input=sql,
            capture_output=True,
            text=True,
            env={"PATH": self.path(), **self.env(database, user, password)},
            check=False,
        )
        if result.returncode != 0:
            if check:
                raise ServerError(f"psql failed ({result.returncode}) on {database}: {result.stderr.strip()}")
            return result.stdout + result.stderr
        return result.stdout.rstrip("\n")

    def log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # --- internals -----------------------------------------------------------

    def _in_netns(self, argv: list[str]) -> list[str]:
        return [*self.command_prefix, *argv]

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._in_netns(_server_command([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args])),
            capture_output=True,
            text=True,
            check=False,
        )

    def _store_md5_password(self) -> None:
        # initdb stored the superuser's password as SCRAM (the PG 14+ default, and PG 15's
        # initdb has no -c); the md5 method accepts that, so log in and store it again as
        # md5, as PostgreSQL 9.6 would have. Roles created later follow password_encryption.
        literal = self.password.replace("'", "''")
        self.psql(f"SET password_encryption = 'md5'; ALTER ROLE \"{self.superuser}\" PASSWORD '{literal}'")
        self._md5_done = True

    def _create(self) -> None:
        if self.clone_from is not None:
            self._clone(self.clone_from)
        else:
            template = _template(self.bin_dir, self.superuser, self.password, self.auth)
            # cp -a keeps the owner (the postgres account) and the 0700 mode initdb set.
            subprocess.run(["cp", "-a", str(template), str(self.data_dir)], check=True)
        conf = {
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": "''",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "max_connections": "40",
            "password_encryption": f"'{self.auth}'",
            **self.settings,
        }
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as out:
            out.write("\n# tests/servers.py\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        self._created = True

    def _clone(self, source: PostgresServer) -> None:
        if not source.running or (source.superuser, source.password, source.auth) != (
            self.superuser,
            self.password,
            self.auth,
        ):
            raise ServerError("clone_from: the source must be running, with the same superuser, password and auth")
        result = subprocess.run(
            source._in_netns(
                _server_command(
                    [
                        str(self.bin_dir / "pg_basebackup"),
                        f"--pgdata={self.data_dir}",
                        f"--host={source.host}",
                        f"--port={source.port}",
                        f"--username={source.superuser}",
                        "--wal-method=stream",
                        "--checkpoint=fast",
                        "--no-sync",
                        "--no-password",
                    ]
                )
            ),
            capture_output=True,
            text=True,
            env={"PATH": self.path(), "PGPASSWORD": source.password},
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(f"pg_basebackup from {source.host}:{source.port} failed: {result.stderr.strip()}")
        # The password is the source's, stored as the source stored it.
        self._md5_done = True


def _template(bin_dir: Path, superuser: str, password: str, auth: str) -> Path:
    """An initdb'd cluster for this configuration, made once per process."""
    with _TEMPLATES_LOCK:
        return _make_template(bin_dir, superuser, password, auth)


def _make_template(bin_dir: Path, superuser: str, password: str, auth: str) -> Path:
    global _TEMPLATE_ROOT
    key = (str(bin_dir), superuser, password, auth)
    if key in _TEMPLATES:
        return _TEMPLATES[key]
    if _TEMPLATE_ROOT is None:
        _TEMPLATE_ROOT = Path(tempfile.mkdtemp(prefix="pgtest-templates-"))
        _TEMPLATE_ROOT.chmod(0o755)
        _give_to_server_account(_TEMPLATE_ROOT)
    target = _TEMPLATE_ROOT / f"cluster{len(_TEMPLATES)}"
    pwfile = _TEMPLATE_ROOT / f"pw{len(_TEMPLATES)}"
    pwfile.write_text(password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    _give_to_server_account(pwfile)
    started = time.monotonic()
    result = subprocess.run(
        _server_command(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(target),
                "-U",
                superuser,
                f"--pwfile={pwfile}",
                f"--auth-host={auth}",
                f"--auth-local={auth}",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    pwfile.unlink()
    if result.returncode != 0:
        raise ServerError(f"initdb failed after {time.monotonic() - started:.1f}s:\n{result.stdout}{result.stderr}")
    _TEMPLATES[key] = target
    return target
