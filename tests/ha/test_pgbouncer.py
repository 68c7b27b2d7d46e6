"""PostgreSQL through a real PgBouncer in transaction mode (``?pgbouncer=transaction``):
statements run more often than psycopg's prepare threshold, from more clients than
PgBouncer has server connections, never collide on prepared statements; transactions
work; what needs one server session for longer than a transaction is refused."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from dbsystem import (
    ConfigurationError,
    DatabaseManager,
    DatabaseType,
    NotSupportedError,
    PoolConfig,
)
from dbsystem.aio import AsyncDatabaseManager

pytestmark = [pytest.mark.ha, pytest.mark.postgres, pytest.mark.timeout(120)]
PG = DatabaseType.POSTGRES


@pytest.fixture
def table(postgres_url):
    name = f"ha_bounce_{uuid.uuid4().hex[:8]}"
    direct = DatabaseManager()
    direct.create_pool(PG, postgres_url)
    direct.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, owner TEXT)")
    yield name
    direct.execute(f"DROP TABLE {name}")
    direct.close_all()


@pytest.fixture
def db(pgbouncer):
    manager = DatabaseManager()
    manager.create_pool(PG, PoolConfig(url=pgbouncer.url(), max_size=6))
    yield manager
    manager.close_all()


def test_repeated_statements_from_many_clients_never_collide(pgbouncer, db, table):
    other = DatabaseManager()  # a second application on the same PgBouncer
    other.create_pool(PG, PoolConfig(url=pgbouncer.url(), max_size=6))
    errors: list[BaseException] = []

    def work(manager: DatabaseManager, number: int) -> None:
        try:
            for i in range(30):
                key = number * 1000 + i
                with manager.transaction(PG) as tx:
                    tx.execute(
                        f"INSERT INTO {table} (id, owner) VALUES (:id, :owner)",
                        {"id": key, "owner": f"w{number}"},
                    )
                    tx.fetch_value(f"SELECT owner FROM {table} WHERE id = :id", {"id": key})
                manager.fetch_value(f"SELECT count(*) FROM {table} WHERE owner = :o", {"o": "x"})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(db if i % 2 else other, i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    other.close_all()
    assert errors == []
    assert db.fetch_value(f"SELECT count(*) FROM {table}") == 240


@pytest.mark.parametrize(
    "sql",
    [
        "LISTEN ha_channel",
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_try_advisory_lock(42)",
        "SET search_path = public",
        "RESET ALL",
        "PREPARE ha_p AS SELECT 1",
    ],
)
def test_session_state_is_refused(db, sql):
    with pytest.raises(NotSupportedError, match="transaction mode"):
        db.execute(sql)


def test_transaction_scoped_state_works(db):
    with db.transaction(PG) as tx:
        tx.execute("SET LOCAL statement_timeout = '5s'")
        inside = tx.fetch_value("SHOW statement_timeout")
        locked = tx.fetch_value("SELECT pg_try_advisory_xact_lock(42)")
    assert inside == "5s"
    assert locked is True


def test_an_unknown_pooling_mode_is_refused():
    with pytest.raises(ConfigurationError, match="pgbouncer"):
        DatabaseManager().create_pool(PG, "postgresql://u@127.0.0.1:1/db?pgbouncer=statement")


def test_the_async_pool_through_pgbouncer(pgbouncer, table):
    async def scenario() -> int:
        adb = AsyncDatabaseManager()
        await adb.create_pool(PG, PoolConfig(url=pgbouncer.url(), max_size=4))
        try:

            async def work(number: int) -> None:
                for i in range(20):
                    await adb.execute(
                        f"INSERT INTO {table} (id, owner) VALUES (:id, :owner)",
                        {"id": number * 1000 + i, "owner": "a"},
                    )

            await asyncio.gather(*(work(n) for n in range(4)))
            with pytest.raises(NotSupportedError):
                await adb.execute("LISTEN ha_channel")
            return int(await adb.fetch_value(f"SELECT count(*) FROM {table}"))
        finally:
            await adb.close_all()

    assert asyncio.run(scenario()) == 80


def test_a_statement_timeout_is_refused_through_pgbouncer():
    with pytest.raises(ConfigurationError, match="ALTER ROLE"):
        DatabaseManager().create_pool(
            PG,
            PoolConfig(
                url="postgresql://u@127.0.0.1:1/db?pgbouncer=transaction", statement_timeout=5
            ),
        )
