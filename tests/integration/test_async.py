"""The asyncio API on every SQL backend (SQLite, PostgreSQL natively, MariaDB on a worker
thread), Redis and MongoDB (mock): statements, transactions, builders, the pool's
guarantees (timeouts, health checks, statistics, cancellation), a slow query that does
not stall the event loop, and access control, row policies, audit and metrics."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from dbsystem import (
    AsyncDatabaseManager,
    DatabaseManager,
    DatabaseType,
    IntegrityError,
    InterfaceError,
    PermissionDenied,
    PoolConfig,
    PoolTimeout,
    ProgrammingError,
)
from dbsystem.orm import Entity, Field
from dbsystem.query import col
from dbsystem.security import AccessControl, AuditLog, MemoryAuditSink, Permission, Role
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

pytestmark = pytest.mark.timeout(60)


def _url(kind: str, request, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/aio.db"
    return request.getfixturevalue(f"{kind}_url")


@pytest.fixture(params=SQL_BACKENDS)
def kind(request):
    return request.param


def run(coro):
    return asyncio.run(coro)


async def _manager(kind, request, tmp_path, **settings) -> tuple[AsyncDatabaseManager, str]:
    adb = AsyncDatabaseManager()
    config = PoolConfig(url=_url(kind, request, tmp_path), **settings)
    await adb.create_pool(SQL_TYPES[kind], config)
    table = f"aio_{uuid.uuid4().hex[:8]}"
    await adb.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40))")
    return adb, table


async def _drop(adb: AsyncDatabaseManager, table: str) -> None:
    await adb.execute(f"DROP TABLE {table}")
    await adb.close_all()


def test_statements_and_types(kind, request, tmp_path):
    async def main():
        adb, t = await _manager(kind, request, tmp_path)
        try:
            assert (
                await adb.execute(f"INSERT INTO {t} VALUES (:id, :n)", {"id": 1, "n": "ada"}) == 1
            )
            await adb.executemany(
                f"INSERT INTO {t} VALUES (:id, :n)", [{"id": 2, "n": "bob"}, {"id": 3, "n": None}]
            )
            assert await adb.insert_many(t, [{"id": 4, "name": "x"}, {"id": 5, "name": "y"}]) == 2
            rows = await adb.fetch_all(f"SELECT id, name FROM {t} ORDER BY id")
            assert [r["id"] for r in rows] == [1, 2, 3, 4, 5] and rows[2]["name"] is None
            assert await adb.fetch_one(f"SELECT name FROM {t} WHERE id = :id", {"id": 2}) == {
                "name": "bob"
            }
            assert await adb.fetch_one(f"SELECT name FROM {t} WHERE id = 99") is None
            assert await adb.fetch_value(f"SELECT COUNT(*) FROM {t}") == 5
            with pytest.raises(IntegrityError):
                await adb.execute(f"INSERT INTO {t} VALUES (1, 'dup')")
            with pytest.raises(ProgrammingError, match=":missing"):
                await adb.fetch_all(f"SELECT * FROM {t} WHERE id = :missing", {})
            with pytest.raises(ProgrammingError):
                await adb.execute(f"SELECT 1; DELETE FROM {t}")
            assert await adb.fetch_value(f"SELECT COUNT(*) FROM {t}") == 5
            with pytest.raises(IntegrityError):  # insert_many: all or nothing
                await adb.insert_many(t, [{"id": 6, "name": "z"}, {"id": 1, "name": "dup"}])
            assert await adb.fetch_value(f"SELECT COUNT(*) FROM {t}") == 5
        finally:
            await _drop(adb, t)

    run(main())


def test_transactions_and_savepoints(kind, request, tmp_path):
    async def main():
        adb, t = await _manager(kind, request, tmp_path)
        try:
            async with adb.transaction() as conn:
                await conn.execute(f"INSERT INTO {t} VALUES (1, 'a')")
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {t} VALUES (2, 'b')")
                with pytest.raises(RuntimeError):
                    async with conn.transaction():
                        await conn.execute(f"INSERT INTO {t} VALUES (3, 'c')")
                        raise RuntimeError
                assert conn.in_transaction
            with pytest.raises(RuntimeError):
                async with adb.transaction() as conn:
                    await conn.execute(f"INSERT INTO {t} VALUES (4, 'd')")
                    raise RuntimeError
            rows = await adb.fetch_all(f"SELECT id FROM {t} ORDER BY id")
            assert [r["id"] for r in rows] == [1, 2]
            # A lease returned with its transaction open: the pool rolls it back.
            conn = await adb.connection()
            await conn.raw.begin()
            await conn.execute(f"INSERT INTO {t} VALUES (9, 'left open')")
            await conn.release()
            assert await adb.fetch_value(f"SELECT COUNT(*) FROM {t} WHERE id = 9") == 0
            async with adb.connection() as again:
                assert not again.in_transaction
        finally:
            await _drop(adb, t)

    run(main())


def test_builders(kind, request, tmp_path):
    async def main():
        adb, t = await _manager(kind, request, tmp_path)
        try:
            q = adb.query()
            assert await q.insert_into(t).values({"id": 1, "name": "ada"}).execute() == 1
            await (
                q.insert_into(t)
                .values([{"id": 2, "name": "bob"}, {"id": 3, "name": "cy"}])
                .execute()
            )
            assert await q.update(t).set(name="ADA").where("id", "=", 1).execute() == 1
            assert await q.delete_from(t).where("id", "=", 3).execute() == 1
            rows = await q.select("id", "name").from_(t).order_by("id").limit(10).execute()
            assert rows == [{"id": 1, "name": "ADA"}, {"id": 2, "name": "bob"}]
            assert await q.select("name").from_(t).where(col("id") == 2).first() == {"name": "bob"}
            assert await q.select("name").from_(t).where(col("id") == 9).first() is None
            assert await q.select("name").from_(t).where(col("id") == 1).scalar_value() == "ADA"
            assert await q.raw_sql(f"SELECT COUNT(*) AS n FROM {t}").execute() == [{"n": 2}]
            async with adb.transaction() as conn:  # a builder inside a transaction: conn=
                await q.insert_into(t).values({"id": 4, "name": "d"}).execute(conn)
                assert await q.select("id").from_(t).where(col("id") == 4).all(conn) == [{"id": 4}]
        finally:
            await _drop(adb, t)

    run(main())


def test_pool_limits_timeouts_and_statistics(kind, request, tmp_path):
    async def main():
        adb, t = await _manager(
            kind, request, tmp_path, min_size=1, max_size=3, acquire_timeout=0.3
        )
        pool = adb.get_pool()
        try:
            peak = 0

            async def worker(i: int) -> int:
                nonlocal peak
                async with adb.connection() as conn:
                    peak = max(peak, pool.stats().active)
                    await asyncio.sleep(0.01)
                    return int(await conn.fetch_value("SELECT :i", {"i": i}))

            assert await asyncio.gather(*(worker(i) for i in range(50))) == list(range(50))
            assert peak == 3 and pool.stats().total <= 3
            held = [await adb.connection() for _ in range(3)]
            started = time.monotonic()
            with pytest.raises(PoolTimeout, match="within 0.3 s"):
                await adb.connection()
            assert 0.25 <= time.monotonic() - started < 0.5
            for lease in held:
                await lease.release()
            with pytest.raises(InterfaceError):
                await held[0].release()
            stats = pool.stats()
            assert (stats.active, stats.waiting, stats.timeouts) == (0, 0, 1)
            assert stats.acquired >= 53 and sum(stats.wait_counts) == stats.acquired
        finally:
            await _drop(adb, t)

    run(main())


def test_cancellation_leaks_nothing(kind, request, tmp_path):
    async def main():
        adb, t = await _manager(kind, request, tmp_path, min_size=0, max_size=2)
        pool = adb.get_pool()
        try:
            held = [await adb.connection() for _ in range(2)]
            waiting = [asyncio.ensure_future(adb.fetch_value("SELECT 1")) for _ in range(5)]
            await asyncio.sleep(0.05)
            assert pool.stats().waiting == 5
            for task in waiting[:4]:
                task.cancel()
            await held[0].release()  # served to the one waiter left
            assert await waiting[4] == 1
            await asyncio.gather(*waiting[:4], return_exceptions=True)
            assert pool.stats().waiting == 0

            async def hold_then_die() -> None:
                async with adb.connection() as conn:
                    await conn.fetch_value("SELECT 1")
                    await asyncio.sleep(10)

            task = asyncio.ensure_future(hold_then_die())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await held[1].release()
            await asyncio.sleep(0)
            stats = pool.stats()
            assert (stats.active, stats.waiting) == (0, 0)
            assert await adb.fetch_value("SELECT 2") == 2  # the pool still serves
        finally:
            await _drop(adb, t)

    run(main())


SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT COUNT(*) FROM c",
    "postgres": "SELECT pg_sleep(0.5)",
    "mysql": "SELECT SLEEP(0.5)",
}


def test_a_slow_query_does_not_stall_the_event_loop(kind, request, tmp_path):
    async def main():
        adb, t = await _manager(kind, request, tmp_path, max_size=2)
        try:
            ticks: list[float] = []

            async def ticker() -> None:
                while True:
                    ticks.append(time.monotonic())
                    await asyncio.sleep(0.01)

            tick = asyncio.ensure_future(ticker())
            started = time.monotonic()
            await adb.fetch_value(SLOW[kind])
            took = time.monotonic() - started
            tick.cancel()
            gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
            assert took > 0.2  # it was slow
            assert max(gaps) < 0.1, f"the loop stalled {max(gaps):.3f} s"
        finally:
            await _drop(adb, t)

    run(main())


def test_cancelled_mid_statement_the_connection_is_dropped(postgres_url):
    async def main():
        adb = AsyncDatabaseManager()
        await adb.create_pool(
            DatabaseType.POSTGRES, PoolConfig(url=postgres_url, min_size=0, max_size=1)
        )
        pool = adb.get_pool()
        task = asyncio.ensure_future(adb.fetch_value("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)
        stats = pool.stats()
        assert (stats.active, stats.discarded, stats.total) == (0, 1, 0)
        started = time.monotonic()
        assert await adb.fetch_value("SELECT 3") == 3  # a fresh connection, at once
        assert time.monotonic() - started < 1.0
        sleeping = await adb.fetch_value(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)' "
            "AND state = 'active'"
        )
        await adb.close_all()
        return sleeping

    assert run(main()) in (0, 1)  # the server may still be finishing the old statement


def test_a_dead_connection_is_replaced_by_the_health_check(postgres_url):
    async def main():
        adb = AsyncDatabaseManager()
        await adb.create_pool(
            DatabaseType.POSTGRES,
            PoolConfig(url=postgres_url, min_size=1, max_size=1, health_check_interval=0),
        )
        pid = await adb.fetch_value("SELECT pg_backend_pid()")
        killer = AsyncDatabaseManager()
        await killer.create_pool(DatabaseType.POSTGRES, postgres_url)
        await killer.fetch_value("SELECT pg_terminate_backend(:p)", {"p": pid})
        await killer.close_all()
        assert await adb.fetch_value("SELECT pg_backend_pid()") != pid  # no error surfaced
        assert adb.get_pool().stats().discarded == 1
        await adb.close_all()

    run(main())


def test_access_control_row_policies_audit_and_metrics(kind, request, tmp_path):
    from dbsystem.monitoring import PerformanceMonitor

    async def main():
        adb, t = await _manager(kind, request, tmp_path)
        try:
            await adb.insert_many(
                t, [{"id": 1, "name": "t1"}, {"id": 2, "name": "t1"}, {"id": 3, "name": "t2"}]
            )
            acl = AccessControl()
            acl.create_role(
                Role(
                    "tenant",
                    grants={t: Permission.SELECT},
                    policies={t: lambda ctx: col("name") == ctx.attrs["tenant"]},
                )
            )
            acl.assign_role("ann", "tenant")
            adb.use_access_control(acl)
            audit = MemoryAuditSink()
            adb.add_hook(AuditLog([audit]))
            monitor = PerformanceMonitor()
            adb.add_hook(monitor)
            ann = adb.for_user("ann", session_id="s-1", attrs={"tenant": "t1"})
            rows = await ann.query().select("id").from_(t).order_by("id").execute()
            assert rows == [{"id": 1}, {"id": 2}]  # the row policy applied
            with pytest.raises(PermissionDenied):
                await ann.query().delete_from(t).where("id", "=", 1).execute()
            with pytest.raises(PermissionDenied, match="row policy"):
                await ann.fetch_all(f"SELECT * FROM {t}")  # raw SQL cannot carry the policy
            assert await adb.fetch_value(f"SELECT COUNT(*) FROM {t}") == 3
            assert [(e.user, e.action, e.outcome) for e in audit.events] == [
                ("ann", "select", "ok"),
                ("ann", "delete", "denied"),
                ("ann", "select", "denied"),
            ]
            summary = monitor.summary()
            assert summary.total_queries >= 4 and summary.errors >= 2
        finally:
            await _drop(adb, t)

    run(main())


def test_redis_and_mongodb_through_threads():
    async def main():
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.REDIS, "redis+mock://")
        await adb.create_pool(DatabaseType.MONGODB, "mongodb+mock://aio")
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("SET", "k", "v")
            assert await redis.execute("GET", "k") == "v"
            assert await redis.pipeline([("INCR", "n"), ("INCR", "n")]) == [1, 2]
        async with adb.connection(DatabaseType.MONGODB) as mongo:
            await mongo.ping()
            doc = {"_id": 1, "name": "ada"}
            await mongo.run("insert_one", "users", {}, lambda users: users.insert_one(doc))
            found = await mongo.run(
                "find_one", "users", {}, lambda users: users.find_one({"_id": 1})
            )
            assert found == doc
        assert set(adb.pools()) == {(DatabaseType.REDIS, None), (DatabaseType.MONGODB, None)}
        await adb.close_all()

    run(main())


def test_the_singleton_and_the_top_level_export():
    import dbsystem

    assert dbsystem.AsyncDatabaseManager.instance() is AsyncDatabaseManager.instance()


def test_redis_natively_async_with_hooks(redis_url):
    from dbsystem.aio._redis import AsyncRedisConnection

    async def main():
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.REDIS, redis_url)
        acl = AccessControl()
        acl.create_role(Role("cache", grants={"cache:*": "SELECT|INSERT|UPDATE"}))
        acl.assign_role("ann", "cache")
        adb.use_access_control(acl)
        audit = MemoryAuditSink()
        adb.add_hook(AuditLog([audit]))
        key = f"cache:{uuid.uuid4().hex[:8]}"
        async with adb.connection(DatabaseType.REDIS) as redis:
            assert isinstance(redis, AsyncRedisConnection)
            await redis.execute("SET", key, "v")
            assert await redis.execute("GET", key) == "v"
            assert await redis.pipeline([("INCR", key + ":n"), ("INCR", key + ":n")]) == [1, 2]
            with pytest.raises(ProgrammingError):
                await redis.execute("INCR", key)  # not an integer: a typed error
        ann = adb.for_user("ann")
        async with ann.connection(DatabaseType.REDIS) as redis:
            assert await redis.execute("GET", key) == "v"
            with pytest.raises(PermissionDenied):
                await redis.execute("GET", "secret:1")
            with pytest.raises(PermissionDenied):  # each command of a pipeline is checked
                await redis.pipeline([("GET", key), ("FLUSHALL",)])
        assert [(e.action, e.outcome) for e in audit.events] == [
            ("select", "ok"),
            ("select", "denied"),
            ("multiple", "denied"),
        ]

        # Many tasks at once do not block each other or the loop.
        async def bump(i: int) -> None:
            async with adb.connection(DatabaseType.REDIS) as redis:
                await redis.execute("INCR", key + ":c")

        await asyncio.gather(*(bump(i) for i in range(200)))
        async with adb.connection(DatabaseType.REDIS) as redis:
            assert await redis.execute("GET", key + ":c") == "200"
            await redis.execute("DEL", key, key + ":n", key + ":c")
        await adb.close_all()

    run(main())


class Note(Entity, table="aio_notes"):
    id: int = Field(primary_key=True)
    text: str = ""
    tenant: str = ""


def test_the_orm_from_async_code(kind, request, tmp_path):
    async def main():
        adb = AsyncDatabaseManager()
        await adb.create_pool(SQL_TYPES[kind], _url(kind, request, tmp_path))
        await adb.run_sync(lambda db: db.create_tables([Note]))
        try:
            await adb.run_sync(lambda db: Note(id=1, text="a", tenant="t1").save(db))
            await adb.run_sync(
                lambda db: Note.save_all(
                    db, [Note(id=2, text="b", tenant="t1"), Note(id=3, text="c", tenant="t2")]
                )
            )
            note = await adb.run_sync(lambda db: Note.get(db, 1))
            assert note is not None and note.text == "a"
            note.text = "A"
            await adb.run_sync(lambda db: note.save(db))
            found = await adb.run_sync(
                lambda db: Note.query(db).where(col("tenant") == "t1").order_by("id").all()
            )
            assert [(n.id, n.text) for n in found] == [(1, "A"), (2, "b")]

            def in_a_transaction(db) -> None:
                with db.transaction():
                    Note(id=4, text="d").save(db)
                    raise RuntimeError("rolled back")

            with pytest.raises(RuntimeError):
                await adb.run_sync(in_a_transaction)
            assert await adb.run_sync(lambda db: Note.get(db, 4)) is None
            await adb.run_sync(lambda db: note.delete(db))
            assert await adb.fetch_value("SELECT COUNT(*) FROM aio_notes") == 2
            # As a user: the session's row policy applies to the ORM too.
            acl = AccessControl()
            acl.create_role(
                Role(
                    "tenant",
                    grants={"aio_notes": Permission.SELECT},
                    policies={"aio_notes": lambda ctx: col("tenant") == ctx.attrs["tenant"]},
                )
            )
            acl.assign_role("ann", "tenant")
            adb.use_access_control(acl)
            ann = adb.for_user("ann", attrs={"tenant": "t2"})
            seen = await ann.run_sync(lambda db: Note.query(db).all())
            assert [n.id for n in seen] == [3]
            with pytest.raises(PermissionDenied):
                await ann.run_sync(lambda db: Note(id=9, tenant="t2").save(db))
        finally:
            await adb.execute("DROP TABLE aio_notes")
            await adb.close_all()

    run(main())


def test_reads_go_to_a_replica_and_writes_to_the_primary(tmp_path):
    # Two SQLite files stand in for a primary and its replica: a row says which one answered.
    for role in ("primary", "replica"):
        setup = DatabaseManager()
        setup.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/{role}.db")
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        setup.execute("INSERT INTO t VALUES (1, :v)", {"v": role})
        setup.close_all()

    async def main() -> None:
        adb = AsyncDatabaseManager()
        config = PoolConfig(
            url=f"sqlite:///{tmp_path}/primary.db", replicas=[f"sqlite:///{tmp_path}/replica.db"]
        )
        await adb.create_pool(DatabaseType.SQLITE, config)
        try:
            assert await adb.fetch_value("SELECT v FROM t") == "replica"
            assert await adb.fetch_one("SELECT v FROM t") == {"v": "replica"}
            q = adb.query(DatabaseType.SQLITE)
            assert await q.select("v").from_("t").scalar_value() == "replica"
            await adb.execute("INSERT INTO t VALUES (2, 'written')")  # a write: the primary
            rows = await adb.fetch_all("INSERT INTO t VALUES (3, 'x') RETURNING id")
            assert rows == [{"id": 3}]  # a write through fetch_all: the primary too
            async with adb.transaction(DatabaseType.SQLITE) as conn:
                assert await conn.fetch_value("SELECT COUNT(*) FROM t") == 3
            adb.read_your_writes(0.3)
            await adb.execute("UPDATE t SET v = 'again' WHERE id = 2")
            assert await adb.fetch_value("SELECT v FROM t WHERE id = 1") == "primary"
            await asyncio.sleep(0.35)
            assert await adb.fetch_value("SELECT v FROM t WHERE id = 1") == "replica"
            acl = AccessControl()
            acl.create_role(Role("reader", grants={"t": Permission.SELECT}))
            acl.assign_role("ann", "reader")
            adb.use_access_control(acl)
            ann = adb.for_user("ann")
            assert await ann.fetch_value("SELECT v FROM t WHERE id = 1") == "replica"
            assert await ann.query(DatabaseType.SQLITE).select("v").from_("t").all() == [
                {"v": "replica"}
            ]
            with pytest.raises(PermissionDenied):  # checked on the replica as on the primary
                await adb.for_user("nobody").fetch_all("SELECT v FROM t")
        finally:
            await adb.close_all()

    asyncio.run(main())


def test_list_parameters_after_in(kind, request, tmp_path):
    """The async connections (PostgreSQL's own included) take a list after IN (issue 21)."""

    async def main():
        adb, t = await _manager(kind, request, tmp_path)
        try:
            await adb.insert_many(t, [{"id": i, "name": f"n{i}"} for i in (1, 2, 3)])
            rows = await adb.fetch_all(f"SELECT id FROM {t} WHERE id IN (:ids)", {"ids": [1, 3]})
            assert sorted(r["id"] for r in rows) == [1, 3]
            rows = await adb.fetch_all(f"SELECT id FROM {t} WHERE id NOT IN :ids", {"ids": []})
            assert len(rows) == 3
            with pytest.raises(InterfaceError, match="parameter :ids is a list"):
                await adb.fetch_all(f"SELECT id FROM {t} WHERE id = :ids", {"ids": [1]})
        finally:
            await _drop(adb, t)

    run(main())
