"""Every lease returns to the pool reset: the next borrower sees none of the last one's session.

Each case changes one piece of session state on a pool of one connection (so the next
lease is the same server session), then a probe on the next lease must read what a fresh
connection reads. Real servers, sync and async; the pool's own settings (from the URL and
``PoolConfig``) come back, and a lease that changed nothing costs no reset statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, PoolConfig
from dbsystem.errors import DBSystemError
from dbsystem.query import col


@dataclass(frozen=True)
class Leak:
    """Statements that change session state, and a probe of that state."""

    name: str
    change: tuple[str, ...]
    probe: str
    driver: Callable[[Any], None] | None = None  # a change made on the driver connection


PG_LEAKS = [
    Leak("statement_timeout", ("SET statement_timeout = '1234ms'",), "SHOW statement_timeout"),
    Leak(
        "set_config",
        ("SELECT set_config('application_name', 'leaked', false)",),
        "SELECT current_setting('application_name')",
    ),
    Leak("role", ("SET ROLE reset_leak_role",), "SELECT current_user"),
    Leak(
        "session_authorization",
        ("SET SESSION AUTHORIZATION reset_leak_role",),
        "SELECT session_user",
    ),
    Leak(
        "temp_table",
        ("CREATE TEMP TABLE reset_tmp (a int)",),
        "SELECT to_regclass('pg_temp.reset_tmp')::text",
    ),
    Leak(
        "prepare",
        ("PREPARE reset_p AS SELECT 1",),
        "SELECT count(*) FROM pg_prepared_statements WHERE name = 'reset_p'",
    ),
    Leak(
        "listen",
        ("LISTEN reset_channel",),
        "SELECT count(*) FROM pg_listening_channels() AS c WHERE c = 'reset_channel'",
    ),
    Leak(
        "advisory_lock",
        ("SELECT pg_advisory_lock(4242019)",),
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    ),
    Leak("search_path", ("SET search_path = pg_catalog",), "SHOW search_path"),
    Leak("time_zone", ("SET TIME ZONE 'Asia/Tokyo'",), "SHOW TimeZone"),
    Leak(
        "read_only_default",
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",),
        "SHOW default_transaction_read_only",
    ),
    Leak(
        "cursor_with_hold",
        ("DECLARE reset_c CURSOR WITH HOLD FOR SELECT 1",),
        "SELECT count(*) FROM pg_cursors WHERE name = 'reset_c'",
    ),
    Leak("work_mem", ("SET work_mem = '7MB'",), "SHOW work_mem"),
]

MYSQL_LEAKS = [
    Leak("user_variable", ("SET @reset_x = 5",), "SELECT @reset_x AS v"),
    Leak("sql_mode", ("SET SESSION sql_mode = 'ANSI_QUOTES'",), "SELECT @@SESSION.sql_mode"),
    Leak(
        "temp_table",
        ("CREATE TEMPORARY TABLE reset_tmp (a INT)", "INSERT INTO reset_tmp VALUES (1)"),
        "SELECT COUNT(*) FROM reset_tmp",  # an error once the table is gone
    ),
    Leak("use_other_db", ("USE mysql",), "SELECT DATABASE()"),
    Leak("names", ("SET NAMES latin1",), "SELECT @@character_set_client"),
    Leak("autocommit", ("SET autocommit = 0",), "SELECT @@autocommit"),
    Leak(
        "named_lock",
        ("SELECT GET_LOCK('reset_lock', 0)",),
        "SELECT IS_USED_LOCK('reset_lock') = CONNECTION_ID()",
    ),
    Leak(
        "isolation",
        ("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",),
        "SELECT @@tx_isolation",
    ),
    Leak("time_zone", ("SET time_zone = '+05:00'",), "SELECT @@time_zone"),
    Leak("select_into_var", ("SELECT 7 INTO @reset_y",), "SELECT @reset_y AS v"),
]


def _create_function(driver: Any) -> None:
    driver.create_function("reset_fn", 0, lambda: 1)


SQLITE_LEAKS = [
    Leak("foreign_keys", ("PRAGMA foreign_keys = OFF",), "PRAGMA foreign_keys"),
    Leak("query_only", ("PRAGMA query_only = ON",), "PRAGMA query_only"),
    Leak("recursive_triggers", ("PRAGMA recursive_triggers = ON",), "PRAGMA recursive_triggers"),
    Leak("cache_size", ("PRAGMA cache_size = 17",), "PRAGMA cache_size"),
    Leak("case_sensitive_like", ("PRAGMA case_sensitive_like = ON",), "SELECT 'a' LIKE 'A'"),
    Leak(
        "attach",
        ("ATTACH DATABASE ':memory:' AS reset_att",),
        "SELECT count(*) FROM pragma_database_list WHERE name = 'reset_att'",
    ),
    Leak(
        "temp_table",
        ("CREATE TEMP TABLE reset_tmp (a)",),
        "SELECT count(*) FROM temp.sqlite_schema WHERE name = 'reset_tmp'",
    ),
    Leak(
        "temp_view",
        ("CREATE TEMP VIEW reset_v AS SELECT 1",),
        "SELECT count(*) FROM temp.sqlite_schema WHERE name = 'reset_v'",
    ),
    Leak(
        "function",
        (),
        "SELECT count(*) FROM pragma_function_list WHERE name = 'reset_fn'",
        _create_function,
    ),
]


@pytest.fixture(scope="module")
def pg_role(postgres_url):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.POSTGRES, postgres_url)
    manager.execute(
        "DO $$ BEGIN CREATE ROLE reset_leak_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    manager.execute("GRANT reset_leak_role TO CURRENT_USER")
    yield "reset_leak_role"
    manager.execute("DROP ROLE IF EXISTS reset_leak_role")
    manager.close_all()


def _config(url: str, **settings: Any) -> PoolConfig:
    return PoolConfig(url=url, min_size=1, max_size=1, **settings)


def _value(on: DatabaseManager | Any, db_type: DatabaseType, sql: str) -> Any:
    """The probe's value on a manager (a lease of its own) or on a held connection."""
    try:
        if isinstance(on, DatabaseManager):
            return on.fetch_value(sql, db_type=db_type)
        return on.fetch_value(sql)
    except DBSystemError as exc:  # the probe of a function that must not exist
        return f"error: {type(exc).__name__}"


