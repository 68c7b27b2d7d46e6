"""One contract for every SQL backend: SQLite always; PostgreSQL and MySQL when configured.

The same test body runs against each backend, so "behaves exactly like the SQLite backend"
is checked rather than hoped for.
"""

from __future__ import annotations

import datetime
import decimal
import threading
import uuid

import pytest

from dbsystem import (
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    IntegrityError,
    OperationalError,
    PoolConfig,
    ProgrammingError,
)
from dbsystem.errors import DBSystemError
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

BACKENDS = SQL_BACKENDS
SERVER_BACKENDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
TYPES = SQL_TYPES


@pytest.fixture(params=BACKENDS)
def backend_url(request, tmp_path):
    kind = request.param
    if kind == "sqlite":
        return kind, f"sqlite:///{tmp_path}/contract.db"
    return kind, request.getfixturevalue(f"{kind}_url")


@pytest.fixture
def db(backend_url):
    kind, url = backend_url
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], PoolConfig(url=url, min_size=1, max_size=4, acquire_timeout=5))
    manager.kind = kind  # type: ignore[attr-defined]
    yield manager
    manager.close_all()


@pytest.fixture
def table(db):
    name = f"t_{uuid.uuid4().hex[:12]}"
    db.execute(
        f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE, "
        "score INTEGER)"
    )
    yield name
    db.execute(f"DROP TABLE IF EXISTS {name}")


def test_statements_rows_and_counts(db, table):
    with db.connection() as conn:
        assert (
            conn.execute(
                f"INSERT INTO {table} (id, name, score) VALUES (:id, :n, :s)",
                {"id": 1, "n": "ada", "s": 10},
            )
            == 1
        )
        assert (
            conn.executemany(
                f"INSERT INTO {table} (id, name, score) VALUES (:id, :n, :s)",
                [{"id": 2, "n": "bob", "s": 20}, {"id": 3, "n": "cy", "s": 30}],
            )
            == 3 - 1
        )
        assert conn.fetch_all(
            f"SELECT id, name FROM {table} WHERE score >= :m ORDER BY id", {"m": 20}
        ) == [{"id": 2, "name": "bob"}, {"id": 3, "name": "cy"}]
        assert conn.fetch_one(f"SELECT name FROM {table} WHERE id = :id", {"id": 1}) == {
            "name": "ada"
        }
        assert conn.fetch_one(f"SELECT name FROM {table} WHERE id = :id", {"id": 9}) is None
        assert conn.fetch_value(f"SELECT COUNT(*) FROM {table}") == 3
        assert conn.execute(f"UPDATE {table} SET score = score + 1 WHERE score > :m", {"m": 0}) == 3
        assert conn.execute(f"DELETE FROM {table} WHERE id = :id", {"id": 3}) == 1
        assert conn.fetch_all(f"SELECT * FROM {table} WHERE id > 100") == []


def test_parameter_rules(db, table):
    with db.connection() as conn:
        conn.execute(
            f"INSERT INTO {table} (id, name) VALUES (:id, :name)", {"id": 1, "name": "50% :off"}
        )
        # A :word inside a literal is text; a % in a literal is text; a name may repeat.
        row = conn.fetch_one(
            f"SELECT name, ':not_a_param' AS lit FROM {table} "
            "WHERE name LIKE '50%' AND id = :id AND id >= :id",
            {"id": 1},
        )
        assert row == {"name": "50% :off", "lit": ":not_a_param"}
        assert conn.fetch_value(f"SELECT COUNT(*) FROM {table} WHERE name LIKE '%off'") == 1
        with pytest.raises(ProgrammingError):
            conn.fetch_all(f"SELECT * FROM {table} WHERE id = :id", {"other": 1})


@pytest.mark.postgres
def test_postgres_casts_survive_parameter_rewriting(postgres_url):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.POSTGRES, postgres_url)
    try:
        assert manager.fetch_value("SELECT :v::int + 1", {"v": "41"}) == 42
        assert manager.fetch_value("SELECT $$ :x $$::text") == " :x "
        assert manager.fetch_value("SELECT :doc::jsonb -> 'a'", {"doc": {"a": [1]}}) == [1]
    finally:
        manager.close_all()


def test_transactions_commit_roll_back_and_nest(db, table):
    insert = f"INSERT INTO {table} (id, name) VALUES (:id, :name)"
    with db.connection() as conn:
        with conn.transaction():
            conn.execute(insert, {"id": 1, "name": "kept"})
            with pytest.raises(IntegrityError), conn.transaction():
                conn.execute(insert, {"id": 2, "name": "inner"})
                conn.execute(insert, {"id": 3, "name": "kept"})  # duplicate
            with conn.transaction():
                conn.execute(insert, {"id": 4, "name": "also kept"})
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute(insert, {"id": 5, "name": "gone"})
            raise RuntimeError
        names = [r["name"] for r in conn.fetch_all(f"SELECT name FROM {table} ORDER BY id")]
    assert names == ["kept", "also kept"]


