"""PerformanceMonitor: summary figures, window, slow-query log, and what it counts."""

from __future__ import annotations

import logging

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.errors import ConfigurationError, PermissionDenied, ProgrammingError
from dbsystem.kernel.hooks import Statement
from dbsystem.monitoring import PerformanceMonitor
from dbsystem.security import AccessControl, Permission, Role


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def statement(duration: float, *, backend="postgresql", operation="fetch_one", error=None):
    st = Statement(
        backend=backend,
        dialect=backend,
        pool="default",
        operation=operation,
        text="SELECT name FROM users WHERE id = 42 AND token = 'hunter2'",
    )
    st.duration, st.executed, st.error = duration, True, error
    return st


@pytest.fixture
def sqlite_db():
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite:///:memory:", max_size=2))
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    yield db
    db.close_all()


def test_summary_of_a_known_workload_is_exact_to_the_histograms_resolution():
    clock = FakeClock()
    monitor = PerformanceMonitor(window=60, clock=clock)
    clock.now += 10  # 10 s of history: rates are over the 10 s seen, not the 60 s window
    # 100 PostgreSQL reads of 1..100 ms, 20 failed Redis commands of 5 ms.
    for ms in range(1, 101):
        monitor.after_execute(statement(ms / 1000))
    for _ in range(20):
        monitor.after_execute(
            statement(0.005, backend="redis", operation="execute", error=ValueError())
        )
    s = monitor.summary()
    assert s.total_queries == 120 and s.errors == 20
    assert s.error_rate == pytest.approx(20 / 120)
    assert s.queries_per_second == pytest.approx(12.0)
    assert s.avg_latency == pytest.approx((sum(range(1, 101)) / 1000 + 20 * 0.005) / 120)
    pg = s.by_backend["postgresql"]
    assert pg.total_queries == 100 and pg.errors == 0
    assert pg.p50 == pytest.approx(0.050, rel=0.011)
    assert pg.p95 == pytest.approx(0.095, rel=0.011)
    assert pg.p99 == pytest.approx(0.099, rel=0.011)
    redis = s.by_operation["execute"]
    assert redis.error_rate == 1.0 and redis.p99 == pytest.approx(0.005, rel=0.011)
    assert set(s.by_backend) == {"postgresql", "redis"}


def test_the_window_slides_and_drops_old_seconds():
    clock = FakeClock()
    monitor = PerformanceMonitor(window=5, clock=clock)
    for _ in range(10):
        monitor.after_execute(statement(0.001))
    clock.now += 3
    for _ in range(4):
        monitor.after_execute(statement(0.001, error=ValueError()))
    assert monitor.summary().total_queries == 14
    assert monitor.summary(window=2).total_queries == 4  # a shorter look-back
    clock.now += 3  # the first 10 are now 6 s old
    s = monitor.summary()
    assert s.total_queries == 4 and s.error_rate == 1.0
    clock.now += 10
    assert monitor.summary().total_queries == 0
    assert monitor.query_counts() == {
        ("postgresql", "fetch_one", "ok"): 10,
        ("postgresql", "fetch_one", "error"): 4,
    }  # the running totals (Prometheus) never slide


def test_every_statement_of_a_real_backend_is_counted_with_its_outcome(sqlite_db):
    monitor = PerformanceMonitor().attach(sqlite_db)
    for i in range(50):
        sqlite_db.execute("INSERT INTO t (id, name) VALUES (:id, :name)", {"id": i, "name": "x"})
    sqlite_db.query(DatabaseType.SQLITE).select("id").from_("t").where("id", "=", 3).execute()
    with pytest.raises(ProgrammingError):
        sqlite_db.fetch_all("SELECT * FROM missing_table")
    s = monitor.summary()
    assert s.total_queries == 52 and s.errors == 1
    assert s.by_backend["sqlite"].total_queries == 52
    counts = monitor.query_counts()
    assert counts[("sqlite", "execute", "ok")] == 50
    assert counts[("sqlite", "fetch_all", "error")] == 1
    assert sum(counts.values()) == 52
    monitor.close()
    sqlite_db.execute("DELETE FROM t")
    assert monitor.summary().total_queries == 52  # detached: no longer counted


def test_refused_statements_count_as_denied(sqlite_db):
    monitor = PerformanceMonitor().attach(sqlite_db)
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"t": Permission.SELECT}))
    acl.assign_role("ann", "reader")
    sqlite_db.use_access_control(acl)
    session = sqlite_db.for_user("ann")
    session.fetch_all("SELECT * FROM t")
    with pytest.raises(PermissionDenied):
        session.execute("DELETE FROM t")
    counts = monitor.query_counts()
    assert counts[("sqlite", "fetch_all", "ok")] == 1
    assert counts[("sqlite", "execute", "denied")] == 1
    assert monitor.summary().errors == 1


def test_slow_queries_are_logged_by_shape_without_values(caplog):
    monitor = PerformanceMonitor(slow_query_threshold=0.5)
    with caplog.at_level(logging.WARNING, logger="dbsystem.slow"):
        monitor.after_execute(statement(0.2))
        monitor.after_execute(statement(0.75))
    assert monitor.slow_queries_total == 1
    (slow,) = monitor.slow_queries
    assert slow.duration == 0.75 and slow.backend == "postgresql" and slow.ok
    assert slow.statement == "select name from users where id = ? and token = ?"
    assert len(slow.fingerprint) == 24
    assert "0.750 s" in caplog.text
    assert "hunter2" not in caplog.text and "42" not in caplog.text


def test_slow_query_log_keeps_the_latest_entries():
    monitor = PerformanceMonitor(slow_query_threshold=0.0, slow_query_log_size=3)
    for ms in range(1, 6):
        monitor.after_execute(statement(ms / 1000))
    assert [round(q.duration * 1000) for q in monitor.slow_queries] == [3, 4, 5]
    assert monitor.slow_queries_total == 5


def test_instance_is_one_monitor_attached_to_the_process_manager():
    monitor = PerformanceMonitor.instance()
    try:
        assert PerformanceMonitor.instance() is monitor
        assert DatabaseManager.instance() in monitor.managers
        assert monitor in DatabaseManager.instance().hooks
    finally:
        monitor.close()
        PerformanceMonitor._instance = None


def test_a_window_under_a_second_is_refused():
    with pytest.raises(ConfigurationError, match="at least 1 second"):
        PerformanceMonitor(window=0.5)


def test_redis_and_mongodb_statements_are_timed_too():
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, "redis+mock://")
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://")
    monitor = PerformanceMonitor().attach(db)
    try:
        redis = db.connection(DatabaseType.REDIS)
        redis.execute("SET", "k", "v")
        redis.execute("GET", "k")
        users = db.query(DatabaseType.MONGODB).collection("users")
        users.insert_one({"name": "ada"}).execute()
        assert users.find({"name": "ada"}).count().execute() == 1
        summary = monitor.summary()
        assert set(summary.by_backend) == {"mock:redis", "mock:mongodb"}
        assert summary.by_backend["mock:redis"].total_queries == 2
        assert summary.by_backend["mock:mongodb"].total_queries == 2
    finally:
        monitor.close()
        db.close_all()