def _leaks_nothing(url: str, db_type: DatabaseType, leak: Leak, **settings: Any) -> None:
    db = DatabaseManager()
    db.create_pool(db_type, _config(url, **settings))
    try:
        fresh = _value(db, db_type, leak.probe)
        with db.connection(db_type) as conn:
            for sql in leak.change:
                conn.execute(sql)
            if leak.driver is not None:
                leak.driver(conn.driver_connection)
            assert _value(conn, db_type, leak.probe) != fresh  # the change took
        assert _value(db, db_type, leak.probe) == fresh
        assert db.get_pool(db_type).stats().created == 1  # the same session, reset
    finally:
        db.close_all()


async def _aleaks_nothing(url: str, db_type: DatabaseType, leak: Leak) -> None:
    adb = AsyncDatabaseManager()
    await adb.create_pool(db_type, _config(url))

    async def probe(on: Any) -> Any:
        try:
            return await on.fetch_value(leak.probe)
        except DBSystemError as exc:
            return f"error: {type(exc).__name__}"

    try:
        async with adb.connection(db_type) as conn:
            fresh = await probe(conn)
        async with adb.connection(db_type) as conn:
            for sql in leak.change:
                await conn.execute(sql)
            if leak.driver is not None:
                leak.driver(conn.driver_connection)
            assert await probe(conn) != fresh
        async with adb.connection(db_type) as conn:
            assert await probe(conn) == fresh
        assert adb.pools()[(db_type, None)].stats().created == 1
    finally:
        await adb.close_all()