def test_uncommitted_work_is_invisible_to_other_connections(db, table):
    with db.connection() as a, db.connection() as b:
        with a.transaction():
            a.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'x')")
            assert b.fetch_value(f"SELECT COUNT(*) FROM {table}") == 0
        assert b.fetch_value(f"SELECT COUNT(*) FROM {table}") == 1


def test_readonly_and_isolation(db, table):
    with db.connection() as conn:
        with pytest.raises(DBSystemError), conn.transaction(readonly=True):
            conn.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'x')")
        for level in ("read committed", "repeatable read", "serializable"):
            with conn.transaction(isolation=level):
                conn.fetch_all(f"SELECT * FROM {table}")
        conn.execute(f"INSERT INTO {table} (id, name) VALUES (2, 'y')")
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 1


def test_connection_returned_mid_transaction_is_rolled_back(db, table):
    lease = db.connection()
    lease.raw.begin()
    lease.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'ghost')")
    lease.release()
    with db.connection() as conn:
        assert not conn.raw.in_transaction
        assert conn.fetch_value(f"SELECT COUNT(*) FROM {table}") == 0


def test_error_mapping_names_the_backend_and_keeps_the_cause(db, table):
    db.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'a')")
    with pytest.raises(IntegrityError) as info:
        db.execute(f"INSERT INTO {table} (id, name) VALUES (2, 'a')")
    assert info.value.backend in ("sqlite", "postgresql", "mysql")
    assert info.value.__cause__ is not None and info.value.statement
    with pytest.raises(IntegrityError):
        db.execute(f"INSERT INTO {table} (id, name) VALUES (3, NULL)")
    with pytest.raises(ProgrammingError):
        db.execute("SELEC 1")
    with pytest.raises(ProgrammingError):
        db.fetch_all("SELECT * FROM no_such_table_here")
    with pytest.raises(ProgrammingError):
        db.fetch_all(f"SELECT no_such_column FROM {table}")
    # The connection is still good after each error.
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 1


def test_foreign_keys_are_enforced(db, table):
    child = f"{table}_child"
    db.execute(
        f"CREATE TABLE {child} (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES {table}(id))"
    )
    try:
        with pytest.raises(IntegrityError):
            db.execute(f"INSERT INTO {child} (id, parent) VALUES (1, 999)")
    finally:
        db.execute(f"DROP TABLE {child}")


COLUMN_TYPES = {
    "sqlite": {
        "i": "INTEGER",
        "f": "REAL",
        "d": "NUMERIC",
        "s": "TEXT",
        "b": "BLOB",
        "t": "BOOLEAN",
        "n": "TEXT",
    },
    "postgres": {
        "i": "BIGINT",
        "f": "DOUBLE PRECISION",
        "d": "NUMERIC(12,3)",
        "s": "TEXT",
        "b": "BYTEA",
        "t": "BOOLEAN",
        "n": "TEXT",
    },
    "mysql": {
        "i": "BIGINT",
        "f": "DOUBLE",
        "d": "DECIMAL(12,3)",
        "s": "TEXT",
        "b": "BLOB",
        "t": "BOOLEAN",
        "n": "TEXT",
    },
}


def test_basic_values_round_trip(db):
    name = f"v_{uuid.uuid4().hex[:10]}"
    columns = ", ".join(f"{c} {t}" for c, t in COLUMN_TYPES[db.kind].items())
    db.execute(f"CREATE TABLE {name} ({columns})")
    try:
        value = {
            "i": -(2**40),
            "f": 1.25,
            "d": decimal.Decimal("12.345"),
            "s": "héllo ✓ 'q'",
            "b": b"\x00\xff\x10",
            "t": True,
            "n": None,
        }
        db.execute(f"INSERT INTO {name} VALUES (:i, :f, :d, :s, :b, :t, :n)", value)
        row = db.fetch_one(f"SELECT * FROM {name}")
        assert row["i"] == value["i"] and row["f"] == value["f"] and row["s"] == value["s"]
        assert bytes(row["b"]) == value["b"] and bool(row["t"]) is True and row["n"] is None
        assert decimal.Decimal(str(row["d"])) == value["d"]
    finally:
        db.execute(f"DROP TABLE {name}")


