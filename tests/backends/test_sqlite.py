"""The SQLite backend through the manager: sharing, transactions, savepoints, errors, types."""

from __future__ import annotations

import datetime
import sqlite3
import threading

import pytest

from dbsystem import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PoolConfig,
    ProgrammingError,
)


@pytest.fixture
def db():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite://:memory:", max_size=4))
    manager.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)")
    yield manager
    manager.close_all()


def test_memory_database_is_shared_by_the_pools_connections(db):
    a = db.connection()
    b = db.connection()
    assert a.raw is not b.raw
    a.execute("INSERT INTO users (name) VALUES (:n)", {"n": "ada"})
    assert b.fetch_all("SELECT name FROM users") == [{"name": "ada"}]
    a.release()
    b.release()


def test_each_memory_pool_is_its_own_database(db):
    other = DatabaseManager()
    other.create_pool(DatabaseType.SQLITE, "sqlite://:memory:")
    try:
        with pytest.raises(ProgrammingError, match="no such table"):
            other.fetch_all("SELECT * FROM users")
    finally:
        other.close_all()


def test_memory_database_outlives_idle_connections():
    manager = DatabaseManager()
    manager.create_pool(
        DatabaseType.SQLITE, PoolConfig(url="sqlite://", min_size=0, max_size=1, max_lifetime=0.01)
    )
    try:
        manager.execute("CREATE TABLE t (x)")
        manager.execute("INSERT INTO t VALUES (1)")
        import time

        time.sleep(0.02)  # the connection expired and is replaced on next acquire
        assert manager.fetch_value("SELECT x FROM t") == 1
    finally:
        manager.close_all()


def test_file_database_uses_wal_and_foreign_keys(tmp_path):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/app.db")
    try:
        assert manager.fetch_value("PRAGMA journal_mode") == "wal"
        assert manager.fetch_value("PRAGMA foreign_keys") == 1
        manager.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        manager.execute("CREATE TABLE child (pid INTEGER REFERENCES parent(id))")
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            manager.execute("INSERT INTO child VALUES (42)")
    finally:
        manager.close_all()
    assert (tmp_path / "app.db").exists()


def test_url_options_set_pragmas(tmp_path):
    manager = DatabaseManager()
    url = f"sqlite:///{tmp_path}/x.db?journal_mode=delete&synchronous=normal"
    manager.create_pool(DatabaseType.SQLITE, url)
    try:
        assert manager.fetch_value("PRAGMA journal_mode") == "delete"
        assert manager.fetch_value("PRAGMA synchronous") == 1
    finally:
        manager.close_all()


def test_unknown_sqlite_option_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown SQLite URL option"):
        DatabaseManager().create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/x.db?colour=1")


def test_unopenable_file_raises_connection_failed(tmp_path):
    with pytest.raises(ConnectionFailed, match="cannot open SQLite database"):
        DatabaseManager().create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/no/such/dir.db")


def test_autocommit_outside_transaction(db):
    with db.connection() as a, db.connection() as b:
        a.execute("INSERT INTO users (name) VALUES ('x')")
        assert b.fetch_value("SELECT COUNT(*) FROM users") == 1


def test_transaction_commits_on_clean_exit_and_hides_until_then(tmp_path):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/tx.db")
    try:
        manager.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        with manager.connection() as a, manager.connection() as b:
            with a.transaction():
                a.execute("INSERT INTO users (name) VALUES ('x')")
                assert a.in_transaction
                # WAL: the other connection reads the last committed snapshot.
                assert b.fetch_value("SELECT COUNT(*) FROM users") == 0
            assert not a.in_transaction
            assert b.fetch_value("SELECT COUNT(*) FROM users") == 1
    finally:
        manager.close_all()


def test_memory_database_readers_wait_for_a_writer_then_fail_clearly():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite://", connect_timeout=0.05))
    try:
        manager.execute("CREATE TABLE t (x)")
        with manager.connection() as a, manager.connection() as b:
            with a.transaction():
                a.execute("INSERT INTO t VALUES (1)")
                with pytest.raises(OperationalError, match="locked"):
                    b.fetch_all("SELECT * FROM t")
            assert b.fetch_value("SELECT COUNT(*) FROM t") == 1
    finally:
        manager.close_all()


def test_exception_rolls_back_everything_in_the_block(db):
    with db.connection() as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute("INSERT INTO users (name) VALUES ('x')")
            raise RuntimeError("abort")
        assert conn.fetch_value("SELECT COUNT(*) FROM users") == 0


def test_nested_blocks_are_savepoints(db):
    with db.connection() as conn:
        with conn.transaction():
            conn.execute("INSERT INTO users (name) VALUES ('outer')")
            with pytest.raises(IntegrityError), conn.transaction():
                conn.execute("INSERT INTO users (name) VALUES ('inner')")
                conn.execute("INSERT INTO users (name) VALUES ('outer')")  # duplicate
            with conn.transaction():
                conn.execute("INSERT INTO users (name) VALUES ('kept')")
        names = [r["name"] for r in conn.fetch_all("SELECT name FROM users ORDER BY id")]
        assert names == ["outer", "kept"]


