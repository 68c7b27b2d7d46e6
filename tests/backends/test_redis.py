"""Redis: the same suite against the real server, a three-master Redis Cluster
(redis+cluster://) and fakeredis (redis+mock://)."""

from __future__ import annotations

import threading
import time

import pytest

from dbsystem import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    DataError,
    ExecutionHook,
    NotSupportedError,
    PoolConfig,
    PoolTimeout,
    ProgrammingError,
    QueryBuildError,
)

BACKENDS = [
    pytest.param("mock", id="fakeredis"),
    pytest.param("real", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster", id="redis-cluster", marks=pytest.mark.redis),
]
_URL_FIXTURE = {"real": "redis_url", "cluster": "redis_cluster_url"}


@pytest.fixture(params=BACKENDS)
def db(request):
    if request.param == "mock":
        url = "redis+mock://"
    else:
        url = request.getfixturevalue(_URL_FIXTURE[request.param])
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.REDIS, PoolConfig(url=url, max_size=4, acquire_timeout=2))
    manager.execute = None  # type: ignore[assignment]  # SQL convenience calls do not apply
    conn = manager.connection(DatabaseType.REDIS)
    conn.execute("FLUSHDB")
    manager.kind = request.param  # type: ignore[attr-defined]
    yield manager
    conn.execute("FLUSHDB")
    manager.close_all()


def test_build_gives_the_command_words(db):
    q = db.query(DatabaseType.REDIS)
    assert q.hget("user:123", "email").build() == ["HGET", "user:123", "email"]
    assert q.set("k", 5, ex=60, nx=True).build() == ["SET", "k", "5", "EX", "60", "NX"]
    assert q.incr("a").get("a").build() == [["INCRBY", "a", "1"], ["GET", "a"]]
    assert q.incr("a").multi().build() == [["MULTI"], ["INCRBY", "a", "1"], ["EXEC"]]


def test_strings_hashes_expiry(db):
    q = db.query(DatabaseType.REDIS)
    # One hash tag ({t}) keeps the keys of the two-key DELETE in one Redis Cluster slot.
    assert q.hset("user:1", {"name": "ada", "email": "ada@example.com"}).execute() == 2
    assert q.hget("user:1", "email").execute() == "ada@example.com"
    assert q.hgetall("user:1").execute() == {"name": "ada", "email": "ada@example.com"}
    assert q.set("{t}session", "x", ex=100).execute() is True
    assert 0 < q.ttl("{t}session").execute() <= 100
    assert q.expire("{t}session", 5).ttl("{t}session").execute() == [1, 5]
    assert q.incr("{t}hits").incr("{t}hits", 5).decr("{t}hits").execute() == [1, 6, 5]
    assert q.delete("{t}hits", "{t}session").execute() == 2
    assert q.exists("{t}hits").execute() == 0
    assert q.set("only", "1", nx=True).set("only", "2", nx=True).get("only").execute() == [
        True,
        None,
        "1",
    ]


def test_lists_sets_and_a_leaderboard(db):
    q = db.query(DatabaseType.REDIS)
    q.rpush("jobs", "a", "b").lpush("jobs", "z").execute()
    assert q.lrange("jobs").execute() == ["z", "a", "b"]
    assert q.lpop("jobs").rpop("jobs").llen("jobs").execute() == ["z", "b", 1]
    q.sadd("tags", "x", "y", "x").execute()
    assert q.smembers("tags").execute() == {"x", "y"}
    assert q.sismember("tags", "y").scard("tags").execute() == [1, 2]
    q.zadd("board", {"ada": 120, "bob": 95, "cy": 130}).execute()
    assert q.zrevrank("board", "bob").execute() == 2
    assert q.zrevrange("board", 0, 1, withscores=True).execute() == [("cy", 130.0), ("ada", 120.0)]
    assert q.zincrby("board", 50, "bob").zrevrank("board", "bob").execute() == [145.0, 0]
    assert q.zrange("board").execute() == ["ada", "cy", "bob"]


def test_multi_runs_all_commands_as_one_transaction(db):
    q = db.query(DatabaseType.REDIS)
    assert q.set("a", 1).incr("a").get("a").multi().execute() == [True, 2, "2"]


def test_optimistic_locking_retries_on_a_concurrent_change(db):
    conn = db.connection(DatabaseType.REDIS)
    conn.execute("SET", "balance", 100)
    attempts = []

    def debit(pipe):
        attempts.append(1)
        balance = int(pipe.get("balance"))
        if len(attempts) == 1:  # someone else writes between our read and our write
            db.connection(DatabaseType.REDIS).execute("SET", "balance", 90)
        pipe.multi()
        pipe.set("balance", balance - 30)
        return balance - 30

    assert conn.optimistic(debit, "balance") == 60
    assert len(attempts) == 2 and conn.execute("GET", "balance") == "60"