@pytest.mark.parametrize("kind", SERVER_BACKENDS)
def test_dates_and_times(kind, request):
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], request.getfixturevalue(f"{kind}_url"))
    name = f"d_{uuid.uuid4().hex[:10]}"
    ts = "TIMESTAMP" if kind == "postgres" else "DATETIME(6)"
    manager.execute(f"CREATE TABLE {name} (d DATE, ts {ts}, tm TIME)")
    try:
        value = {
            "d": datetime.date(2024, 2, 29),
            "ts": datetime.datetime(2024, 2, 29, 13, 14, 15, 123456),
            "tm": datetime.time(23, 59, 58),
        }
        manager.execute(f"INSERT INTO {name} VALUES (:d, :ts, :tm)", value)
        row = manager.fetch_one(f"SELECT * FROM {name}")
        assert row["d"] == value["d"] and row["ts"] == value["ts"]
        tm = row["tm"]
        if isinstance(tm, datetime.timedelta):  # pymysql returns TIME as timedelta
            tm = (datetime.datetime.min + tm).time()
        assert tm == value["tm"]
    finally:
        manager.execute(f"DROP TABLE {name}")
        manager.close_all()


def test_threads_share_the_pool(db, table):
    errors = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                with db.connection() as conn:
                    conn.execute(
                        f"INSERT INTO {table} (id, name) VALUES (:id, :n)",
                        {"id": n * 100 + i, "n": f"{n}-{i}"},
                    )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 60
    stats = db.pool_stats()[TYPES[db.kind]]
    assert stats.total <= 4 and stats.active == 0


# -- server-side kills: the pool notices and replaces the connection ------------------------


def _kill(kind: str, url: str, conn) -> None:
    admin = DatabaseManager()
    admin.create_pool(TYPES[kind], PoolConfig(url=url, min_size=1, max_size=1))
    try:
        if kind == "postgres":
            admin.fetch_all("SELECT pg_terminate_backend(:pid)", {"pid": conn.raw.backend_pid})
        else:
            admin.execute(f"KILL {int(conn.raw.thread_id)}")
    finally:
        admin.close_all()


@pytest.mark.parametrize("kind", SERVER_BACKENDS)
def test_health_check_replaces_a_killed_idle_connection(kind, request):
    url = request.getfixturevalue(f"{kind}_url")
    manager = DatabaseManager()
    manager.create_pool(
        TYPES[kind], PoolConfig(url=url, min_size=1, max_size=1, health_check_interval=0)
    )
    try:
        with manager.connection() as conn:
            _kill(kind, url, conn)
        # Pinged on the way out, found dead, replaced: the caller sees no error.
        assert manager.fetch_value("SELECT 1") == 1
        assert manager.pool_stats()[TYPES[kind]].discarded == 1
    finally:
        manager.close_all()


@pytest.mark.parametrize("kind", SERVER_BACKENDS)
def test_killed_connection_fails_once_then_the_pool_recovers(kind, request):
    url = request.getfixturevalue(f"{kind}_url")
    manager = DatabaseManager()
    manager.create_pool(
        TYPES[kind], PoolConfig(url=url, min_size=1, max_size=1, health_check_interval=None)
    )
    try:
        with manager.connection() as conn:
            _kill(kind, url, conn)
            with pytest.raises(ConnectionFailed) as info:
                conn.fetch_value("SELECT 1")
            assert isinstance(info.value, OperationalError)
        # Dropped on return; the next borrower gets a fresh connection.
        assert manager.fetch_value("SELECT 1") == 1
        stats = manager.pool_stats()[TYPES[kind]]
        assert stats.discarded == 1 and stats.created == 2
    finally:
        manager.close_all()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_server_raises_connection_failed_without_the_password(scheme):
    manager = DatabaseManager()
    url = f"{scheme}://app:Sup3rSecret@127.0.0.1:1/db"
    with pytest.raises(ConnectionFailed) as info:
        manager.create_pool(DatabaseType.NONE, PoolConfig(url=url, connect_timeout=2))
    text = str(info.value)
    assert "Sup3rSecret" not in text and "127.0.0.1" in text
    assert info.value.backend == scheme


# -- insert_many and stream -----------------------------------------------------------------


def test_insert_many_inserts_everything(db, table):
    rows = [{"id": i, "name": f"n{i}", "score": i % 7} for i in range(1, 2501)]
    assert db.insert_many(table, rows) == 2500
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 2500
    assert db.fetch_value(f"SELECT SUM(score) FROM {table}") == sum(r["score"] for r in rows)
    assert db.fetch_one(f"SELECT * FROM {table} WHERE id = 2500") == {
        "id": 2500,
        "name": "n2500",
        "score": 2500 % 7,
    }