def test_readonly_transaction_refuses_writes_and_resets_after(db):
    with db.connection() as conn:
        with pytest.raises(OperationalError, match="readonly"), conn.transaction(readonly=True):
            conn.execute("INSERT INTO users (name) VALUES ('x')")
        conn.execute("INSERT INTO users (name) VALUES ('y')")
        assert conn.fetch_value("SELECT COUNT(*) FROM users") == 1


def test_isolation_levels(db):
    with db.connection() as conn:
        with conn.transaction(isolation="serializable"):
            conn.execute("INSERT INTO users (name) VALUES ('x')")
        with pytest.raises(InterfaceError, match="unknown isolation level"):
            with conn.transaction(isolation="chaotic"):
                pass
        with conn.transaction(), pytest.raises(InterfaceError, match="outermost"):
            with conn.transaction(isolation="read committed"):
                pass


def test_connection_returned_inside_a_transaction_is_rolled_back(db):
    pool = db.get_pool()
    lease = pool.acquire()
    lease.raw.begin()
    lease.execute("INSERT INTO users (name) VALUES ('ghost')")
    lease.release()
    assert db.fetch_value("SELECT COUNT(*) FROM users") == 0
    with db.connection() as conn:
        assert not conn.raw.in_transaction


def test_error_mapping(db):
    db.execute("INSERT INTO users (name) VALUES ('a')")
    with pytest.raises(IntegrityError) as info:
        db.execute("INSERT INTO users (name) VALUES (:n)", {"n": "a"})
    err = info.value
    assert err.backend == "sqlite" and isinstance(err.__cause__, sqlite3.IntegrityError)
    assert "INSERT INTO users" in str(err) and err.params is None and "'a'" not in str(err)
    with pytest.raises(IntegrityError, match="NOT NULL"):
        db.execute("INSERT INTO users (name) VALUES (NULL)")
    with pytest.raises(ProgrammingError, match="syntax error"):
        db.execute("SELEC 1")
    with pytest.raises(ProgrammingError, match="no such table"):
        db.fetch_all("SELECT * FROM nope")
    with pytest.raises(ProgrammingError):
        db.fetch_all("SELECT :a", {"b": 1})


def test_parameters_shown_in_errors_only_when_asked():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite://", log_parameters=True))
    try:
        manager.execute("CREATE TABLE t (x UNIQUE)")
        manager.execute("INSERT INTO t VALUES (:x)", {"x": "v1"})
        with pytest.raises(IntegrityError) as info:
            manager.execute("INSERT INTO t VALUES (:x)", {"x": "v1"})
        assert info.value.params == {"x": "v1"} and "'v1'" in str(info.value)
    finally:
        manager.close_all()


def test_parameters_must_be_a_mapping(db):
    with pytest.raises(InterfaceError, match="mapping"):
        db.fetch_all("SELECT * FROM users WHERE id = :id", [1])  # type: ignore[arg-type]
    with pytest.raises(InterfaceError, match="sequence of parameter mappings"):
        with db.connection() as conn:
            conn.executemany("INSERT INTO users (name) VALUES (:n)", {"n": 1})  # type: ignore


def test_execute_result_and_fetch_helpers(db):
    with db.connection() as conn:
        result = conn.execute("INSERT INTO users (name) VALUES (:n)", {"n": "a"})
        assert result == 1 and result.rowcount == 1 and result.lastrowid == 1
        many = conn.executemany("INSERT INTO users (name) VALUES (:n)", [{"n": "b"}, {"n": "c"}])
        assert many == 2
        assert conn.execute("UPDATE users SET name = name || '!'") == 3
        assert conn.fetch_one("SELECT * FROM users WHERE id = :id", {"id": 2}) == {
            "id": 2,
            "name": "b!",
        }
        assert conn.fetch_one("SELECT * FROM users WHERE id = 99") is None
        assert conn.fetch_value("SELECT COUNT(*) FROM users") == 3
        assert conn.fetch_value("SELECT name FROM users WHERE id = 99") is None
        assert conn.fetch_all("SELECT * FROM users WHERE id > 99") == []


def test_value_round_trip(db):
    db.execute("CREATE TABLE vals (i INTEGER, f REAL, s TEXT, b BLOB, n TEXT)")
    row = {"i": 2**62, "f": 1.5, "s": "héllo ✓", "b": b"\x00\xff", "n": None}
    db.execute("INSERT INTO vals VALUES (:i, :f, :s, :b, :n)", row)
    assert db.fetch_one("SELECT * FROM vals") == row
    with pytest.raises(ProgrammingError, match="not supported"):
        db.execute("INSERT INTO vals (i) VALUES (:i)", {"i": datetime.UTC})