@pytest.mark.parametrize("leak", PG_LEAKS, ids=lambda leak: leak.name)
def test_postgres_lease_is_reset(postgres_url, pg_role, leak):
    _leaks_nothing(postgres_url, DatabaseType.POSTGRES, leak)


@pytest.mark.parametrize("leak", PG_LEAKS, ids=lambda leak: leak.name)
def test_postgres_async_lease_is_reset(postgres_url, pg_role, leak):
    asyncio.run(_aleaks_nothing(postgres_url, DatabaseType.POSTGRES, leak))


@pytest.mark.parametrize("leak", MYSQL_LEAKS, ids=lambda leak: leak.name)
def test_mysql_lease_is_reset(mysql_url, leak):
    _leaks_nothing(mysql_url, DatabaseType.MYSQL, leak)


@pytest.mark.parametrize("leak", MYSQL_LEAKS, ids=lambda leak: leak.name)
def test_mysql_async_lease_is_reset(mysql_url, leak):
    asyncio.run(_aleaks_nothing(mysql_url, DatabaseType.MYSQL, leak))


@pytest.mark.parametrize("leak", SQLITE_LEAKS, ids=lambda leak: leak.name)
def test_sqlite_lease_is_reset(tmp_path, leak):
    _leaks_nothing(f"sqlite:///{tmp_path / 'reset.db'}", DatabaseType.SQLITE, leak)


@pytest.mark.parametrize("leak", SQLITE_LEAKS, ids=lambda leak: leak.name)
def test_sqlite_memory_lease_is_reset_and_keeps_its_data(leak):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, _config("sqlite://:memory:"))
    try:
        db.execute("CREATE TABLE kept (a INTEGER)")
        db.execute("INSERT INTO kept VALUES (1)")
        fresh = _value(db, DatabaseType.SQLITE, leak.probe)
        with db.connection(DatabaseType.SQLITE) as conn:
            for sql in leak.change:
                conn.execute(sql)
            if leak.driver is not None:
                leak.driver(conn.driver_connection)
        assert _value(db, DatabaseType.SQLITE, leak.probe) == fresh
        assert db.fetch_value("SELECT count(*) FROM kept") == 1
    finally:
        db.close_all()


@pytest.mark.parametrize("leak", SQLITE_LEAKS, ids=lambda leak: leak.name)
def test_sqlite_async_lease_is_reset(tmp_path, leak):
    url = f"sqlite:///{tmp_path / 'reset.db'}"
    asyncio.run(_aleaks_nothing(url, DatabaseType.SQLITE, leak))


# -- the pool's own settings come back -----------------------------------------------------


def test_postgres_pool_statement_timeout_survives_the_reset(postgres_url):
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, _config(postgres_url, statement_timeout=7.0))
    try:
        db.execute("SET statement_timeout = '1s'")
        assert db.fetch_value("SHOW statement_timeout") == "7s"
    finally:
        db.close_all()


def test_mysql_url_sql_mode_and_statement_limit_survive_the_reset(mysql_url):
    db = DatabaseManager()
    url = f"{mysql_url}?sql_mode=ANSI_QUOTES"
    db.create_pool(DatabaseType.MYSQL, _config(url, statement_timeout=9.0))
    try:
        db.execute("SET SESSION sql_mode = ''")
        db.execute("SET SESSION max_statement_time = 1")
        assert db.fetch_value("SELECT @@SESSION.sql_mode") == "ANSI_QUOTES"
        assert float(db.fetch_value("SELECT @@SESSION.max_statement_time")) == 9.0
    finally:
        db.close_all()


def test_psycopg_prepared_statements_still_work_after_a_reset(postgres_url):
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, _config(postgres_url))
    try:
        db.execute("SET work_mem = '6MB'")  # a first reset, before anything was prepared
        for _ in range(3):
            with db.connection(DatabaseType.POSTGRES) as conn:
                for _ in range(8):  # past psycopg's prepare_threshold: prepared server-side
                    assert conn.fetch_value("SELECT 1 + :n", {"n": 1}) == 2
                conn.execute("SET work_mem = '8MB'")  # DISCARD ALL drops the prepared ones
    finally:
        db.close_all()


