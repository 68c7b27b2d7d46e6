"""Keyset pagination (``paginate``) on every SQL backend, sync and async, and in the ORM
(MongoDB through mongomock too): paging through a generated table yields every row exactly
once, in order, whatever the mix of ascending and descending keys and the page size."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbsystem import (
    AsyncDatabaseManager,
    DatabaseManager,
    InterfaceError,
    PoolConfig,
    QueryBuildError,
)
from dbsystem.orm import Entity, Field
from dbsystem.query import Page, select
from tests.backend_params import ENTITY_BACKENDS, ENTITY_TYPES, SQL_BACKENDS, SQL_TYPES


def _url(kind: str, request, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/pages.db"
    if kind == "mongo":
        return "mongodb+mock://pages"
    return request.getfixturevalue(f"{kind}_url")


@pytest.fixture(params=SQL_BACKENDS)
def db(request, tmp_path):
    kind = request.param
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES[kind], PoolConfig(url=_url(kind, request, tmp_path)))
    manager.kind = kind  # type: ignore[attr-defined]
    table = f"pages_{uuid.uuid4().hex[:8]}"
    manager.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL)")
    manager.table = table  # type: ignore[attr-defined]
    yield manager
    manager.execute(f"DROP TABLE IF EXISTS {table}")
    manager.close_all()


def _fill(db, rows: list[tuple[int, int]]) -> None:
    db.query().delete_from(db.table).all_rows().execute()
    if rows:
        values = [{"id": key, "grp": grp} for key, grp in rows]
        db.query().insert_into(db.table).values(values).execute()


def _walk(query, limit: int) -> list[dict]:
    seen: list[dict] = []
    after = None
    for _ in range(1000):
        page = query.paginate(limit=limit, after=after)
        assert isinstance(page, Page)
        assert len(page.rows) <= limit
        seen.extend(page.rows)
        if page.next is None:
            return seen
        assert len(page.rows) == limit  # only the last page is short
        after = page.next
    raise AssertionError("paging did not end")


ROWS = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(-3, 3)), max_size=40, unique_by=lambda r: r[0]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=ROWS, limit=st.integers(1, 7), grp_desc=st.booleans(), id_desc=st.booleans())
def test_paging_yields_every_row_once_in_order(db, rows, limit, grp_desc, id_desc):
    _fill(db, rows)
    grp_dir, id_dir = ("desc" if grp_desc else "asc"), ("desc" if id_desc else "asc")
    query = db.query().select("id", "grp").from_(db.table).order_by("grp", grp_dir)
    query = query.order_by("id", id_dir)
    seen = _walk(query, limit)
    expected = sorted(
        ({"id": key, "grp": grp} for key, grp in rows),
        key=lambda r: (-r["grp"] if grp_desc else r["grp"], -r["id"] if id_desc else r["id"]),
    )
    assert seen == expected


def test_key_orders_a_query_without_order_by(db):
    _fill(db, [(3, 0), (1, 0), (2, 1)])
    query = db.query().select("id").from_(db.table)
    first = query.paginate(limit=2, key="id")
    assert first.rows == [{"id": 1}, {"id": 2}]
    assert first.next == (2,)
    assert first.has_more
    last = query.paginate(limit=2, key="id", after=2)  # a single key: a bare value will do
    assert last.rows == [{"id": 3}]
    assert last.next is None


def test_a_where_clause_keeps_filtering_every_page(db):
    _fill(db, [(key, key % 2) for key in range(1, 11)])
    query = db.query().select("id").from_(db.table).where("grp", "=", 1).order_by("id")
    assert [r["id"] for r in _walk(query, 2)] == [1, 3, 5, 7, 9]


def test_async_pages(request, db, tmp_path):
    _fill(db, [(key, 0) for key in range(1, 6)])

    async def main() -> list[int]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(SQL_TYPES[db.kind], PoolConfig(url=_url(db.kind, request, tmp_path)))
        try:
            query = adb.query().select("id").from_(db.table).order_by("id", "desc")
            ids: list[int] = []
            after = None
            while True:
                page = await query.paginate(limit=2, after=after)
                ids += [row["id"] for row in page.rows]
                if page.next is None:
                    return ids
                after = page.next
        finally:
            await adb.close_all()

    assert asyncio.run(main()) == [5, 4, 3, 2, 1]


# -- refused uses ----------------------------------------------------------------------------


def test_paginate_needs_an_order_of_columns():
    with pytest.raises(QueryBuildError, match="needs an order"):
        select("id").from_("t").paginate(limit=2)
    with pytest.raises(QueryBuildError, match="not both"):
        select("id").from_("t").order_by("id").paginate(limit=2, key="id")
    with pytest.raises(QueryBuildError, match="columns only"):
        select("id").from_("t").order_by(select("id").from_("u").scalar()).paginate(limit=2)


def test_a_cursor_must_match_the_order():
    query = select("id", "grp").from_("t").order_by("grp").order_by("id")
    with pytest.raises(QueryBuildError, match="2 ordering column"):
        query.paginate(limit=2, after=(1,))
    with pytest.raises(QueryBuildError, match="NULL"):
        query.paginate(limit=2, after=(None, 1))
    with pytest.raises(QueryBuildError, match="at least 1"):
        query.paginate(limit=0)
    with pytest.raises(QueryBuildError, match="drop the offset"):
        query.offset(3).paginate(limit=2)


def test_the_ordering_columns_must_be_selected(db):
    _fill(db, [(1, 0), (2, 0), (3, 0)])
    with pytest.raises(QueryBuildError, match="select the ordering column"):
        db.query().select("grp").from_(db.table).order_by("id").paginate(limit=1)


# -- the ORM ---------------------------------------------------------------------------------


class Paged(Entity, table="pages_orm"):
    id: int = Field(primary_key=True)
    rank: int = 0


@pytest.fixture(params=ENTITY_BACKENDS)
def orm(request, tmp_path):
    kind = request.param
    manager = DatabaseManager()
    manager.create_pool(ENTITY_TYPES[kind], PoolConfig(url=_url(kind, request, tmp_path)))
    manager.drop_tables([Paged])
    manager.create_tables([Paged])
    yield manager
    manager.drop_tables([Paged])
    manager.close_all()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=ROWS, limit=st.integers(1, 6), rank_desc=st.booleans())
def test_orm_paging_yields_every_entity_once_in_order(orm, rows, limit, rank_desc):
    for entity in Paged.query(orm).all():
        entity.delete(orm)
    if rows:
        Paged.save_all(orm, [Paged(id=key, rank=rank) for key, rank in rows])
    query = Paged.query(orm).order_by(Paged.rank, "desc" if rank_desc else "asc")
    seen: list[tuple[int, int]] = []
    after = None
    while True:
        page = query.paginate(limit=limit, after=after)
        assert len(page.entities) <= limit
        seen += [(p.id, p.rank) for p in page.entities]
        if page.next is None:
            break
        after = page.next
    expected = sorted(rows, key=lambda r: (-r[1] if rank_desc else r[1], r[0]))
    assert seen == expected


def test_orm_paginate_refuses_limit_and_offset(orm):
    with pytest.raises(InterfaceError, match="drop limit"):
        Paged.query(orm).limit(3).paginate(limit=2)
    with pytest.raises(InterfaceError, match="at least 1"):
        Paged.query(orm).paginate(limit=0)
