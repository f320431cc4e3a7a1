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


def test_maxmemory_is_half_the_limit_and_nothing_is_ever_evicted(default_dist: Dist, redis: Redis) -> None:
    limit = find_container(default_dist.get("StatefulSet", "sentry-redis"), "redis")["resources"]["limits"]["memory"]
    assert _cli(redis.port, "config", "get", "maxmemory").stdout.split() == [
        "maxmemory",
        str(parse_memory(limit) // 2),
    ]
    assert _cli(redis.port, "config", "get", "maxmemory-policy").stdout.split() == [
        "maxmemory-policy",
        "noeviction",
    ]
    assert _cli(redis.port, "config", "get", "appendonly").stdout.split() == ["appendonly", "yes"]


# What one event waiting for the workers holds in Redis (sentry/coreapi.py,
# insert_data_to_database): its body in the cache, JSON, with a one-hour TTL, and the
# preprocess_event task in its Celery queue. Sizes measured under the real Sentry 9.1.2:
# its Java sample event (sentry/data/samples/java.json), normalized by EventManager as the
# store API does, is 13,010 bytes of JSON (the Python one 6,006); the task, as celery 3.1.18
# and kombu 3.0.35 write it, 928 bytes.
EVENT_BODY = b"e" * 13_010
TASK_MESSAGE = b"t" * 928
QUEUE = "events.preprocess_event"
# The default must hold an hour of events (the cache's TTL: a body older than that expires
# anyway) arriving at one a second while no worker takes them, in at most half of maxmemory:
# the rest is for the TSDB, buffers, quotas and the other queues.
BACKLOG_EVENTS = 3600


def _resp(*args: str | bytes) -> bytes:
    """One command in Redis's wire protocol (what `redis-cli --pipe` reads)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg if isinstance(arg, bytes) else arg.encode()
        parts += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
    return b"".join(parts)


def _queue_events(port: int, first: int, count: int) -> subprocess.CompletedProcess[str]:
    """`count` events as Sentry's store API leaves them for the workers, sent in one pipe."""
    commands = b"".join(
        _resp("SETEX", f"c:1:e:{i:032x}:1", "3600", EVENT_BODY) + _resp("LPUSH", QUEUE, TASK_MESSAGE)
        for i in range(first, first + count)
    )
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
        input=commands,
        env={"REDISCLI_AUTH": PASSWORD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
        check=False,
    )


def _info(port: int, section: str) -> dict[str, str]:
    lines = _cli(port, "info", section).stdout.splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def test_the_default_holds_an_hour_of_events_at_one_a_second_in_half_its_memory(redis: Redis) -> None:
    result = _queue_events(redis.port, 0, BACKLOG_EVENTS)
    assert b"errors: 0" in result.stdout, result.stdout + result.stderr
    assert int(_cli(redis.port, "llen", QUEUE).stdout) == BACKLOG_EVENTS
    memory = _info(redis.port, "memory")
    # What Redis compares with maxmemory: its memory without the AOF and replication buffers,
    # which a burst of writes fills for a moment.
    counted = int(memory["used_memory"]) - int(memory["mem_not_counted_for_evict"])
    assert counted <= int(memory["maxmemory"]) // 2, memory


def test_a_full_redis_keeps_every_queued_event_and_refuses_new_writes(default_dist: Dist, tmp_path: Path) -> None:
    server = Redis(default_dist, tmp_path, REDIS_MAXMEMORY=str(2 * 2**20)).start()
    try:
        # Events arrive, and no worker takes them, until Redis says it is full.
        queued, refused = 0, ""
        while queued < 1000:
            setex = _cli(server.port, "setex", f"c:1:e:{queued:032x}:1", "3600", EVENT_BODY.decode())
            if setex.stdout.strip() != "OK":
                refused = setex.stdout
                break
            assert _cli(server.port, "lpush", QUEUE, TASK_MESSAGE.decode()).stdout.strip().isdigit()
            queued += 1
        assert "OOM" in refused, f"expected Redis to refuse writes when full, got {refused!r} after {queued} events"
        # Every body and every task is still there: nothing was evicted.
        assert int(_info(server.port, "stats")["evicted_keys"]) == 0
        assert int(_cli(server.port, "dbsize").stdout) == queued + 1
        assert int(_cli(server.port, "llen", QUEUE).stdout) == queued
        # Writes of every kind Sentry and kombu make are refused (the store API's cache and
        # queue, the TSDB's and buffers' counters, kombu's record of an unacknowledged task)...
        for command in (
            ("lpush", QUEUE, "x"),
            ("hincrby", "ts:1", "x", "1"),
            ("hset", "unacked", "tag", "x"),
            ("incr", "quota"),
        ):
            assert "OOM" in _cli(server.port, *command).stdout, command
        # ... while the workers can still read, take and delete, which frees memory,
        assert _cli(server.port, "get", f"c:1:e:{0:032x}:1").stdout.strip() == EVENT_BODY.decode()
        for i in range(queued // 2):
            assert _cli(server.port, "rpop", QUEUE).stdout.strip() == TASK_MESSAGE.decode()
            assert _cli(server.port, "del", f"c:1:e:{i:032x}:1").stdout.strip() == "1"
        # ... and once they have, Redis takes new events again, without a restart.
        assert _cli(server.port, "setex", "c:1:e:new:1", "3600", EVENT_BODY.decode()).stdout.strip() == "OK"
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


# --- an external Redis: without a password, and one that would evict -----------------------

NO_PASSWORD = "redis:\n  external: {host: 10.0.9.15, password: false}\n"


class BareRedis:
    """A redis-server as a managed service might be set up: no password, its own policy."""

    def __init__(self, tmp: Path, *settings: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp),
             *settings],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _run_wait(container: dict, port: int) -> subprocess.CompletedProcess[str]:
    env = manifest_env(
        container,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(port),
        PATH="/usr/bin:/bin",
        WAIT_INTERVAL_SECONDS="1",
        WAIT_TIMEOUT_SECONDS="10",
    )
    return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def no_password_dist(synth_once) -> Dist:  # type: ignore[no-untyped-def]
    return synth_once(NO_PASSWORD)


def test_wait_for_redis_reaches_a_server_without_a_password(no_password_dist: Dist, tmp_path: Path) -> None:
    server = BareRedis(tmp_path, "--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
    try:
        result = _run_wait(_wait_container(no_password_dist), server.port)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "is answering (maxmemory 67108864, maxmemory-policy noeviction)" in result.stdout
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


def test_wait_for_redis_never_takes_a_missing_password_for_none(default_dist: Dist) -> None:
    container = _wait_container(default_dist)
    env = manifest_env(container, REDIS_HOST="127.0.0.1", REDIS_PORT="1", PATH="/usr/bin:/bin")
    del env["REDISCLI_AUTH"]
    result = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert "REDISCLI_AUTH is required (or REDIS_AUTH=none" in result.stderr


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru", "volatile-ttl"])
def test_wait_for_redis_refuses_a_server_that_evicts(no_password_dist: Dist, tmp_path: Path, policy: str) -> None:
    server = BareRedis(tmp_path, "--maxmemory", "64mb", "--maxmemory-policy", policy)
    try:
        result = _run_wait(_wait_container(no_password_dist), server.port)
        assert result.returncode == 1
        assert f"evicts keys when it is full (maxmemory-policy {policy})" in result.stderr
        assert "set its maxmemory-policy to noeviction" in result.stderr
    finally:
        server.stop()


def test_wait_for_redis_accepts_any_policy_without_a_memory_limit(no_password_dist: Dist, tmp_path: Path) -> None:
    # maxmemory 0: Redis never evicts, whatever the policy says.
    server = BareRedis(tmp_path, "--maxmemory", "0", "--maxmemory-policy", "allkeys-lru")
    try:
        result = _run_wait(_wait_container(no_password_dist), server.port)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        server.stop()


def test_operations_md_states_what_these_tests_show(default_dist: Dist) -> None:
    from tests.test_docs import doc

    text = " ".join(doc("operations.md").split())
    redis = find_container(default_dist.get("StatefulSet", "sentry-redis"), "redis")["resources"]
    maxmemory_mib = parse_memory(redis["limits"]["memory"]) // 2 // 2**20
    for phrase in (
        f"{maxmemory_mib} MiB of `redis.resources.limits.memory` {redis['limits']['memory']})",
        "`maxmemory-policy noeviction`",
        f"an hour of events arriving at one a second while no worker takes them ({BACKLOG_EVENTS:,} events with "
        f"{len(EVENT_BODY) // 1000} KB bodies",
        "in less than half of `maxmemory`",
        f"its memory request, {redis['requests']['memory']}, covers a full Redis",
        "OOM command not allowed when used memory > 'maxmemory'",
    ):
        assert phrase in text, phrase
    # A full Redis at its request: maxmemory plus a quarter for what Redis does not count in it.
    assert parse_memory(redis["requests"]["memory"]) >= parse_memory(redis["limits"]["memory"]) // 2 * 5 // 4
    assert BACKLOG_EVENTS == 3600  # an hour at one a second
