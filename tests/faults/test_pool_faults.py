"""The test catalog's pool and transaction faults on the real servers, through the fault kit
(tests/faults/proxy.py, tests/faults/kill.py): P1, P9, P10, P12, P14, P23, T6, T7.
Every test runs under a timeout: a hang is a failure."""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest

from dbsystem import (
    CommitUnknownError,
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    IntegrityError,
    OperationalError,
    PoolConfig,
    PoolTimeout,
    RetryableError,
    TLSConfig,
    retry,
)
from tests.faults.kill import (
    mysql_kill,
    pg_sessions,
    pg_terminate,
    redis_kill,
    redis_pause,
)
from tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

SENTINEL = "Sentinel-Pa55-9f3k"
PG, MY = DatabaseType.POSTGRES, DatabaseType.MYSQL


def _target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def _with_password(url: str) -> str:
    return url.replace("://root@", f"://root:{SENTINEL}@")


@pytest.fixture
def app_name() -> str:
    return f"dbsys_{uuid.uuid4().hex[:8]}"


def test_p1_fail_fast_naming_the_address_without_the_password(postgres_url):
    proxy = TcpProxy(_target(postgres_url)).start()
    proxy.down()  # connects are refused
    db = DatabaseManager()
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        db.create_pool(
            PG,
            PoolConfig(url=_with_password(proxy.url(postgres_url)), min_size=2, connect_timeout=2),
        )
    assert time.monotonic() - started < 2.5
    text = str(caught.value)
    assert f"127.0.0.1:{proxy.port}" in text and SENTINEL not in text
    with pytest.raises(ValueError):
        PoolConfig(url=postgres_url, min_size=3, max_size=2)


def test_p9_killed_idle_sessions_cost_callers_nothing_with_check_on_borrow(postgres_url, app_name):
    db = DatabaseManager()
    url = f"{postgres_url}?application_name={app_name}"
    db.create_pool(PG, PoolConfig(url=url, min_size=4, max_size=4, health_check_interval=0))
    for _ in range(4):
        db.fetch_value("SELECT 1")
    assert pg_terminate(postgres_url, app_name) == 4
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            db.fetch_value("SELECT 1")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]  # 2 x max
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert db.get_pool(PG).stats().discarded == 4
    db.close_all()


def test_p12_after_one_disconnect_older_connections_are_checked(postgres_url, app_name):
    """Without check-on-borrow (the connections were used a moment ago), the first caller
    sees the disconnect; its return makes the pool ping every other idle connection."""
    db = DatabaseManager()
    url = f"{postgres_url}?application_name={app_name}"
    db.create_pool(PG, PoolConfig(url=url, min_size=3, max_size=3, health_check_interval=60))
    leases = [db.connection(PG) for _ in range(3)]
    for lease in leases:
        lease.release()
    pg_terminate(postgres_url, app_name)
    errors = 0
    for _ in range(6):
        try:
            db.fetch_value("SELECT 1")
        except ConnectionFailed:
            errors += 1
    assert errors == 1  # one caller, not one per stale connection
    # P24: the counters tell the same story. The failing connection and the suspect one
    # borrowed next (pinged: dead) were discarded; the pool reused the fresh one (LIFO),
    # the third stale one still waits idle, marked for a ping before its next use.
    stats = db.get_pool(PG).stats()
    assert (stats.discarded, stats.total, stats.active) == (2, 2, 0)
    db.close_all()


