"""DatabaseManager end to end: the snippet, pools by type and name, defaults, hooks, logging."""

from __future__ import annotations

import logging
import threading

import pytest

from dbsystem import (
    ConfigurationError,
    DatabaseManager,
    DatabaseType,
    ExecutionHook,
    InterfaceError,
    NotSupportedError,
    PermissionDenied,
    PoolClosed,
    PoolConfig,
    PoolStats,
)
from dbsystem.errors import BackendNotFound


@pytest.fixture
def db():
    manager = DatabaseManager()
    yield manager
    manager.close_all()


def test_issue_snippet_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = DatabaseManager.instance()
    try:
        db.create_pool(
            DatabaseType.SQLITE,
            PoolConfig(url="sqlite:///app.db", min_size=2, max_size=10, acquire_timeout=5.0),
        )
        with db.connection(DatabaseType.SQLITE) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
            conn.execute("INSERT INTO users (name) VALUES (:name)", {"name": "ada"})
            rows = conn.fetch_all("SELECT * FROM users WHERE name = :name", {"name": "ada"})
        assert rows == [{"id": 1, "name": "ada"}]
        stats = db.pool_stats()
        assert isinstance(stats[DatabaseType.SQLITE], PoolStats)
        assert stats[DatabaseType.SQLITE].total == 2
    finally:
        db.close_all()


def test_instance_is_a_thread_safe_singleton():
    seen = []
    threads = [
        threading.Thread(target=lambda: seen.append(DatabaseManager.instance())) for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m is seen[0] for m in seen)
    assert DatabaseManager.handle() is DatabaseManager.instance()
    assert DatabaseManager() is not DatabaseManager.instance()


def test_named_pools_and_default_mode(db, tmp_path):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    assert db.mode is DatabaseType.SQLITE  # a single pool is the default
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/b.db", name="reports")
    db.create_pool(DatabaseType.POSTGRES, "mock://postgresql")
    assert db.mode is None
    with pytest.raises(InterfaceError, match="set_mode"):
        db.fetch_all("SELECT 1")
    db.set_mode("sqlite")
    assert db.fetch_value("SELECT 41 + 1") == 42
    with db.connection(DatabaseType.SQLITE, name="reports") as conn:
        assert conn.backend.url.database.endswith("b.db")
    assert set(db.pool_stats()) == {
        DatabaseType.SQLITE,
        (DatabaseType.SQLITE, "reports"),
        DatabaseType.POSTGRES,
    }
    with pytest.raises(InterfaceError, match="no pool for mysql"):
        db.connection(DatabaseType.MYSQL)


def test_type_inferred_from_url(db):
    db.create_pool(DatabaseType.NONE, "sqlite://")
    assert db.mode is DatabaseType.SQLITE


def test_refusals(db):
    with pytest.raises(NotSupportedError, match="Oracle"):
        db.create_pool(DatabaseType.ORACLE, "sqlite://")
    with pytest.raises(BackendNotFound, match="valid schemes: .*sqlite"):
        db.create_pool(DatabaseType.SQLITE, "sqlserver://h/db")
    with pytest.raises(ConfigurationError, match="connects to sqlite, not postgres"):
        db.create_pool(DatabaseType.POSTGRES, "sqlite://")
    with pytest.raises(ConfigurationError, match="unknown database type"):
        db.create_pool("cassandra", "sqlite://")
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    with pytest.raises(ConfigurationError, match="already exists"):
        db.create_pool(DatabaseType.SQLITE, "sqlite://")
    with pytest.raises(ConfigurationError):
        db.create_pool(DatabaseType.SQLITE, 42)  # type: ignore[arg-type]


def test_close_all_then_reuse(db):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    pool = db.get_pool()
    db.close_all()
    with pytest.raises(PoolClosed):
        pool.acquire()
    with pytest.raises(InterfaceError, match="no pool"):
        db.connection(DatabaseType.SQLITE)
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    assert db.fetch_value("SELECT 1") == 1


def test_close_one_pool(db):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    db.close_pool(DatabaseType.SQLITE)
    with pytest.raises(InterfaceError):
        db.close_pool(DatabaseType.SQLITE)