def test_scan_iterates_without_keys(db):
    q = db.query(DatabaseType.REDIS)
    q.set("user:1", 1).set("user:2", 2).set("order:1", 3).execute()
    assert sorted(q.scan(match="user:*", count=10)) == ["user:1", "user:2"]


def test_pub_sub_delivers_in_order_and_stops_cleanly(db):
    conn = db.connection(DatabaseType.REDIS)
    received = []
    with conn.subscribe("news") as subscription:

        def listen():
            for message in subscription:
                received.append(message["data"])
                if len(received) == 3:
                    subscription.stop()

        thread = threading.Thread(target=listen)
        thread.start()
        time.sleep(0.1)
        for word in ("one", "two", "three"):
            assert db.query(DatabaseType.REDIS).publish("news", word).execute() >= 1
        thread.join(5)
    assert not thread.is_alive()
    assert received == ["one", "two", "three"]


def test_errors_are_typed(db):
    q = db.query(DatabaseType.REDIS)
    q.set("text", "x").execute()
    with pytest.raises(ProgrammingError, match="WRONGTYPE"):
        q.lpush("text", "y").execute()
    with pytest.raises(DataError):
        q.set("obj", {"a": 1}).execute()
    with pytest.raises(QueryBuildError):
        q.get("")
    with pytest.raises(QueryBuildError):
        q.set("k", "v", ex=-1)


def test_values_never_become_commands(db):
    q = db.query(DatabaseType.REDIS)
    q.set("canary", "alive").execute()
    payloads = ["foo\r\nFLUSHALL\r\n", "*1\r\n$8\r\nFLUSHALL\r\n", "x" * (1 << 20)]
    for number, payload in enumerate(payloads):
        q.set(f"p{number}", payload).hset(f"h{number}", {payload[:50]: payload}).execute()
        assert q.get(f"p{number}").execute() == payload
    assert q.get("canary").execute() == "alive"
    assert q.exists("canary").exists("p0").exists("p1").exists("p2").execute() == [1, 1, 1, 1]


class Seen(ExecutionHook):
    def __init__(self) -> None:
        self.statements = []

    def after_execute(self, statement) -> None:
        self.statements.append(statement)


def test_every_command_goes_through_the_hooks(db):
    seen = db.add_hook(Seen())
    q = db.query(DatabaseType.REDIS)
    q.hset("user:1", {"a": 1}).execute()
    q.hget("user:1", "a").delete("user:2").execute()
    list(q.scan(match="user:*"))
    first, second, third = seen.statements
    assert (first.operation, first.action, first.resources) == ("command", "update", ("user:1",))
    assert first.text == "HSET user:1 a 1"
    assert (second.operation, second.action, second.resources) == (
        "pipeline",
        "multiple",
        ("user:1", "user:2"),
    )
    assert third.operation == "scan" and third.action == "select"


def test_pool_stats_have_the_sql_fields(db):
    for _ in range(5):
        db.query(DatabaseType.REDIS).get("x").execute()
    stats = db.pool_stats()[DatabaseType.REDIS]
    assert stats.acquired >= 5 and stats.active == 0 and stats.max_size == 4
    nodes = 3 if db.kind == "cluster" else 1  # a cluster's sizes are per node
    assert nodes <= stats.total <= 4 * nodes and stats.created >= nodes


def test_mock_refuses_what_it_does_not_emulate():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.REDIS, "redis+mock://")
    try:
        with pytest.raises(NotSupportedError):
            manager.connection(DatabaseType.REDIS).execute("NOSUCHCOMMAND", "x")
    finally:
        manager.close_all()


def test_bad_settings_and_unreachable_server():
    with pytest.raises(ConfigurationError, match="unknown Redis URL option"):
        DatabaseManager().create_pool(DatabaseType.REDIS, "redis://127.0.0.1:1/0?colour=red")
    with pytest.raises(ConfigurationError, match="number"):
        DatabaseManager().create_pool(DatabaseType.REDIS, "redis://127.0.0.1:1/zero")
    with pytest.raises(ConnectionFailed) as info:
        DatabaseManager().create_pool(
            DatabaseType.REDIS, PoolConfig(url="redis://:Secr3tPw@127.0.0.1:1/0", connect_timeout=1)
        )
    assert "Secr3tPw" not in str(info.value)


@pytest.mark.redis
def test_pool_timeout_when_every_connection_is_busy(redis_url):
    manager = DatabaseManager()
    manager.create_pool(
        DatabaseType.REDIS, PoolConfig(url=redis_url, max_size=1, acquire_timeout=0.2)
    )
    conn = manager.connection(DatabaseType.REDIS)
    blocker = threading.Thread(target=lambda: conn.execute("BLPOP", "never-there", 1))
    try:
        blocker.start()
        time.sleep(0.1)
        start = time.monotonic()
        with pytest.raises(PoolTimeout):
            conn.execute("GET", "x")
        assert time.monotonic() - start < 1.0
    finally:
        blocker.join(5)
        manager.close_all()
    assert manager is not None