def test_p10_a_session_killed_mid_query_fails_fast_and_is_not_retried(postgres_url, app_name):
    db = DatabaseManager()
    url = f"{postgres_url}?application_name={app_name}"
    db.create_pool(PG, PoolConfig(url=url, min_size=1, max_size=1))
    executed = []

    def count(statement) -> None:
        executed.append(statement.text)

    from dbsystem import ExecutionHook

    class Counter(ExecutionHook):
        def after_execute(self, statement) -> None:
            count(statement)

    db.add_hook(Counter())
    killer = threading.Timer(0.3, pg_terminate, (postgres_url, app_name))
    killer.start()
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        db.fetch_value("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 1.5
    assert executed == ["SELECT pg_sleep(5)"]  # no automatic retry
    started = time.monotonic()
    assert db.fetch_value("SELECT 1") == 1  # a new connection, at once
    assert time.monotonic() - started < 2.0
    assert db.get_pool(PG).stats().discarded == 1
    db.close_all()


def test_p14_acquire_honours_its_timeout_when_the_network_blackholes(postgres_url):
    proxy = TcpProxy(_target(postgres_url)).start()
    db = DatabaseManager()
    db.create_pool(
        PG,
        PoolConfig(
            url=proxy.url(postgres_url),
            min_size=0,
            max_size=2,
            acquire_timeout=2,
            connect_timeout=10,
        ),
    )
    assert db.fetch_value("SELECT 1") == 1
    proxy.blackhole()
    held = db.connection(PG)  # the idle one (no ping within health_check_interval)
    started = time.monotonic()
    with pytest.raises(PoolTimeout, match="could not open a connection within"):
        db.connection(PG)  # needs a new connection: the connect hangs
    blocked = time.monotonic() - started
    assert blocked <= 2.2, blocked
    assert db.get_pool(PG).stats().timeouts == 1  # P24
    held.release()
    proxy.forward()
    proxy.down()
    db.close_all()


def test_p23_redis_kill_and_pause(redis_url):
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, f"{redis_url}?socket_timeout=1")
    with db.connection(DatabaseType.REDIS) as conn:
        conn.execute("SET", "p23", "1")
    redis_kill(redis_url, "TYPE", "normal")
    with db.connection(DatabaseType.REDIS) as conn:  # redis-py reconnects on the next call
        assert conn.execute("GET", "p23") == "1"
    redis_pause(redis_url, 2000)
    started = time.monotonic()
    with pytest.raises(OperationalError), db.connection(DatabaseType.REDIS) as conn:
        conn.execute("GET", "p23")
    assert time.monotonic() - started < 1.6  # socket_timeout, not the pause
    time.sleep(2.1)
    with db.connection(DatabaseType.REDIS) as conn:
        conn.execute("DEL", "p23")
    db.close_all()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_t6_deadlocks_are_retryable_and_retry_reruns_the_whole_unit(kind, request):
    url = request.getfixturevalue(f"{kind}_url")
    db_type = PG if kind == "postgres" else MY
    db = DatabaseManager()
    db.create_pool(db_type, PoolConfig(url=url, max_size=4))
    table = f"t6_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, n INTEGER)")
    db.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    barrier = threading.Barrier(2)
    seen: list[type[BaseException]] = []
    attempts = {"a": 0, "b": 0}

    def transfer(name: str, first: int, second: int) -> None:
        attempts[name] += 1
        with db.transaction(db_type) as conn:
            conn.execute(f"UPDATE {table} SET n = n + 1 WHERE id = :id", {"id": first})
            if attempts[name] == 1:
                barrier.wait(timeout=10)  # both hold their first row: a deadlock
            conn.execute(f"UPDATE {table} SET n = n + 1 WHERE id = :id", {"id": second})

    def run(name: str, first: int, second: int) -> None:
        def unit() -> None:
            try:
                transfer(name, first, second)
            except RetryableError as exc:
                seen.append(type(exc))
                raise

        retry(unit, attempts=5)

    threads = [
        threading.Thread(target=run, args=("a", 1, 2)),
        threading.Thread(target=run, args=("b", 2, 1)),
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    took = time.monotonic() - started
    rows = {r["id"]: r["n"] for r in db.fetch_all(f"SELECT id, n FROM {table}")}
    db.execute(f"DROP TABLE {table}")
    db.close_all()
    assert seen == [RetryableError]  # one of the two was chosen as the victim, once
    assert rows == {1: 2, 2: 2}  # both transfers applied exactly once in the end
    assert took < 10


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_t7_a_connection_cut_during_commit_is_commit_unknown(kind, request):
    url = request.getfixturevalue(f"{kind}_url")
    db_type = PG if kind == "postgres" else MY
    default_port = 5432 if kind == "postgres" else 3306
    parts = urlsplit(url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or default_port)).start()
    db, direct = DatabaseManager(), DatabaseManager()
    direct.create_pool(db_type, url)
    table = f"t7_{uuid.uuid4().hex[:8]}"
    direct.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    try:
        # In clear text, so that the proxy can see the COMMIT go by.
        plain = TLSConfig(mode="disable")
        db.create_pool(db_type, PoolConfig(url=proxy.url(url), min_size=1, max_size=1, tls=plain))
        with pytest.raises(CommitUnknownError, match="may or may not have committed"):
            with db.transaction(db_type) as conn:
                conn.execute(f"INSERT INTO {table} VALUES (1)")
                proxy.cut_after(b"COMMIT")
        assert proxy.cuts == 1
        # The server did commit: "unknown" was the honest answer, "rolled back" would be wrong.
        assert direct.fetch_value(f"SELECT COUNT(*) FROM {table}") == 1
    finally:
        db.close_all()
        proxy.down()
        direct.execute(f"DROP TABLE {table}")
        direct.close_all()


def test_a_session_killed_on_mariadb_is_replaced(mysql_url):
    db = DatabaseManager()
    db.create_pool(MY, PoolConfig(url=mysql_url, min_size=2, max_size=2, health_check_interval=0))
    ids = []
    leases = [db.connection(MY) for _ in range(2)]
    for lease in leases:
        ids.append(lease.fetch_value("SELECT CONNECTION_ID()"))
        lease.release()
    mysql_kill(mysql_url, ids)
    assert [db.fetch_value("SELECT 1") for _ in range(4)] == [1, 1, 1, 1]
    assert pg_sessions is not None  # (the helpers are importable for the other servers)
    db.close_all()


