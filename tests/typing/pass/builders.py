"""The SQL builders: results typed by the statement and by the side (sync or awaited)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from dbsystem import AsyncDatabaseManager, Connection, DatabaseManager, DatabaseType, ExecuteResult
from dbsystem.aio._redis import AsyncRedisConnection
from dbsystem.aio.connection import AsyncConnection
from dbsystem.aio.manager import AsyncQueryFactory
from dbsystem.query import (
    Async,
    DeleteQuery,
    InsertQuery,
    Page,
    QueryFactory,
    SelectQuery,
    SetQuery,
    Sync,
    UpdateQuery,
    col,
    count,
    select,
)
from dbsystem.query.mongo import AsyncMongoQuery, MongoQuery
from dbsystem.query.redis import AsyncRedisQuery, RedisQuery

Row = dict[str, Any]
db = DatabaseManager()
q = db.query(DatabaseType.SQLITE)
assert_type(q, QueryFactory[Sync])
assert_type(q, QueryFactory)  # the default mode: Sync
assert_type(db.query(DatabaseType.REDIS), RedisQuery)
assert_type(db.query(DatabaseType.MONGODB), MongoQuery)

users = q.select("id", "name").from_("users").where(col("age") > 18).order_by("name")
assert_type(users, SelectQuery[Sync])
assert_type(users.limit(10).offset(5), SelectQuery[Sync])
assert_type(users.execute(), list[Row])
assert_type(users.all(), list[Row])
assert_type(users.for_update(skip_locked=True).limit(1), SelectQuery[Sync])
assert_type(users.for_share(nowait=True).where("a", "=", 1), SelectQuery[Sync])
assert_type(users.paginate(limit=20), Page)
assert_type(users.paginate(limit=20, after=("ada",)).next, tuple[Any, ...] | None)
assert_type(users.first(), Row | None)
assert_type(users.scalar_value(), Any)
assert_type(users.union(q.select("id", "name").from_("admins")), SetQuery[Sync])
assert_type(users.union_all(users).all(), list[Row])
assert_type(q.select(count()).from_("users").where("age", ">", 18).first(), Row | None)

insert = q.insert_into("users").values({"name": "ada"})
assert_type(insert, InsertQuery[Sync, ExecuteResult])
assert_type(insert.execute(), ExecuteResult)
assert_type(insert.execute().lastrowid, int | None)
assert_type(insert.returning("id").execute(), list[Row])
assert_type(insert.upsert(["name"]).execute(), ExecuteResult)
update = q.update("users").set(name="bob").where(col("id") == 1)
assert_type(update, UpdateQuery[Sync, ExecuteResult])
assert_type(update.execute(), ExecuteResult)
assert_type(update.returning("id").execute(), list[Row])
delete = q.delete_from("users").where("id", "=", 1)
assert_type(delete, DeleteQuery[Sync, ExecuteResult])
assert_type(delete.execute(), ExecuteResult)
assert_type(q.delete_from("users").all_rows().returning("id").execute(), list[Row])
assert_type(q.raw_sql("SELECT 1").execute(), list[Row] | ExecuteResult)

# An unbound builder runs on the connection it is given, sync or async.
unbound = select("id").from_("users")
assert_type(unbound, SelectQuery[Sync])
with db.connection(DatabaseType.SQLITE) as conn:
    assert_type(conn, Connection)
    assert_type(unbound.all(conn), list[Row])
    assert_type(unbound.execute(conn), list[Row])
    assert_type(q.update("t").set(a=1).all_rows().execute(conn), ExecuteResult)
    assert_type(db.bound_connection(DatabaseType.SQLITE), Connection | None)
    assert_type(unbound.execute(db.bound_connection(DatabaseType.SQLITE)), list[Row])


async def awaited() -> None:
    adb = AsyncDatabaseManager.instance()
    aq = adb.query(DatabaseType.POSTGRES)
    assert_type(aq, AsyncQueryFactory)
    assert_type(adb.query(DatabaseType.REDIS), AsyncRedisQuery)
    assert_type(adb.query(DatabaseType.MONGODB), AsyncMongoQuery)
    rows = aq.select("*").from_("users").limit(10)
    assert_type(rows, SelectQuery[Async])
    pending = assert_type(rows.execute(), Coroutine[Any, Any, list[Row]])
    assert_type(await pending, list[Row])
    assert_type(await rows.execute(), list[Row])
    assert_type(await rows.all(), list[Row])
    assert_type(await rows.first(), Row | None)
    assert_type(await rows.scalar_value(), Any)
    assert_type(rows.for_update(nowait=True), SelectQuery[Async])
    assert_type(await rows.order_by("id").paginate(limit=5), Page)
    assert_type(await aq.insert_into("t").values(a=1).execute(), ExecuteResult)
    assert_type(await aq.insert_into("t").values(a=1).returning("a").execute(), list[Row])
    assert_type(await aq.update("t").set(a=2).all_rows().execute(), ExecuteResult)
    assert_type(await aq.delete_from("t").all_rows().execute(), ExecuteResult)
    assert_type(await aq.raw_sql("SELECT 1").execute(), list[Row] | ExecuteResult)
    assert_type(await aq.select("a").from_("t").union(rows).all(), list[Row])
    async with adb.connection(DatabaseType.POSTGRES) as conn:
        assert_type(conn, AsyncConnection)
        assert_type(await select("a").from_("t").all(conn), list[Row])
        assert_type(await select("a").from_("t").first(conn), Row | None)
        assert_type(await conn.fetch_all("SELECT 1"), list[Row])
    async with adb.connection(DatabaseType.REDIS) as redis:
        assert_type(redis, AsyncRedisConnection)
    session = adb.for_user("ann")
    assert_type(session.query(DatabaseType.POSTGRES), AsyncQueryFactory)
    assert_type(await session.query().select("a").from_("t").first(), Row | None)


def annotated(query: SelectQuery, factory: QueryFactory[Async]) -> SelectQuery[Async]:
    """Bare annotations mean the sync mode; the async one is spelled out."""
    assert_type(query.all(), list[Row])
    return factory.select("a").from_("t")
