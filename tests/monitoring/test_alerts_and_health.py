"""Alerts fire once per breach and resolve; health is up, degraded or down, and answers at once."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.kernel.hooks import Statement
from dbsystem.monitoring import HealthMonitor, HealthStatus, PerformanceMonitor
from tests.faults.proxy import TcpProxy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(monitor, n, *, duration=0.001, failed=False):
    for _ in range(n):
        st = Statement(backend="sqlite", dialect="sqlite", pool="default", operation="execute",
                       text="SELECT 1")  # fmt: skip
        st.duration, st.executed = duration, True
        st.error = RuntimeError("boom") if failed else None
        monitor.after_execute(st)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def monitor():
    clock = FakeClock()
    monitor = PerformanceMonitor(window=10, clock=clock)
    monitor.clock = clock
    yield monitor
    monitor.close()


def test_error_rate_alert_fires_once_per_breach_and_resolves(monitor):
    monitor.set_alert_thresholds(error_rate=0.05, min_queries=10, cooldown=0)
    feed(monitor, 95)
    feed(monitor, 5, failed=True)  # exactly 5%: not above
    assert monitor.evaluate_alerts() == []
    feed(monitor, 10, failed=True)  # 15 / 110
    (alert,) = monitor.evaluate_alerts()
    assert (alert.name, alert.state) == ("error_rate", "firing")
    assert alert.value == pytest.approx(15 / 110) and alert.threshold == 0.05
    assert "error rate 13.6% is above 5.0%" in alert.message
    feed(monitor, 10, failed=True)
    assert monitor.evaluate_alerts() == []  # still breached: not sent again
    assert [a.name for a in monitor.firing] == ["error_rate"]
    monitor.clock.now += 11  # the failures leave the window
    feed(monitor, 20)
    (resolved,) = monitor.evaluate_alerts()
    assert (resolved.name, resolved.state) == ("error_rate", "resolved")
    assert monitor.firing == []


def test_too_few_statements_never_alert(monitor):
    monitor.set_alert_thresholds(error_rate=0.01, latency=0.001, min_queries=10)
    feed(monitor, 9, duration=5.0, failed=True)
    assert monitor.evaluate_alerts() == []


def test_latency_alert_uses_p95_and_cooldown_stops_flapping(monitor):
    monitor.set_alert_thresholds(latency=0.1, cooldown=30)
    feed(monitor, 90, duration=0.01)
    feed(monitor, 10, duration=0.5)  # p95 is 0.5 s
    (alert,) = monitor.evaluate_alerts()
    assert alert.name == "latency" and alert.value == pytest.approx(0.5, rel=0.011)
    monitor.clock.now += 11
    feed(monitor, 100, duration=0.01)
    assert [a.state for a in monitor.evaluate_alerts()] == ["resolved"]
    feed(monitor, 100, duration=1.0)  # breached again 11 s after firing: inside the cooldown
    assert monitor.evaluate_alerts() == []
    monitor.clock.now += 20  # 31 s after it fired; still breached (the slow ones are recent)
    feed(monitor, 100, duration=1.0)
    assert [(a.name, a.state) for a in monitor.evaluate_alerts()] == [("latency", "firing")]


def test_pool_saturation_alert_names_the_pool():
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite:///:memory:", max_size=2))
    db.create_pool(
        DatabaseType.SQLITE, PoolConfig(url="sqlite:///:memory:", max_size=4), name="reports"
    )
    monitor = PerformanceMonitor().attach(db)
    try:
        monitor.set_alert_thresholds(pool_saturation=0.9)
        held = [db.connection(DatabaseType.SQLITE) for _ in range(2)]
        (alert,) = monitor.evaluate_alerts()
        assert (alert.name, alert.pool, alert.state) == ("pool_saturation", "sqlite", "firing")
        assert alert.value == 1.0 and "pool sqlite is saturated" in alert.message
        held.pop().release()
        (resolved,) = monitor.evaluate_alerts()
        assert (resolved.pool, resolved.state) == ("sqlite", "resolved")
        held.pop().release()
    finally:
        monitor.close()
        db.close_all()


def test_handlers_run_on_the_evaluator_thread_within_a_second_and_may_fail(monitor, caplog):
    seen: list = []
    monitor.set_alert_thresholds(error_rate=0.5, min_queries=1, interval=0.05)

    def broken(alert):
        raise RuntimeError("handler bug")

    monitor.register_alert_handler(broken)
    monitor.register_alert_handler(seen.append)
    feed(monitor, 3, failed=True)
    wait_until(lambda: seen)
    assert seen[0].name == "error_rate" and seen[0].state == "firing"
    assert "handler bug" in caplog.text  # logged, never raised into the evaluator


@pytest.fixture
def sqlite_db():
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite:///:memory:", max_size=2))
    yield db
    db.close_all()


def test_health_is_up_with_latency_and_pings_are_not_counted_as_queries(sqlite_db):
    monitor = PerformanceMonitor().attach(sqlite_db)
    health = sqlite_db.health()
    assert list(health) == ["sqlite"]
    result = health["sqlite"]
    assert result.status is HealthStatus.UP and result.ok
    assert result.latency is not None and 0 <= result.latency < 0.5
    assert monitor.summary().total_queries == 0
    monitor.close()


def test_a_saturated_pool_is_degraded_and_readiness_never_queues(sqlite_db):
    held = [sqlite_db.connection(DatabaseType.SQLITE) for _ in range(2)]
    waiter = threading.Thread(
        target=lambda: sqlite_db.connection(DatabaseType.SQLITE, timeout=1.0).release()
    )
    waiter.start()  # a caller queued behind the held connections
    try:
        wait_until(lambda: sqlite_db.get_pool(DatabaseType.SQLITE).stats().waiting == 1)
        start = time.monotonic()
        result = sqlite_db.health()["sqlite"]
        assert time.monotonic() - start < 0.2
        assert result.status is HealthStatus.DEGRADED
        assert "saturated: 2 of 2 connections in use, 1 callers waiting" in result.detail
        assert sqlite_db.get_pool(DatabaseType.SQLITE).stats().timeouts == 0
    finally:
        for lease in held:
            lease.release()
        waiter.join()


def test_health_monitor_answers_from_its_last_check(sqlite_db):
    with HealthMonitor(sqlite_db, interval=0.05) as health:
        first = sqlite_db.health()["sqlite"]
        wait_until(lambda: sqlite_db.health()["sqlite"].checked_at > first.checked_at)
        held = [sqlite_db.connection(DatabaseType.SQLITE) for _ in range(2)]
        wait_until(lambda: sqlite_db.health()["sqlite"].status is HealthStatus.DEGRADED)
        for lease in held:
            lease.release()
        wait_until(lambda: sqlite_db.health()["sqlite"].status is HealthStatus.UP)
        assert health.running
    assert sqlite_db._health_monitor is None


def test_health_follows_a_postgresql_server_going_down_and_coming_back(postgres_url):
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    db = DatabaseManager()
    # Trust auth ignores the password: it is there to show it never reaches the health record.
    url = proxy.url(postgres_url).replace("://root@", "://root:S3cr3t-CANARY-7f1e@")
    assert "S3cr3t-CANARY-7f1e" in url
    db.create_pool(
        DatabaseType.POSTGRES,
        PoolConfig(url=url, min_size=1, max_size=2, connect_timeout=2, health_check_interval=0),
    )
    try:
        with HealthMonitor(db, interval=0.1):
            assert db.health()["postgres"].status is HealthStatus.UP
            proxy.down()
            wait_until(lambda: db.health()["postgres"].status is HealthStatus.DOWN, 10)
            down = db.health()["postgres"]
            assert not down.ok and down.last_error and "ConnectionFailed" in down.last_error
            assert "S3cr3t-CANARY-7f1e" not in down.last_error + down.detail
            proxy.up()
            wait_until(lambda: db.health()["postgres"].status is HealthStatus.UP, 10)
            back = db.health()["postgres"]
            assert back.last_error == down.last_error  # kept after recovery
            assert db.fetch_value("SELECT 1") == 1
    finally:
        proxy.down()
        db.close_all()