# -- nothing changed, nothing to pay -------------------------------------------------------


_CHANGE = {
    "postgres": "SET work_mem = '5MB'",
    "mysql": "SET @x = 1",
    "sqlite": "PRAGMA cache_size = 10",
}


@pytest.mark.parametrize("kind", ["postgres", "mysql", "sqlite"])
def test_a_plain_lease_is_not_reset(kind, request, tmp_path):
    url = {
        "postgres": lambda: request.getfixturevalue("postgres_url"),
        "mysql": lambda: request.getfixturevalue("mysql_url"),
        "sqlite": lambda: f"sqlite:///{tmp_path / 'plain.db'}",
    }[kind]()
    db_type = {
        "postgres": DatabaseType.POSTGRES,
        "mysql": DatabaseType.MYSQL,
        "sqlite": DatabaseType.SQLITE,
    }[kind]
    db = DatabaseManager()
    db.create_pool(db_type, _config(url))
    try:
        db.execute("CREATE TABLE IF NOT EXISTS reset_plain (id INTEGER PRIMARY KEY, v INTEGER)")
        with db.connection(db_type) as conn:
            conn.fetch_one("SELECT id, v FROM reset_plain WHERE id = :id", {"id": 1})
            conn.fetch_value("SELECT count(*) FROM reset_plain")
            conn.execute("UPDATE reset_plain SET v = :v WHERE id = :id", {"v": 2, "id": 1})
            raw = conn._lease_raw()
            assert raw.dirty is False
            conn.execute(_CHANGE[kind])
            assert raw.dirty is True
        assert raw.dirty is False  # reset on return
        with db.connection(db_type) as conn:
            db.query().select().from_("reset_plain").where(col("id") == 1).all(conn)
            db.query().update("reset_plain").set(v=3).where(col("id") == 1).execute(conn)
            assert conn._lease_raw().dirty is False
    finally:
        db.execute("DROP TABLE reset_plain")
        db.close_all()


# -- Redis: a command that changes the connection's session ---------------------------------


def _client_info(text: str) -> dict[str, str]:
    return dict(field.split("=", 1) for field in text.split() if "=" in field)


@dataclass(frozen=True)
class RedisLeak:
    name: str
    change: tuple[tuple[str, ...], ...]
    field: str  # of CLIENT INFO, read on the next command's connection


REDIS_LEAKS = [
    RedisLeak("select", (("SELECT", "5"),), "db"),
    RedisLeak("client_setname", (("CLIENT", "SETNAME", "reset_leak"),), "name"),
    RedisLeak("client_tracking", (("CLIENT", "TRACKING", "ON"),), "flags"),
    RedisLeak("client_no_evict", (("CLIENT", "NO-EVICT", "ON"),), "flags"),
    RedisLeak("multi_left_open", (("MULTI",),), "multi"),
    RedisLeak("multi_with_queued", (("MULTI",), ("SET", "reset:k", "1")), "multi"),
    RedisLeak("watch", (("WATCH", "reset:watched"),), "flags"),
]


def _redis_config(url: str) -> PoolConfig:
    return PoolConfig(url=f"{url}?client_name=reset_pool", min_size=1, max_size=1)


@pytest.mark.parametrize("leak", REDIS_LEAKS, ids=lambda leak: leak.name)
def test_redis_connection_is_reset(redis_url, leak):
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, _redis_config(redis_url))
    try:
        with db.connection(DatabaseType.REDIS) as redis:
            fresh = _client_info(redis.execute("CLIENT", "INFO"))
            for command in leak.change:
                redis.execute(*command)
            after = _client_info(redis.execute("CLIENT", "INFO"))
        assert after[leak.field] == fresh[leak.field]
        assert after["db"] == fresh["db"]
        assert after["name"] == "reset_pool"
        assert after["id"] == fresh["id"]  # the same server session, reset (not reopened)
    finally:
        db.close_all()


