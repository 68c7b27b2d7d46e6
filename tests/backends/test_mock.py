"""The mock backend: scripted answers, recorded calls, assertions, and loud failure otherwise."""

from __future__ import annotations

import re
import time

import pytest

from dbsystem import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    PoolConfig,
)


@pytest.fixture
def db():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.POSTGRES, PoolConfig(url="mock://postgresql"))
    yield manager
    manager.close_all()


def test_scripted_rows_and_recorded_calls(db):
    mock = db.mock(DatabaseType.POSTGRES)
    mock.expect("SELECT ... FROM users ...").returns([{"id": 1, "name": "ada"}])
    with db.connection(DatabaseType.POSTGRES) as conn:
        rows = conn.fetch_all("SELECT id, name FROM users WHERE id = :id", {"id": 1})
        assert rows == [{"id": 1, "name": "ada"}]
        rows[0]["name"] = "changed"  # callers get copies
        assert conn.fetch_one("select *   from users where 1=1")["name"] == "ada"
        assert conn.fetch_value("SELECT name FROM users LIMIT 1") == 1  # first column: id
    mock.assert_executed("SELECT ... FROM users ...", params={"id": 1}, times=1)
    mock.assert_executed(re.compile(r"(?i)from users"), times=3)
    assert mock.calls[0].operation == "fetch_all" and mock.calls[0].params == {"id": 1}


def test_pattern_must_match_the_whole_statement(db):
    mock = db.mock(DatabaseType.POSTGRES)
    mock.expect("SELECT * FROM users").returns([{"id": 1}])
    with pytest.raises(NotSupportedError, match="no expectation matches"):
        db.fetch_all("SELECT * FROM users WHERE id = 2")


def test_rowcount_lastrowid_errors_and_delay(db):
    mock = db.mock(DatabaseType.POSTGRES)
    mock.expect("UPDATE users ...").affects(3)
    mock.expect("INSERT INTO users ...", params={"name": "dup"}).raises(IntegrityError("dup"))
    mock.expect("INSERT INTO users ...").affects(1, lastrowid=42)
    mock.expect("SELECT pg_sleep(...)").delay(0.05).returns([])
    assert db.execute("UPDATE users SET a = 1") == 3
    with pytest.raises(IntegrityError, match="dup"):
        db.execute("INSERT INTO users (name) VALUES (:name)", {"name": "dup"})
    result = db.execute("INSERT INTO users (name) VALUES (:name)", {"name": "ok"})
    assert (result.rowcount, result.lastrowid) == (1, 42)
    start = time.monotonic()
    db.fetch_all("SELECT pg_sleep(1)")
    assert time.monotonic() - start >= 0.05


def test_error_class_gets_a_message_naming_the_mock(db):
    mock = db.mock(DatabaseType.POSTGRES)
    mock.expect("DELETE FROM users").raises(IntegrityError)
    with pytest.raises(IntegrityError) as info:
        db.execute("DELETE FROM users")
    assert info.value.backend == "mock:postgresql"


def test_times_limits_an_expectation_and_assertions_report(db):
    mock = db.mock(DatabaseType.POSTGRES)
    once = mock.expect("SELECT 1", times=1).returns([{"v": 1}])
    mock.expect("SELECT 1").returns([{"v": 2}])
    assert db.fetch_value("SELECT 1") == 1
    assert db.fetch_value("SELECT 1") == 2
    assert once.exhausted
    mock.assert_expectations_met()
    mock.expect("SELECT never")
    with pytest.raises(AssertionError, match="not met"):
        mock.assert_expectations_met()
    with pytest.raises(AssertionError, match="ran 2 time"):
        mock.assert_not_executed("SELECT 1")
    with pytest.raises(AssertionError, match="to run at least once"):
        mock.assert_executed("SELECT 2")
    mock.clear()
    assert mock.calls == []


def test_transactions_are_recorded(db):
    mock = db.mock(DatabaseType.POSTGRES)
    mock.expect("INSERT ...").affects(1)
    with db.connection(DatabaseType.POSTGRES) as conn:
        with conn.transaction(isolation="serializable"):
            conn.execute("INSERT INTO a VALUES (1)")
            with pytest.raises(RuntimeError), conn.transaction():
                raise RuntimeError
    assert mock.statements == [
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "INSERT INTO a VALUES (1)",
        "SAVEPOINT dbsystem_sp_1",
        "ROLLBACK TO SAVEPOINT dbsystem_sp_1",
        "COMMIT",
    ]


def test_non_strict_mock_answers_unmatched_statements_with_nothing():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.MYSQL, "mock://mysql?strict=false")
    try:
        assert manager.fetch_all("SELECT anything") == []
        assert manager.execute("DELETE FROM x") == 0
        assert manager.mock().dialect == "mysql"
    finally:
        manager.close_all()


def test_connection_failures_on_demand():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.POSTGRES, PoolConfig(url="mock://postgresql", min_size=0))
    try:
        mock = manager.mock()
        mock.expect("SELECT 1").returns([{"one": 1}])
        mock.fail_connections()
        with pytest.raises(ConnectionFailed, match="mock server unavailable"):
            manager.fetch_value("SELECT 1")
        mock.allow_connections()
        assert manager.fetch_value("SELECT 1") == 1
        assert mock.connections_opened == 1
    finally:
        manager.close_all()


def test_mock_takes_the_pools_dialect_and_refuses_a_mismatch():
    manager = DatabaseManager()
    try:
        manager.create_pool(DatabaseType.POSTGRES, "mock://")
        assert manager.mock().dialect == "postgresql"
        with pytest.raises(ConfigurationError, match="mocks mysql"):
            manager.create_pool(DatabaseType.SQLITE, "mock://mysql")
        with pytest.raises(ConfigurationError, match="SQL mock"):
            manager.create_pool(DatabaseType.REDIS, "mock://")
        with pytest.raises(ConfigurationError, match="unknown database type"):
            manager.create_pool(DatabaseType.MYSQL, "mock://oracle9", name="x")
    finally:
        manager.close_all()


def test_mock_accessor_refuses_real_pools():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, "sqlite://")
    try:
        with pytest.raises(InterfaceError, match="not a mock"):
            manager.mock()
    finally:
        manager.close_all()