@pytest.mark.redis
def test_killed_connections_are_recovered(redis_url):
    manager = DatabaseManager()
    manager.create_pool(
        DatabaseType.REDIS, PoolConfig(url=redis_url + "?client_name=victim", max_size=2)
    )
    try:
        conn = manager.connection(DatabaseType.REDIS)
        conn.execute("SET", "k", "v")
        admin = DatabaseManager()
        admin.create_pool(DatabaseType.REDIS, redis_url)
        killed = 0
        for line in admin.connection(DatabaseType.REDIS).execute("CLIENT", "LIST").splitlines():
            if "name=victim" in line:
                client_id = line.split()[0].split("=")[1]
                killed += admin.connection(DatabaseType.REDIS).execute(
                    "CLIENT", "KILL", "ID", client_id
                )
        admin.close_all()
        assert killed >= 1
        assert conn.execute("GET", "k") == "v"  # reconnected by itself
    finally:
        manager.close_all()


# -- TLS against a throwaway TLS-only redis-server ------------------------------------------


@pytest.fixture(scope="module")
def redis_tls_port(tmp_path_factory, redis_url):
    import shutil
    import socket
    import subprocess

    from tests.tls_support import make_ca, make_server_cert

    if shutil.which("redis-server") is None:
        from tests.conftest import servers_required

        if servers_required():
            pytest.fail("redis-server is needed for the Redis TLS tests")
        pytest.skip("redis-server is not installed")
    directory = tmp_path_factory.mktemp("redis-tls")
    make_server_cert(directory, make_ca(directory))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(directory / "server.pem"),
            "--tls-key-file",
            str(directory / "server-key.pem"),
            "--tls-ca-cert-file",
            str(directory / "ca.pem"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the TLS redis-server did not start") from None
                time.sleep(0.05)
        yield port, directory
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_redis_over_tls(redis_tls_port, mode):
    from dbsystem import TLSConfig

    port, directory = redis_tls_port
    manager = DatabaseManager()
    manager.create_pool(
        DatabaseType.REDIS,
        PoolConfig(
            url=f"rediss://127.0.0.1:{port}/0",
            tls=TLSConfig(mode=mode, ca_file=directory / "ca.pem"),
        ),
    )
    try:
        conn = manager.connection(DatabaseType.REDIS)
        conn.execute("SET", "tls", "yes")
        assert conn.execute("GET", "tls") == "yes"
    finally:
        manager.close_all()


@pytest.mark.redis
def test_redis_tls_fails_closed(redis_tls_port, redis_url, tmp_path):
    from dbsystem import TLSConfig
    from tests.tls_support import make_ca

    port, _ = redis_tls_port
    make_ca(tmp_path, "another CA")
    with pytest.raises(ConnectionFailed):  # a certificate from an unknown CA
        DatabaseManager().create_pool(
            DatabaseType.REDIS,
            PoolConfig(
                url=f"rediss://127.0.0.1:{port}/0",
                connect_timeout=2,
                tls=TLSConfig(mode="verify-full", ca_file=tmp_path / "ca.pem"),
            ),
        )
    plain_port = int(redis_url.split(":")[2].split("/")[0])
    with pytest.raises(ConnectionFailed):  # a plaintext server: no fallback
        DatabaseManager().create_pool(
            DatabaseType.REDIS,
            PoolConfig(
                url=f"rediss://127.0.0.1:{plain_port}/0",
                connect_timeout=2,
                tls=TLSConfig(mode="require"),
            ),
        )


def test_waiters_for_a_connection_are_served_first_come_first_served():
    """redis-py's pool is a LIFO queue where a newcomer can take a freed connection ahead of
    a thread that waited long: under constant load a waiter can starve past its timeout
    (measured with benchmarks/load.py: 40 timeouts in 60 s). dbsystem's is FIFO."""
    import threading
    import time

    from dbsystem import DatabaseManager, DatabaseType, PoolConfig

    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, PoolConfig(url="redis+mock://", min_size=0, max_size=2))
    pool = db.get_pool(DatabaseType.REDIS).connector.pool
    waits: list[float] = []
    deadline = time.monotonic() + 2.0

    def churn() -> None:
        while time.monotonic() < deadline:
            asked = time.monotonic()
            connection = pool.get_connection()
            waits.append(time.monotonic() - asked)
            time.sleep(0.001)
            pool.release(connection)

    threads = [threading.Thread(target=churn) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # FIFO: a waiter waits for the ~19 ahead of it, never for whoever comes later.
    assert max(waits) < 0.5, f"a waiter starved for {max(waits):.2f} s"
    db.close_all()
