"""Redis's start script and the wait-for-redis init container, taken from the synthesized
manifests and run against a real redis-server (Debian's package).

Only what must point at this machine is replaced: the port, the data and config paths,
and (for the eviction test) a small maxmemory so that filling it takes milliseconds.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from constructs.quantities import parse_memory
from tests.conftest import TEST_SECRETS, Dist, find_container, manifest_env
from tests.servers import free_port

PASSWORD = TEST_SECRETS["redis-password"]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")


def _cli(port: int, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        env={"REDISCLI_AUTH": password, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


class Redis:
    """The stack's Redis container command, run on this machine."""

    def __init__(self, dist: Dist, tmp: Path, **overrides: str) -> None:
        self.container = find_container(dist.get("StatefulSet", "sentry-redis"), "redis")
        self.port = free_port()
        data = tmp / "data"
        data.mkdir(exist_ok=True)
        self.env = manifest_env(
            self.container,
            REDIS_PORT=str(self.port),
            REDIS_DATA_DIR=str(data),
            REDIS_CONF=str(tmp / "run" / "redis.conf"),
            PATH="/usr/bin:/bin",
            **overrides,
        )
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Redis:
        self.proc = subprocess.Popen(self.container["command"], env=self.env, text=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while _cli(self.port, "ping", password=self.env["REDISCLI_AUTH"]).stdout.strip() != "PONG":
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis(default_dist: Dist, tmp_path: Path) -> Iterator[Redis]:
    server = Redis(default_dist, tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_maxmemory_is_half_the_limit_and_never_evicts_queues(default_dist: Dist, redis: Redis) -> None:
    limit = find_container(default_dist.get("StatefulSet", "sentry-redis"), "redis")["resources"]["limits"]["memory"]
    assert _cli(redis.port, "config", "get", "maxmemory").stdout.split() == [
        "maxmemory",
        str(parse_memory(limit) // 2),
    ]
    assert _cli(redis.port, "config", "get", "maxmemory-policy").stdout.split() == [
        "maxmemory-policy",
        "volatile-lru",
    ]
    assert _cli(redis.port, "config", "get", "appendonly").stdout.split() == ["appendonly", "yes"]


def test_a_full_redis_evicts_expiring_keys_and_refuses_writes_but_keeps_every_task(
    default_dist: Dist, tmp_path: Path
) -> None:
    server = Redis(default_dist, tmp_path, REDIS_MAXMEMORY=str(2 * 2**20)).start()
    try:
        # A cache entry with a TTL, as Sentry's caches and rate limits write them.
        for i in range(200):
            assert _cli(server.port, "set", f"cache:{i}", "c" * 1000, "ex", "3600").returncode == 0
        # Then a Celery queue backlog until Redis refuses to take more.
        task = "t" * 4000
        pushed = 0
        refused = ""
        while pushed < 5000:
            reply = _cli(server.port, "rpush", "celery", task).stdout.strip()
            if not reply.isdigit():
                refused = reply
                break
            pushed += 1
        assert "OOM" in refused, f"expected Redis to refuse writes when full, got {refused!r} after {pushed}"
        assert int(_cli(server.port, "llen", "celery").stdout) == pushed, "a queued task was evicted"
        assert int(_cli(server.port, "dbsize").stdout) < 200 + 1, "expiring keys go first"
        assert server.proc is not None and server.proc.poll() is None, "Redis keeps running"
    finally:
        server.stop()


def test_the_password_is_required_and_not_on_the_command_line(redis: Redis) -> None:
    assert (
        "NOAUTH" in _cli(redis.port, "get", "x", password="").stdout + _cli(redis.port, "get", "x", password="").stderr
    )
    assert redis.proc is not None
    for pid in subprocess.run(["pgrep", "-f", "redis-server"], capture_output=True, text=True).stdout.split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert PASSWORD not in cmdline


def _wait_container(dist: Dist) -> dict:
    (job,) = dist.of_kind("Job")
    return find_container(job, "wait-for-redis")


def test_wait_for_redis_blocks_until_redis_answers(default_dist: Dist, tmp_path: Path) -> None:
    server = Redis(default_dist, tmp_path)
    container = _wait_container(default_dist)
    env = manifest_env(
        container, REDIS_HOST="127.0.0.1", REDIS_PORT=str(server.port), PATH="/usr/bin:/bin", WAIT_INTERVAL_SECONDS="1"
    )
    proc = subprocess.Popen(container["command"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)  # nothing listens yet: it must keep waiting
        server.start()
        assert proc.wait(timeout=15) == 0
        output = proc.stdout.read() if proc.stdout else ""
        assert "waiting for Redis at 127.0.0.1" in output and "is answering" in output
    finally:
        proc.kill()
        server.stop()


def test_wait_for_redis_gives_up_on_a_wrong_password(default_dist: Dist, redis: Redis) -> None:
    container = _wait_container(default_dist)
    env = manifest_env(
        container,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(redis.port),
        REDISCLI_AUTH="not-the-password",
        PATH="/usr/bin:/bin",
        WAIT_INTERVAL_SECONDS="1",
        WAIT_TIMEOUT_SECONDS="2",
    )
    result = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert "gave up: Redis at 127.0.0.1" in result.stderr
    assert "not-the-password" not in result.stdout + result.stderr


# Passwords with every character redis-server.sh must carry into Redis's quoted config line:
# quotes, backslashes (alone, at the end, before what Redis reads as an escape), spaces at
# either end, tabs, a carriage return, shell metacharacters, a comment sign, non-ASCII.
ODD_PASSWORDS = ['a"b', '"', "a\\b", "ab\\", "a\\nb", "a\\x41b", "a'b", " lead", "trail ", "a\tb", "a\rb", "x\r"]
ODD_PASSWORDS += ["a$b`c$(id)", "#x", "ü-密码", "a\x01b"]


@pytest.mark.parametrize("password", ODD_PASSWORDS, ids=repr)
def test_the_start_script_carries_any_one_line_password_into_redis(
    default_dist: Dist, tmp_path: Path, password: str
) -> None:
    server = Redis(default_dist, tmp_path, REDIS_PASSWORD=password, REDISCLI_AUTH=password).start()
    try:
        assert _cli(server.port, "set", "k", "v", password=password).stdout.strip() == "OK"
        wrong = _cli(server.port, "get", "k", password=password + "x")
        assert "WRONGPASS" in wrong.stderr and wrong.stdout.strip() != "v"
    finally:
        server.stop()


def test_a_line_break_in_the_password_stops_redis_which_is_why_the_synth_refuses_it(
    default_dist: Dist, tmp_path: Path
) -> None:
    """app/secrets_store.py refuses such a password (tests/test_bad_input.py): here is why."""
    server = Redis(default_dist, tmp_path, REDIS_PASSWORD="first\nsecond")
    done = subprocess.run(
        server.container["command"], env=server.env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode != 0
    assert "Unbalanced quotes" in done.stdout + done.stderr