def test_t2_a_commit_time_failure_raises_from_the_block_and_keeps_nothing(postgres_url):
    db = DatabaseManager()
    db.create_pool(PG, postgres_url)
    table = f"t2_{uuid.uuid4().hex[:8]}"
    db.execute(
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, code INTEGER, "
        "UNIQUE (code) DEFERRABLE INITIALLY DEFERRED)"
    )
    committed = False
    with pytest.raises(IntegrityError):
        with db.transaction(PG) as conn:
            conn.execute(f"INSERT INTO {table} VALUES (1, 7)")
            conn.execute(f"INSERT INTO {table} VALUES (2, 7)")  # only checked at COMMIT
        committed = True
    assert not committed
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 0
    with db.connection(PG) as conn:
        assert not conn.in_transaction
    db.execute(f"DROP TABLE {table}")
    db.close_all()


def test_p13_server_down_refills_back_off_and_alert_then_recover(postgres_url):
    proxy = TcpProxy(_target(postgres_url)).start()
    db = DatabaseManager()
    db.create_pool(
        PG,
        PoolConfig(
            url=proxy.url(postgres_url),
            min_size=2,
            max_size=4,
            idle_timeout=0.4,  # maintenance every 0.1 s
            reconnect_timeout=1.0,
            connect_timeout=1,
        ),
    )
    pool = db.get_pool(PG)
    alerts: list[float] = []
    pool.reconnect_failed = lambda p: alerts.append(time.monotonic())
    attempts: list[float] = []
    connect = pool.connector.connect

    def counted() -> object:
        attempts.append(time.monotonic())
        return connect()

    pool.connector.connect = counted  # type: ignore[method-assign]
    proxy.down()
    down_at = time.monotonic()
    for _ in range(3):  # callers find the connections dead: the pool drops them
        with pytest.raises(ConnectionFailed):
            db.fetch_value("SELECT 1")
    time.sleep(3.0)
    refills = [t for t in attempts if t > time.monotonic() - 2.9]
    gaps = [b - a for a, b in zip(refills, refills[1:], strict=False)]
    assert 3 <= len(refills) <= 8, refills  # not one per 0.1 s pass: ~30 without backoff
    assert gaps[0] < 0.5 and max(gaps) > 0.7, gaps  # quick at first, then backing off
    assert len(alerts) == 1 and alerts[0] - down_at >= 1.0  # reconnect_failed fired once
    proxy.up()
    started = time.monotonic()
    assert db.fetch_value("SELECT 1") == 1  # a caller connects at once
    assert time.monotonic() - started < 0.2
    deadline = time.monotonic() + 2
    while pool.stats().total < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.stats().total >= 2  # back to min_size without waiting out the backoff
    db.close_all()
    proxy.down()


@pytest.mark.parametrize(
    ("kind", "sleep"),
    [
        pytest.param("postgres", "SELECT pg_sleep(3)", marks=pytest.mark.postgres),
        pytest.param("mysql", "SELECT SLEEP(3)", marks=pytest.mark.mysql),
    ],
)
def test_statement_timeout_is_enforced_by_the_server(kind, sleep, request):
    url = request.getfixturevalue(f"{kind}_url")
    db_type = PG if kind == "postgres" else MY
    db = DatabaseManager()
    db.create_pool(db_type, PoolConfig(url=url, max_size=1, statement_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(OperationalError):
        db.fetch_value(sleep)
    assert time.monotonic() - started < 1.2
    assert db.fetch_value("SELECT 1") == 1  # the same connection goes on
    assert db.get_pool(db_type).stats().discarded == 0
    db.close_all()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_p14_a_statement_on_an_established_connection_is_bounded_in_a_blackhole(kind, request):
    url = request.getfixturevalue(f"{kind}_url")
    db_type = {"postgres": PG, "mysql": MY}.get(kind, DatabaseType.REDIS)
    parts = urlsplit(url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 0)).start()
    db = DatabaseManager()
    db.create_pool(
        db_type,
        PoolConfig(
            url=proxy.url(url),
            min_size=1,
            max_size=1,
            statement_timeout=0.5,
            tls=TLSConfig(mode="disable") if kind != "redis" else None,
        ),
    )

    def command(conn) -> object:
        return conn.execute("PING") if kind == "redis" else conn.fetch_value("SELECT 1")

    with db.connection(db_type) as conn:
        command(conn)
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(OperationalError):
            command(conn)
        blocked = time.monotonic() - started
    # PostgreSQL: the watchdog shuts the socket at statement_timeout + 1 s (checked every
    # 0.1 s); MySQL: read_timeout = statement_timeout + 1 s; Redis: socket_timeout.
    assert blocked < (0.8 if kind == "redis" else 1.8), blocked
    proxy.forward()
    proxy.down()
    db.close_all()