def test_create_pool_from_environment(db, monkeypatch, tmp_path):
    monkeypatch.setenv("DBSYSTEM_SQLITE_URL", f"sqlite:///{tmp_path}/env.db?max_size=3")
    pool = db.create_pool(DatabaseType.SQLITE)
    assert pool.max_size == 3


def test_configure_from_toml(db, tmp_path):
    path = tmp_path / "dbsystem.toml"
    path.write_text(
        '[databases.main]\ntype = "sqlite"\nurl = "sqlite://"\ndefault = true\n'
        '[databases.postgres]\nurl = "mock://postgresql"\n'
    )
    db.configure(path)
    assert db.mode is DatabaseType.SQLITE
    assert db.get_pool(DatabaseType.SQLITE, "main").name == "main"
    assert db.mock(DatabaseType.POSTGRES).dialect == "postgresql"


class Recorder(ExecutionHook):
    def __init__(self) -> None:
        self.seen = []

    def after_execute(self, statement) -> None:
        self.seen.append(statement)


def test_hooks_see_every_statement_with_its_context(db):
    recorder = db.add_hook(Recorder())
    db.create_pool(DatabaseType.SQLITE, "sqlite://")  # hooks reach pools created later too
    with db.connection() as conn:
        conn.execute("CREATE TABLE t (x)")
        with conn.transaction():
            conn.executemany("INSERT INTO t VALUES (:x)", [{"x": 1}, {"x": 2}])
        assert conn.fetch_all("SELECT x FROM t WHERE x > :m", {"m": 0}) == [{"x": 1}, {"x": 2}]
    ops = [(s.operation, s.action) for s in recorder.seen]
    assert ops == [
        ("execute", "ddl"),
        ("begin", "transaction"),
        ("executemany", "insert"),
        ("commit", "transaction"),
        ("fetch_all", "select"),
    ]
    select = recorder.seen[-1]
    assert select.backend == "sqlite" and select.pool == "sqlite"
    assert select.params == {"m": 0} and select.rowcount == 2 and select.resources == ("t",)
    assert select.duration is not None and select.duration >= 0
    db.remove_hook(recorder)
    db.execute("SELECT 1")
    assert len(recorder.seen) == 5


class Refuser(ExecutionHook):
    def before_execute(self, statement) -> None:
        if statement.action == "delete":
            raise PermissionDenied(f"no {statement.action} on {statement.resources}")


def test_a_hook_can_refuse_a_statement_before_it_runs(db):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.add_hook(Refuser())
    with pytest.raises(PermissionDenied, match="no delete"):
        db.execute("DELETE FROM t")
    assert db.fetch_value("SELECT COUNT(*) FROM t") == 1


def test_echo_logs_statements_with_parameters_hidden(db, caplog):
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite://", echo=True))
    with caplog.at_level(logging.INFO, logger="dbsystem.sql"):
        db.fetch_all("SELECT :secret AS v", {"secret": "s3cr3t-value"})
    assert "SELECT :secret AS v" in caplog.text
    assert "s3cr3t-value" not in caplog.text and "[hidden]" in caplog.text


def test_debug_logger_enables_statement_logging_with_parameters_when_asked(db, caplog):
    with caplog.at_level(logging.DEBUG, logger="dbsystem.sql"):
        db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite://", log_parameters=True))
        db.fetch_all("SELECT :v AS v", {"v": "shown"})
    assert "shown" in caplog.text


def test_no_statement_logging_when_off(db, caplog):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    assert not db.get_pool().hooks
    with caplog.at_level(logging.DEBUG, logger="dbsystem.sql"):
        db.fetch_all("SELECT 1")
    assert "SELECT 1" not in caplog.text


def test_transaction_helper(db):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    db.execute("CREATE TABLE t (x)")
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError
    assert db.fetch_all("SELECT x FROM t") == [{"x": 1}]


def test_transaction_options_are_checked(db):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    with db.transaction(readonly=False, isolation=None, name=None) as conn:
        assert conn.in_transaction
    with (
        pytest.raises(InterfaceError, match="takes no option isolaton"),
        db.transaction(isolaton="serializable"),
    ):
        pass


def test_connection_use_after_release_is_refused(db):
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    with db.connection() as conn:
        pass
    with pytest.raises(InterfaceError, match="after it was returned"):
        conn.fetch_all("SELECT 1")
    with pytest.raises(InterfaceError, match="after it was returned"):
        conn.execute("SELECT 1")
