"""What the async API gained to match the synchronous one (issue 18), checked against the
synchronous side on the same database: ``stream`` and ``insert_many`` (``columns=``, the
failing row named)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing

import pytest

from dbsystem import (
    AsyncDatabaseManager,
    DatabaseManager,
    IntegrityError,
    InterfaceError,
    QueryBuildError,
)
from dbsystem.security import AuditLog, MemoryAuditSink
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

pytestmark = pytest.mark.timeout(60)


def _url(kind: str, request, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/parity.db"
    return request.getfixturevalue(f"{kind}_url")


@pytest.fixture(params=SQL_BACKENDS)
def kind(request):
    return request.param


@pytest.fixture
def both(kind, request, tmp_path):
    """A synchronous manager and the name of a fresh table on the database under test;
    the async side connects to the same database."""
    url = _url(kind, request, tmp_path)
    db = DatabaseManager()
    db.create_pool(SQL_TYPES[kind], url)
    table = f"par_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40))")
    yield db, table, url
    db.execute(f"DROP TABLE {table}")
    db.close_all()


async def _async_manager(kind: str, url: str) -> AsyncDatabaseManager:
    adb = AsyncDatabaseManager()
    await adb.create_pool(SQL_TYPES[kind], url)
    return adb


def test_stream_gives_the_rows_the_sync_stream_gives(kind, both):
    db, t, url = both
    db.insert_many(t, [{"id": i, "name": f"n{i}"} for i in range(1, 2501)])
    sql = f"SELECT id, name FROM {t} WHERE id > :low ORDER BY id"
    with db.connection() as sync_conn:
        expected = list(sync_conn.stream(sql, {"low": 10}, batch_size=100))

    async def main() -> None:
        adb = await _async_manager(kind, url)
        audit = MemoryAuditSink()
        adb.add_hook(AuditLog([audit], all_statements=True))
        try:
            async with adb.connection() as conn:
                rows = [row async for row in conn.stream(sql, {"low": 10}, batch_size=100)]
            assert rows == expected and len(rows) == 2490
            (event,) = audit.events  # one statement, seen by the hooks, every row counted
            assert (event.operation, event.action, event.outcome, event.rows) == (
                "stream",
                "select",
                "ok",
                2490,
            )

            async with adb.transaction() as conn:  # inside a transaction: its own writes
                await conn.execute(f"INSERT INTO {t} VALUES (9999, 'mine')")
                tail = [r["id"] async for r in conn.stream(f"SELECT id FROM {t} WHERE id > 2498")]
                assert tail == [2499, 2500, 9999]

            async with adb.connection() as conn:  # stopped early: the connection goes on
                async with aclosing(
                    conn.stream(f"SELECT id FROM {t} ORDER BY id", batch_size=10)
                ) as it:
                    async for row in it:
                        assert row == {"id": 1}
                        break
                assert await conn.fetch_value(f"SELECT COUNT(*) FROM {t}") == 2501

            conn = await adb.connection()  # a stream outliving its lease
            rows_left = conn.stream(f"SELECT id FROM {t} ORDER BY id", batch_size=10)
            assert await anext(rows_left) == {"id": 1}
            await conn.release()
            with pytest.raises(InterfaceError, match="returned to the pool"):
                await anext(rows_left)

            async with adb.connection() as conn:  # the same argument checks as sync
                with pytest.raises(InterfaceError, match="batch_size"):
                    conn.stream("SELECT 1", batch_size=0)
                with pytest.raises(InterfaceError, match="mapping"):
                    conn.stream("SELECT 1", [1])
                assert await conn.fetch_value("SELECT 1") == 1
            stats = adb.get_pool().stats()
            assert (stats.active, stats.total - stats.idle) == (0, 0)
        finally:
            await adb.close_all()

    asyncio.run(main())


def test_insert_many_takes_columns_and_names_the_failing_row_as_sync_does(kind, both):
    db, t, url = both
    rows = [{"id": i, "name": f"n{i}"} for i in range(10)]
    rows[7] = {"id": 3, "name": "dup"}  # the same key as row 3
    with pytest.raises(IntegrityError, match="row 7 failed, nothing was inserted") as sync_error:
        with db.connection() as sync_conn:
            sync_conn.insert_many(t, rows)

    async def main() -> None:
        adb = await _async_manager(kind, url)
        try:
            async with adb.connection() as conn:
                with pytest.raises(type(sync_error.value)) as info:
                    await conn.insert_many(t, rows)
                assert info.value.row_index == sync_error.value.row_index == 7
                assert "row 7 failed, nothing was inserted" in str(info.value)
                assert await conn.fetch_value(f"SELECT COUNT(*) FROM {t}") == 0
                # columns= names them (and their order) whatever order the keys are in
                swapped = [{"name": "b", "id": 2}, {"name": "a", "id": 1}]
                assert await conn.insert_many(t, swapped, columns=["id", "name"]) == 2
                rows_now = await conn.fetch_all(f"SELECT id, name FROM {t} ORDER BY id")
                assert rows_now == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
                with pytest.raises(QueryBuildError, match=r"row 1 has columns \['id'\]"):
                    await conn.insert_many(t, [{"id": 5, "name": "x"}, {"id": 6}])
                assert await conn.insert_many(t, []) == 0
                async with conn.transaction():  # a savepoint: the transaction survives
                    await conn.execute(f"INSERT INTO {t} VALUES (100, 'kept')")
                    with pytest.raises(IntegrityError, match="row 1 failed"):
                        await conn.insert_many(t, [{"id": 101, "name": "x"}, rows_now[0]])
                    assert await conn.fetch_value(f"SELECT COUNT(*) FROM {t}") == 3
            assert await adb.fetch_value(f"SELECT COUNT(*) FROM {t}") == 3
        finally:
            await adb.close_all()

    asyncio.run(main())
