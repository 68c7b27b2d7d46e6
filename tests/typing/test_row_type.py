"""``fetch_all(sql, params, row_type=...)``: rows as pydantic models, dataclasses or
TypedDicts, from the manager, a user session and the async manager, on every SQL backend."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid

import pydantic
import pytest
from typing_extensions import TypedDict  # (pydantic's demand before Python 3.12)

from dbsystem import AsyncDatabaseManager, DatabaseManager, DataError, InterfaceError, PoolConfig
from dbsystem.security import AccessControl, Permission, Role
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

pytestmark = pytest.mark.timeout(60)


class Person(pydantic.BaseModel):
    id: int
    name: str
    born: datetime.date | None = None


@dataclasses.dataclass
class PersonRow:
    id: int
    name: str
    born: datetime.date | None


class PersonDict(TypedDict):
    id: int
    name: str
    born: datetime.date | None


@pytest.fixture(params=SQL_BACKENDS)
def url(request, tmp_path):
    if request.param == "sqlite":
        return request.param, f"sqlite:///{tmp_path}/rows.db"
    return request.param, request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def db(url):
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES[url[0]], PoolConfig(url=url[1]))
    table = f"rows_{uuid.uuid4().hex[:8]}"
    manager.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40), born DATE)")
    manager.execute(
        f"INSERT INTO {table} (id, name, born) VALUES (1, 'ada', '1815-12-10'), (2, 'bob', NULL)"
    )
    manager.table = table  # type: ignore[attr-defined]
    yield manager
    manager.execute(f"DROP TABLE {table}")
    manager.close_all()


def test_rows_as_a_pydantic_model(db):
    rows = db.fetch_all(f"SELECT * FROM {db.table} ORDER BY id", row_type=Person)
    assert rows == [
        Person(id=1, name="ada", born=datetime.date(1815, 12, 10)),
        Person(id=2, name="bob", born=None),
    ]


def test_rows_as_a_dataclass_with_parameters(db):
    rows = db.fetch_all(f"SELECT * FROM {db.table} WHERE id = :id", {"id": 2}, row_type=PersonRow)
    assert rows == [PersonRow(id=2, name="bob", born=None)]


def test_rows_as_a_typed_dict(db):
    rows = db.fetch_all(f"SELECT * FROM {db.table} WHERE id = 1", row_type=PersonDict)
    assert rows == [{"id": 1, "name": "ada", "born": datetime.date(1815, 12, 10)}]


def test_without_row_type_rows_stay_dicts(db):
    rows = db.fetch_all(f"SELECT id FROM {db.table} ORDER BY id")
    assert rows == [{"id": 1}, {"id": 2}]


def test_a_row_that_does_not_fit_names_the_field_not_the_value(db):
    with pytest.raises(DataError, match=r"row 0.id: Input should be a valid integer") as caught:
        db.fetch_all(f"SELECT name AS id, name FROM {db.table} WHERE id = 1", row_type=Person)
    assert "ada" not in str(caught.value)


def test_a_type_that_cannot_hold_a_row_is_refused(db):
    class Plain:  # neither a model, a dataclass nor a TypedDict
        pass

    with pytest.raises(InterfaceError, match="cannot hold a row"):
        db.fetch_all(f"SELECT * FROM {db.table}", row_type=Plain)


def test_a_user_session_converts_too(db):
    acl = AccessControl()
    acl.create_role(Role("reader", grants={db.table: Permission.SELECT}))
    acl.assign_role("ann", "reader")
    db.use_access_control(acl)
    rows = db.for_user("ann").fetch_all(f"SELECT * FROM {db.table} ORDER BY id", row_type=Person)
    assert [r.name for r in rows] == ["ada", "bob"]


def test_the_async_manager_converts_the_same_way(db, url):
    async def main() -> list[PersonRow]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(SQL_TYPES[url[0]], PoolConfig(url=url[1]))
        try:
            sql = f"SELECT * FROM {db.table} WHERE id = :id"
            return await adb.fetch_all(sql, {"id": 1}, row_type=PersonRow)
        finally:
            await adb.close_all()

    assert asyncio.run(main()) == [PersonRow(id=1, name="ada", born=datetime.date(1815, 12, 10))]
