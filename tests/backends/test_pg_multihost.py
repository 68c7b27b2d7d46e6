"""PostgreSQL multi-host URLs (libpq semantics) and the dropping of connections whose server
no longer plays the role ``target_session_attrs`` asks for, on the shared server: a dead
host first in the list, and a session made read only (as a demoted primary's would be)."""

from __future__ import annotations

import asyncio

import pytest

from dbsystem import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    DBSystemError,
    PoolConfig,
)
from dbsystem.aio import AsyncDatabaseManager
from dbsystem.backends.postgresql import PostgreSQLBackend
from dbsystem.kernel.url import DatabaseURL

PG = DatabaseType.POSTGRES
DEAD = "127.0.0.1:15499"  # nothing listens there (this helper's port range)


def _multi(postgres_url: str, query: str = "target_session_attrs=read-write") -> str:
    url = DatabaseURL(postgres_url)
    user = f"{url.username}@" if url.username else ""
    return f"postgresql://{user}{DEAD},{url.host}:{url.port or 5432}/{url.database}?{query}"


def test_host_list_becomes_libpq_host_and_port_lists():
    url = DatabaseURL("postgresql://u@h1:5441,h2,h3:5443/db")
    backend = PostgreSQLBackend(url, PoolConfig(url=url))
    assert "host=h1,h2,h3 port=5441,5432,5443" in backend._conninfo


@pytest.mark.parametrize(
    ("option", "value"), [("target_session_attrs", "master"), ("load_balance_hosts", "yes")]
)
def test_bad_host_choice_options_are_refused_before_connecting(option, value):
    with pytest.raises(ConfigurationError, match=option):
        DatabaseManager().create_pool(PG, f"postgresql://u@h1:1,h2:2/db?{option}={value}")


def test_a_dead_first_host_is_skipped(postgres_url):
    db = DatabaseManager()
    db.create_pool(PG, PoolConfig(url=_multi(postgres_url), max_size=2))
    try:
        assert db.fetch_value("SELECT 1") == 1
    finally:
        db.close_all()


def test_no_server_of_the_wanted_role_is_connection_failed(postgres_url):
    db = DatabaseManager()
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        db.create_pool(PG, PoolConfig(url=_multi(postgres_url, "target_session_attrs=standby")))
    db.close_all()


def _pid(db) -> int:
    return int(db.fetch_value("SELECT pg_backend_pid()"))


@pytest.fixture
def rw_db(postgres_url):
    db = DatabaseManager()
    db.create_pool(PG, PoolConfig(url=_multi(postgres_url), max_size=1, min_size=1))
    yield db
    db.close_all()


# A demoted server is simulated by ``SET default_transaction_read_only`` inside one lease:
# the pool's reset (DISCARD ALL) undoes the SET when the lease ends, as it should.


def test_a_statement_refused_as_read_only_drops_the_connection(rw_db):
    before = _pid(rw_db)
    with rw_db.connection(PG) as conn:
        conn.execute("SET default_transaction_read_only = on")  # what a demoted server reports
        with pytest.raises(ConnectionFailed, match="read-only"):
            conn.execute("CREATE TABLE ro_never (x int)")
    assert _pid(rw_db) != before


def test_the_health_check_drops_a_connection_to_a_read_only_server(postgres_url):
    db = DatabaseManager()
    url = _multi(postgres_url)
    db.create_pool(PG, PoolConfig(url=url, max_size=1, health_check_interval=0))
    try:
        backend = db.get_pool(PG).connector
        with db.connection(PG) as conn:
            conn.execute("SET default_transaction_read_only = on")
            with pytest.raises(ConnectionFailed, match="read only now"):
                backend.check(conn._lease_raw())  # the check the pool runs before lending
    finally:
        db.close_all()


@pytest.mark.parametrize("attrs", [None, "read-write"])
def test_a_users_read_only_transaction_keeps_the_connection(postgres_url, attrs):
    url = postgres_url if attrs is None else _multi(postgres_url, f"target_session_attrs={attrs}")
    db = DatabaseManager()
    db.create_pool(PG, PoolConfig(url=url, max_size=1, health_check_interval=0))
    try:
        before = _pid(db)
        with db.connection(PG) as conn, conn.transaction(readonly=True):
            with pytest.raises(DBSystemError) as caught:
                conn.execute("CREATE TABLE ro_never (x int)")
        assert not isinstance(caught.value, ConnectionFailed)
        assert _pid(db) == before
    finally:
        db.close_all()


def test_the_async_pool_drops_a_connection_to_a_read_only_server(postgres_url):
    async def scenario() -> tuple[int, int, type[BaseException]]:
        db = AsyncDatabaseManager()
        await db.create_pool(PG, PoolConfig(url=_multi(postgres_url), max_size=1))
        try:
            before = int(await db.fetch_value("SELECT pg_backend_pid()"))
            async with db.connection(PG) as conn:
                await conn.execute("SET default_transaction_read_only = on")
                try:
                    await conn.execute("CREATE TABLE ro_never (x int)")
                except DBSystemError as exc:
                    raised: type[BaseException] = type(exc)
            after = int(await db.fetch_value("SELECT pg_backend_pid()"))
            return before, after, raised
        finally:
            await db.close_all()

    before, after, raised = asyncio.run(scenario())
    assert raised is ConnectionFailed
    assert after != before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"patroni": "127.0.0.1:8008"}, "REST API URLs"),
        (
            {"patroni": "http://127.0.0.1:8008", "replicas": ["postgresql://h/db"]},
            "leave replicas empty",
        ),
    ],
)
def test_bad_patroni_settings_are_refused(extra, message):
    with pytest.raises(ConfigurationError, match=message):
        PoolConfig(url="postgresql://u@h1:1,h2:2/db", **extra)


def test_topology_without_patroni_is_the_configuration(postgres_url):
    db = DatabaseManager()
    db.create_pool(PG, PoolConfig(url=_multi(postgres_url), max_size=1))
    try:
        view = db.topology(PG)
    finally:
        db.close_all()
    assert view.source == "configured"
    assert view.primary is not None
    assert view.primary.port == 15499
    assert view.replicas == ()