def test_insert_many_is_all_or_nothing_and_names_the_row(db, table):
    db.execute(f"INSERT INTO {table} (id, name) VALUES (0, 'taken')")
    rows = [{"id": i, "name": f"n{i}", "score": None} for i in range(1, 101)]
    rows[57]["name"] = "taken"
    with pytest.raises(IntegrityError) as info:
        db.insert_many(table, rows)
    assert info.value.row_index == 57 and "row 57 failed" in str(info.value)
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 1


def test_insert_many_inside_a_transaction_uses_a_savepoint(db, table):
    with db.connection() as conn, conn.transaction():
        conn.execute(f"INSERT INTO {table} (id, name) VALUES (0, 'outer')")
        with pytest.raises(IntegrityError):
            conn.insert_many(table, [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}])
        conn.insert_many(table, [{"id": 3, "name": "b"}])
    names = [r["name"] for r in db.fetch_all(f"SELECT name FROM {table} ORDER BY id")]
    assert names == ["outer", "b"]


def test_insert_many_refuses_bad_input_before_any_round_trip(db, table):
    from dbsystem import QueryBuildError

    with pytest.raises(QueryBuildError, match="row 1 has columns"):
        db.insert_many(table, [{"id": 1, "name": "a"}, {"id": 2}])
    with pytest.raises(QueryBuildError, match="not a valid identifier"):
        db.insert_many(f"{table}; DROP TABLE {table}", [{"id": 1, "name": "a"}])
    with pytest.raises(QueryBuildError, match="not a valid identifier"):
        db.insert_many(table, [{'name" FROM x;--': 1}])
    assert db.insert_many(table, []) == 0
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 0


def test_stream_yields_every_row_in_batches(db, table):
    db.insert_many(table, [{"id": i, "name": f"n{i}", "score": i} for i in range(1, 1001)])
    with db.connection() as conn:
        seen = [
            row["id"]
            for row in conn.stream(
                f"SELECT id FROM {table} WHERE score >= :m ORDER BY id", {"m": 1}, batch_size=64
            )
        ]
        assert seen == list(range(1, 1001))
        # A stream stopped early leaves the connection usable.
        stream = conn.stream(f"SELECT id FROM {table} ORDER BY id", batch_size=10)
        assert next(stream) == {"id": 1}
        stream.close()
        assert conn.fetch_value(f"SELECT COUNT(*) FROM {table}") == 1000
        assert not conn.in_transaction


def test_stream_errors_are_translated(db):
    with db.connection() as conn:
        with pytest.raises(ProgrammingError):
            list(conn.stream("SELECT * FROM no_such_table_for_stream"))
        assert conn.fetch_value("SELECT 1") == 1


def test_stream_outliving_its_lease_is_refused(db, table):
    db.insert_many(table, [{"id": i, "name": f"n{i}"} for i in range(1, 51)])
    with db.connection() as conn:
        stream = conn.stream(f"SELECT id FROM {table} ORDER BY id", batch_size=5)
        next(stream)
    from dbsystem import InterfaceError

    with pytest.raises(InterfaceError, match="returned to the pool"):
        next(stream)
    assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 50


_DIGITS = "(SELECT 0 AS d " + "".join(f"UNION ALL SELECT {i} " for i in range(1, 10)) + ")"
SERIES = {
    "sqlite": "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < :n) "
    "SELECT x, 'padding-padding-padding' AS pad FROM s",
    # MariaDB caps recursive CTEs at 1,000 iterations by default: multiply digits instead.
    "mysql": "SELECT x, 'padding-padding-padding' AS pad FROM (SELECT "
    + " + ".join(f"{10**i} * t{i}.d" for i in range(5))
    + " + 1 AS x FROM "
    + ", ".join(f"{_DIGITS} AS t{i}" for i in range(5))
    + ") AS s WHERE x <= :n",
    "postgres": "SELECT x, 'padding-padding-padding' AS pad FROM generate_series(1, :n) AS x",
}


@pytest.mark.slow
def test_stream_memory_stays_flat(db):
    import tracemalloc

    n = 100_000
    with db.connection() as conn:
        tracemalloc.start()
        try:
            total = 0
            for row in conn.stream(SERIES[db.kind], {"n": n}, batch_size=500):
                total += row["x"]
            _, stream_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            rows = conn.fetch_all(SERIES[db.kind], {"n": n})
            _, fetch_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == n * (n + 1) // 2 and len(rows) == n
    # Everything at once holds every row; the stream holds one batch.
    assert stream_peak < 3_000_000, stream_peak
    assert fetch_peak > 5 * stream_peak
