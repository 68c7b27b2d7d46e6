"""The manager's one-statement calls: rows as dicts, or as the row type asked for."""

from __future__ import annotations

import dataclasses
from typing import Any, assert_type

import pydantic

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, ExecuteResult
from dbsystem.aio.connection import AsyncConnection
from dbsystem.kernel.protocols import BackendInfo

Row = dict[str, Any]


class Person(pydantic.BaseModel):
    id: int
    name: str


@dataclasses.dataclass
class PersonRow:
    id: int
    name: str


db = DatabaseManager()
assert_type(db.fetch_all("SELECT * FROM people"), list[Row])
assert_type(db.fetch_all("SELECT * FROM people", row_type=Person), list[Person])
assert_type(
    db.fetch_all("SELECT * FROM p WHERE id = :id", {"id": 1}, row_type=PersonRow), list[PersonRow]
)
assert_type(db.fetch_one("SELECT 1"), Row | None)
assert_type(db.execute("DELETE FROM people"), ExecuteResult)
assert_type(db.for_user("ann").fetch_all("SELECT * FROM people", row_type=Person), list[Person])
assert_type(db.for_user("ann").backend(), BackendInfo)
assert_type(db.executemany("INSERT INTO t VALUES (:a)", [{"a": 1}]), ExecuteResult)


async def awaited() -> None:
    adb = AsyncDatabaseManager()
    assert_type(await adb.fetch_all("SELECT * FROM people"), list[Row])
    assert_type(await adb.fetch_all("SELECT * FROM people", row_type=Person), list[Person])
    session = adb.for_user("ann")
    assert_type(await session.fetch_all("SELECT 1", row_type=PersonRow), list[PersonRow])
    assert_type(await adb.fetch_one("SELECT 1"), Row | None)
    assert_type(await adb.executemany("INSERT INTO t VALUES (:a)", [{"a": 1}]), ExecuteResult)
    assert_type(await session.executemany("INSERT INTO t VALUES (:a)", []), ExecuteResult)
    assert_type(session.bound_connection(), AsyncConnection | None)
    assert_type(adb.bound_connection(), AsyncConnection | None)
    assert_type(session.backend(), BackendInfo)
    async with session.transaction() as conn:
        assert_type(conn, AsyncConnection)
    assert_type(
        await adb.execute("DELETE FROM people", db_type=DatabaseType.POSTGRES), ExecuteResult
    )
