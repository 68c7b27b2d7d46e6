"""What the async API gained to match the synchronous one (issue 18), checked against the
synchronous side on the same database: ``stream``, ``insert_many`` (``columns=``, the
failing row named), the manager's methods, and the Redis and MongoDB builders of
``adb.query()`` on real Redis, ``redis+mock://`` and ``mongodb+mock://``, through access
control and audit."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing

import pytest

from dbsystem import (
    AsyncDatabaseManager,
    DatabaseManager,
    DatabaseType,
    IntegrityError,
    InterfaceError,
    PermissionDenied,
    PoolConfig,
    QueryBuildError,
)
from dbsystem.query import col
from dbsystem.query._mixin import builders
from dbsystem.query.mongo import AsyncMongoQuery
from dbsystem.query.redis import AsyncRedisQuery
from dbsystem.security import AccessControl, AuditLog, MemoryAuditSink, Permission, Role
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


def test_manager_methods_that_were_sync_only(tmp_path):
    config_file = tmp_path / "db.toml"
    config_file.write_text(
        f"""
[databases.sqlite]
url = "sqlite:///{tmp_path}/main.db"
default = true

[databases.scripted]
type = "postgres"
url = "mock://postgresql"
"""
    )

    async def main() -> None:
        assert AsyncDatabaseManager.handle() is AsyncDatabaseManager.instance()
        async with AsyncDatabaseManager() as adb:
            await adb.configure(config_file)
            assert adb.mode is DatabaseType.SQLITE
            assert set(adb.pool_stats()) == {
                DatabaseType.SQLITE,
                (DatabaseType.POSTGRES, "scripted"),
            }
            mock = adb.mock(DatabaseType.POSTGRES, "scripted")
            mock.expect("SELECT 42").returns([{"answer": 42}])
            async with adb.connection(DatabaseType.POSTGRES, name="scripted") as conn:
                assert await conn.fetch_value("SELECT 42") == 42
            with pytest.raises(InterfaceError, match="not a mock:// pool"):
                adb.mock()
            await adb.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            assert adb.bound_connection() is None
            async with adb.transaction() as conn:
                assert adb.bound_connection() is conn
                async with adb.transaction() as inner:  # nested: the same connection
                    assert inner is conn and conn.raw.tx_depth == 2
                    await inner.execute("INSERT INTO t VALUES (1)")
            assert adb.bound_connection() is None
            assert await adb.fetch_value("SELECT COUNT(*) FROM t") == 1
            lease = await adb.connection(label="report")
            assert [h.label for h in adb.get_pool().holders()] == ["report"]
            await lease.release()
            await adb.close_pool(DatabaseType.POSTGRES, "scripted")
            assert set(adb.pools()) == {(DatabaseType.SQLITE, None)}
            with pytest.raises(InterfaceError, match="no pool for postgres"):
                adb.get_pool(DatabaseType.POSTGRES, "scripted")
            with pytest.raises(InterfaceError, match="no pool for postgres"):
                await adb.close_pool(DatabaseType.POSTGRES, "scripted")
        assert adb.pools() == {}  # closed on leaving the block

    asyncio.run(main())


def test_a_session_transaction_carries_its_user(tmp_path):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/s.db")
        await adb.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        acl = AccessControl()
        acl.create_role(Role("reader", grants={"t": Permission.SELECT}))
        acl.assign_role("ann", "reader")
        adb.use_access_control(acl)
        audit = MemoryAuditSink()
        adb.add_hook(AuditLog([audit]))
        ann = adb.for_user("ann")
        assert ann.mode is DatabaseType.SQLITE
        async with ann.transaction() as conn:
            assert ann.bound_connection() is conn
            assert await conn.fetch_value("SELECT COUNT(*) FROM t") == 0
            with pytest.raises(PermissionDenied):
                await conn.execute("INSERT INTO t VALUES (1)")
        assert ann.bound_connection() is None
        assert ("ann", "select", "ok") in [(e.user, e.action, e.outcome) for e in audit.events]
        assert ("ann", "insert", "denied") in [(e.user, e.action, e.outcome) for e in audit.events]
        await adb.close_all()

    asyncio.run(main())


def test_async_redis_builders_build_the_same_commands_and_pass_the_hooks(redis_target):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.REDIS, redis_target)
        key = f"cache:{uuid.uuid4().hex[:8]}"
        r = adb.query(DatabaseType.REDIS)
        sync_r = builders(adb.sync, DatabaseType.REDIS)  # the same server, synchronously
        try:
            assert isinstance(r, AsyncRedisQuery)
            assert (
                r.zadd(key, {"a": 1}).multi().build() == sync_r.zadd(key, {"a": 1}).multi().build()
            )
            assert await r.set(key, "v").execute() is True
            assert await r.get(key).execute() == "v" == sync_r.get(key).execute()
            assert await r.hset(key + ":h", {"a": 1, "b": 2}).execute() == 2
            assert await r.hgetall(key + ":h").execute() == {"a": "1", "b": "2"}
            board = key + ":z"
            assert await r.zadd(board, {"ada": 120, "bob": 95}).zrevrank(
                board, "bob"
            ).execute() == [2, 1]
            ranked = await r.zrevrange(board, withscores=True).execute()
            assert ranked == sync_r.zrevrange(board, withscores=True).execute()
            assert [member for member, _ in ranked] == ["ada", "bob"]
            assert await r.incr(key + ":n").incr(key + ":n").multi().execute() == [1, 2]
            found = sorted([k async for k in r.scan(match=key + "*")])
            assert found == sorted([key, key + ":h", key + ":n", board])

            acl = AccessControl()
            acl.create_role(Role("cache", grants={"cache:*": "SELECT|INSERT|UPDATE"}))
            acl.assign_role("ann", "cache")
            adb.use_access_control(acl)
            audit = MemoryAuditSink()
            adb.add_hook(AuditLog([audit]))
            q = adb.for_user("ann").query(DatabaseType.REDIS)
            assert await q.get(key).execute() == "v"
            with pytest.raises(PermissionDenied, match="'secret:1'"):
                await q.get("secret:1").execute()
            with pytest.raises(PermissionDenied):  # each command of a pipeline is checked
                await q.get(key).delete(key).execute()
            with pytest.raises(PermissionDenied):  # a SCAN of every key needs a "*" grant
                [k async for k in q.scan(match="*")]
            assert [(e.user, e.action, e.outcome) for e in audit.events] == [
                ("ann", "select", "ok"),
                ("ann", "select", "denied"),
                ("ann", "multiple", "denied"),
                ("ann", "select", "denied"),
            ]
            assert await r.get(key).execute() == "v"  # nothing was deleted
        finally:
            await r.delete(key, key + ":h", key + ":n", board).execute()
            await adb.close_all()

    asyncio.run(main())


def test_async_mongodb_builders_on_mongomock_through_policies_and_audit():
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.MONGODB, "mongodb+mock://parity")
        root = adb.query(DatabaseType.MONGODB)
        assert isinstance(root, AsyncMongoQuery)
        users = root.collection("users")
        sync_users = builders(adb.sync, DatabaseType.MONGODB).collection("users")
        people = [
            {"name": "ada", "age": 36, "country": "uk"},
            {"name": "alan", "age": 41, "country": "uk"},
            {"name": "grace", "age": 17, "country": "us"},
        ]
        ids = await users.insert_many(people).ids_as_str().execute()
        assert len(ids) == 3 and all(isinstance(i, str) for i in ids)
        adults = users.find({"age": {"$gt": 18}}).project("name").sort("age", -1)
        assert (
            adults.build()
            == sync_users.find({"age": {"$gt": 18}}).project("name").sort("age", -1).build()
        )
        found = await adults.execute()
        assert [d["name"] for d in found] == ["alan", "ada"]
        assert (
            found == sync_users.find({"age": {"$gt": 18}}).project("name").sort("age", -1).execute()
        )
        assert await users.where(col("age") > 18).count().execute() == 2
        changed = await users.where("name", "=", "ada").update_one({"$inc": {"age": 1}}).execute()
        assert changed == {"matched": 1, "modified": 1, "upserted_id": None}
        first = await users.where("name", "=", "ada").first()
        assert first is not None and first["age"] == 37
        assert await users.where("name", "=", "zed").first() is None
        assert len(await users.all()) == 3
        groups = await users.aggregate().group("$country", n={"$sum": 1}).sort("_id").execute()
        assert groups == [{"_id": "uk", "n": 2}, {"_id": "us", "n": 1}]

        acl = AccessControl()
        acl.create_role(
            Role(
                "reader",
                grants={"users": Permission.SELECT},
                policies={"users": lambda ctx: col("country") == ctx.attrs["country"]},
            )
        )
        acl.assign_role("ann", "reader")
        adb.use_access_control(acl)
        audit = MemoryAuditSink()
        adb.add_hook(AuditLog([audit]))
        ann_users = adb.for_user("ann", attrs={"country": "us"}).query(DatabaseType.MONGODB)
        seen = await ann_users.collection("users").all()
        assert [d["name"] for d in seen] == ["grace"]  # the row policy applied
        with pytest.raises(PermissionDenied):
            await ann_users.collection("users").insert_one({"name": "eve"}).execute()
        with pytest.raises(PermissionDenied):
            await ann_users.collection("secrets").count().execute()
        assert [(e.user, e.action, e.outcome) for e in audit.events] == [
            ("ann", "select", "ok"),
            ("ann", "insert", "denied"),
            ("ann", "select", "denied"),
        ]
        assert await users.count().execute() == 3
        await adb.close_all()

    asyncio.run(main())


def test_query_errors_name_the_missing_pool():
    async def main() -> None:
        adb = AsyncDatabaseManager()
        with pytest.raises(InterfaceError, match="no pool has been created"):
            adb.query()
        await adb.create_pool(DatabaseType.REDIS, PoolConfig(url="redis+mock://"))
        with pytest.raises(InterfaceError, match="no pool for mongodb"):
            adb.query(DatabaseType.MONGODB)
        with pytest.raises(QueryBuildError, match="no Redis command"):
            await adb.query(DatabaseType.REDIS).execute()
        await adb.close_all()

    asyncio.run(main())


def test_a_stream_cancelled_mid_fetch_drops_its_connection(postgres_url):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(
            DatabaseType.POSTGRES, PoolConfig(url=postgres_url, min_size=0, max_size=1)
        )
        sql = "SELECT i, pg_sleep(CASE WHEN i = 3 THEN 5 ELSE 0 END) FROM generate_series(1, 5) i"

        async def read() -> list[int]:
            async with adb.connection() as conn:
                return [row["i"] async for row in conn.stream(sql, batch_size=1)]

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.3)  # rows 1 and 2 read; row 3 takes 5 s
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = adb.get_pool().stats()
        assert (stats.active, stats.discarded, stats.total) == (0, 1, 0)
        assert await adb.fetch_value("SELECT 3") == 3  # a fresh connection
        await adb.close_all()

    asyncio.run(main())


def test_async_manager_creates_and_drops_tables_and_reports_health(tmp_path):
    from dbsystem.monitoring import HealthStatus
    from dbsystem.orm import Entity, Field

    class Gadget(Entity, table="gadgets"):
        id: int | None = Field(default=None, primary_key=True, auto_increment=True)
        name: str = ""

    async def main() -> tuple[list[str], list[str], dict[str, object], list[str]]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'g.db'}")
        await adb.create_pool(DatabaseType.REDIS, "redis+mock://")
        try:
            await adb.create_tables([Gadget], db_type=DatabaseType.SQLITE)
            await adb.run_sync(lambda db: Gadget(name="lamp").save(db, db_type=DatabaseType.SQLITE))
            rows = await adb.fetch_all("SELECT name FROM gadgets", db_type=DatabaseType.SQLITE)
            names = [g["name"] for g in rows]
            tables = [
                r["name"]
                for r in await adb.fetch_all(
                    "SELECT name FROM sqlite_master WHERE type = 'table'",
                    db_type=DatabaseType.SQLITE,
                )
            ]
            health = await adb.health()
            await adb.drop_tables([Gadget], db_type=DatabaseType.SQLITE)
            after = [
                r["name"]
                for r in await adb.fetch_all(
                    "SELECT name FROM sqlite_master WHERE type = 'table'",
                    db_type=DatabaseType.SQLITE,
                )
            ]
            return names, tables, health, after
        finally:
            await adb.close_all()

    names, tables, health, after = asyncio.run(main())
    assert names == ["lamp"]
    assert "gadgets" in tables
    assert {label: h.status for label, h in health.items()} == {
        "redis": HealthStatus.UP,
        "sqlite": HealthStatus.UP,
    }
    assert "gadgets" not in after