@pytest.mark.parametrize("leak", REDIS_LEAKS, ids=lambda leak: leak.name)
def test_redis_pipeline_is_reset(redis_url, leak):
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, _redis_config(redis_url))
    try:
        with db.connection(DatabaseType.REDIS) as redis:
            fresh = _client_info(redis.execute("CLIENT", "INFO"))
            try:
                redis.pipeline([list(command) for command in leak.change])
            except DBSystemError:
                pass  # a MULTI inside a pipeline may be refused by the server: fine
            after = _client_info(redis.execute("CLIENT", "INFO"))
        assert after[leak.field] == fresh[leak.field]
        assert after["db"] == fresh["db"]
    finally:
        db.close_all()


@pytest.mark.parametrize("leak", REDIS_LEAKS, ids=lambda leak: leak.name)
def test_redis_async_connection_is_reset(redis_url, leak):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.REDIS, _redis_config(redis_url))
        try:
            async with adb.connection(DatabaseType.REDIS) as redis:
                fresh = _client_info(await redis.execute("CLIENT", "INFO"))
                for command in leak.change:
                    await redis.execute(*command)
                after = _client_info(await redis.execute("CLIENT", "INFO"))
            assert after[leak.field] == fresh[leak.field]
            assert after["db"] == fresh["db"]
            assert after["id"] == fresh["id"]
        finally:
            await adb.close_all()

    asyncio.run(main())


# -- a connection pinned to a test's transaction (the pytest plugin) ------------------------


def _pinned(db: DatabaseManager, db_type: DatabaseType) -> None:
    """What ``dbsystem.testing``'s fixture does: an outer transaction no lease may end."""
    with db.connection(db_type) as conn:
        raw = conn._lease_raw()
        raw.begin()
        raw.base_depth = 1


def test_sqlite_pinned_session_is_reset_and_keeps_the_tests_rows(tmp_path):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, _config(f"sqlite:///{tmp_path / 'pin.db'}"))
    try:
        db.execute("CREATE TABLE pinned (a INTEGER)")
        _pinned(db, DatabaseType.SQLITE)
        with db.connection(DatabaseType.SQLITE) as conn:
            conn.execute("INSERT INTO pinned VALUES (1)")
            conn.execute("PRAGMA recursive_triggers = ON")
            conn.execute("CREATE TEMP TABLE reset_tmp (a)")
        assert db.fetch_value("SELECT count(*) FROM pinned") == 1  # still in the transaction
        assert db.fetch_value("PRAGMA recursive_triggers") == 0
        assert db.fetch_value("SELECT count(*) FROM temp.sqlite_schema") == 0
    finally:
        db.close_all()


def test_postgres_pinned_session_resets_the_role_and_keeps_the_tests_rows(postgres_url, pg_role):
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, _config(postgres_url))
    try:
        user = db.fetch_value("SELECT current_user")
        _pinned(db, DatabaseType.POSTGRES)
        with db.connection(DatabaseType.POSTGRES) as conn:
            conn.execute("CREATE TEMP TABLE reset_rows (a int) ON COMMIT PRESERVE ROWS")
            conn.execute("CREATE TABLE IF NOT EXISTS reset_pinned (a int)")
            conn.execute("INSERT INTO reset_pinned VALUES (1)")
            conn.execute("SET ROLE reset_leak_role")
            conn.execute("SET statement_timeout = '3s'")
        assert db.fetch_value("SELECT current_user") == user
        assert db.fetch_value("SHOW statement_timeout") == "0"
        assert db.fetch_value("SELECT count(*) FROM reset_pinned") == 1  # the test's own row
        assert db.fetch_value("SELECT to_regclass('pg_temp.reset_rows')::text") is None
    finally:
        with db.connection(DatabaseType.POSTGRES) as conn:
            raw = conn._lease_raw()
            raw.base_depth = 0
            raw.rollback()
        db.close_all()