def test_values_without_a_storage_class_are_stored_as_text(db):
    import decimal
    import uuid

    db.execute("CREATE TABLE extra (d TEXT, u TEXT, ts TEXT, day TEXT, doc TEXT)")
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    db.execute(
        "INSERT INTO extra VALUES (:d, :u, :ts, :day, :doc)",
        {
            "d": decimal.Decimal("1.10"),
            "u": ident,
            "ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "day": datetime.date(2024, 1, 2),
            "doc": {"a": [1, 2]},
        },
    )
    assert db.fetch_one("SELECT * FROM extra") == {
        "d": "1.1",  # bound as the number (a TEXT column keeps its text form)
        "u": str(ident),
        "ts": "2024-01-02 03:04:05",
        "day": "2024-01-02",
        "doc": '{"a":[1,2]}',
    }
    with db.connection() as conn:
        conn.executemany("INSERT INTO extra (d) VALUES (:d)", [{"d": decimal.Decimal("2")}])
    assert (
        db.fetch_value("SELECT COUNT(*) FROM extra WHERE d = :d", {"d": decimal.Decimal("2")}) == 1
    )


def test_a_datetime_is_one_text_whichever_path_binds_it(db):
    """Bound alone (sqlite3's adapter) or next to a Decimal (adapted by the backend after
    sqlite3 refused the Decimal): the same text, so equality and order hold (issue 21)."""
    import decimal

    moment = datetime.datetime(2024, 1, 2, 3, 4, 5)
    db.execute("CREATE TABLE moments (ts TEXT, d TEXT)")
    db.execute("INSERT INTO moments (ts) VALUES (:ts)", {"ts": moment})
    db.execute("INSERT INTO moments VALUES (:ts, :d)", {"ts": moment, "d": decimal.Decimal("1")})
    assert db.fetch_value("SELECT COUNT(DISTINCT ts) FROM moments") == 1
    found = db.fetch_value(
        "SELECT COUNT(*) FROM moments WHERE ts = :ts AND :d = :d",
        {"ts": moment, "d": decimal.Decimal("1")},
    )
    assert found == 2


def test_insert_many_with_a_value_to_adapt_after_the_first_row(db):
    """sqlite3 runs the rows before the first it cannot bind; the backend goes on from
    there instead of running them again (which failed on the primary key) (issue 21)."""
    import decimal

    db.execute("CREATE TABLE amounts (id INTEGER PRIMARY KEY, d DECIMAL(8, 2))")
    rows = [{"id": 0, "d": None}, {"id": 1, "d": decimal.Decimal("-1.50")}, {"id": 2, "d": 3}]
    assert db.insert_many("amounts", rows) == 3
    assert db.fetch_all("SELECT id, d FROM amounts ORDER BY id") == [
        {"id": 0, "d": None},
        {"id": 1, "d": -1.5},
        {"id": 2, "d": 3},
    ]


def test_threads_share_the_pool(db):
    def work(n: int) -> None:
        for i in range(20):
            with db.connection() as conn:
                conn.execute("INSERT INTO users (name) VALUES (:n)", {"n": f"{n}-{i}"})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.fetch_value("SELECT COUNT(*) FROM users") == 120
    assert db.pool_stats()[DatabaseType.SQLITE].total <= 4


def test_a_decimal_parameter_compares_as_a_number(db):
    """Bound as text, ``x <= '-1.50'`` held for every number x and COALESCE gave text
    (found by the differential fuzzer, issue 21)."""
    import decimal

    assert db.fetch_value("SELECT 0.25 / 4 <= :p", {"p": decimal.Decimal("-1.50")}) == 0
    assert db.fetch_value("SELECT coalesce(NULL, :p)", {"p": decimal.Decimal("0.25")}) == 0.25
    assert db.fetch_value("SELECT :p + 1", {"p": decimal.Decimal("2")}) == 3
    digits = decimal.Decimal("1234567890.1234567890")  # more than a float holds: exact text
    assert db.fetch_value("SELECT :p", {"p": digits}) == "1234567890.1234567890"


def test_a_list_of_decimals_or_dates_after_in(db):
    """Items that need adapting, in a list that is expanded: the raw list was also adapted
    (to JSON) and raised a bare TypeError (found by the differential fuzzer, issue 21)."""
    import decimal

    db.execute("CREATE TABLE prices (id INTEGER PRIMARY KEY, d DECIMAL(8, 2), day DATE)")
    db.insert_many(
        "prices",
        [
            {"id": 1, "d": decimal.Decimal("0.25"), "day": datetime.date(2024, 2, 29)},
            {"id": 2, "d": decimal.Decimal("2.10"), "day": datetime.date(2000, 1, 1)},
        ],
    )
    many = [decimal.Decimal("0.25")] + [decimal.Decimal(n) for n in range(40)]
    assert db.fetch_all("SELECT id FROM prices WHERE d IN :ds", {"ds": many}) == [{"id": 1}]
    assert db.fetch_all("SELECT id FROM prices WHERE d NOT IN (:ds)", {"ds": many}) == [{"id": 2}]
    days = [datetime.date(2000, 1, 1), datetime.date(1999, 1, 1)]
    assert db.fetch_all("SELECT id FROM prices WHERE day IN :days", {"days": days}) == [{"id": 2}]
    with pytest.raises(ProgrammingError, match="cannot be stored in JSON"):
        db.execute("INSERT INTO prices (id, d) VALUES (9, :v)", {"v": [object()]})
