"""asyncio: the async manager, concurrent queries on one pool, transactions, the builders,
Redis, the ORM through ``run_sync``, and a timeout that cancels cleanly.

Run: ``python -m samples.async_examples`` (SQLite file and mock Redis), or with
``--sql-url postgresql://...`` (native psycopg async) and ``--redis-url redis://...``.
"""

from __future__ import annotations

import asyncio
import time

from dbsystem import AsyncDatabaseManager, DatabaseType, IntegrityError, PoolConfig
from dbsystem.orm import Entity, Field
from dbsystem.query import col
from samples._common import aown_tables, database_type, sample_urls


class Task(Entity, table="sample_tasks"):
    id: int = Field(primary_key=True)
    title: str = Field(max_length=100)
    done: bool = False


async def main(urls: dict[str, str]) -> None:
    adb = AsyncDatabaseManager()
    sql = database_type(urls["sql"])
    await adb.create_pool(sql, PoolConfig(url=urls["sql"], min_size=2, max_size=5))
    await adb.create_pool(DatabaseType.REDIS, urls["redis"])
    adb.set_mode(sql)
    try:
        async with aown_tables(adb, sql, "sample_tasks"):
            await adb.run_sync(lambda db: db.create_tables([Task]))

            # Fifty tasks share five connections; each insert awaits its turn.
            async def add(n: int) -> None:
                await adb.execute(
                    "INSERT INTO sample_tasks (id, title, done) VALUES (:id, :t, :d)",
                    {"id": n, "t": f"task {n}", "d": n % 3 == 0},
                )

            start = time.perf_counter()
            await asyncio.gather(*(add(n) for n in range(1, 51)))
            took = (time.perf_counter() - start) * 1000
            print(f"50 concurrent inserts on 5 connections in {took:.0f} ms")
            stats = adb.pools()[(sql, None)].stats()
            print(f"pool: total={stats.total} acquired={stats.acquired} max_size={stats.max_size}")

            # A transaction: both statements, or neither.
            try:
                async with adb.transaction(sql) as conn:
                    await conn.execute(
                        "UPDATE sample_tasks SET done = :d WHERE id = 1", {"d": True}
                    )
                    await conn.execute(
                        "INSERT INTO sample_tasks (id, title, done) VALUES (2, 'dup', :d)",
                        {"d": False},
                    )
            except IntegrityError:
                still = await adb.fetch_value("SELECT done FROM sample_tasks WHERE id = 1")
                print(f"the transaction rolled back: task 1 done = {bool(still)}")

            # The same builders as the sync API, awaited.
            q = adb.query(sql)
            open_tasks = (
                await q.select(col("id"))
                .from_("sample_tasks")
                .where(
                    col("done") == False  # noqa: E712 - an expression
                )
                .order_by("id")
                .limit(3)
                .all()
            )
            print(f"first open tasks: {[row['id'] for row in open_tasks]}")

            # The ORM: its calls run on a worker thread, each statement on this event loop.
            task = await adb.run_sync(lambda db: Task.get(db, 7))
            print(f"ORM: {task!r}")
            count = await adb.run_sync(lambda db: Task.query(db).where(Task.done == True).count())  # noqa: E712
            print(f"ORM: {count} tasks done")

            # Redis on redis.asyncio.
            async with adb.connection(DatabaseType.REDIS) as redis:
                await redis.execute("SET", "sample:async", "hello")
                print(f"Redis: {await redis.execute('GET', 'sample:async')}")

            # A timeout cancels the awaiting task; its connection goes back to the pool.
            try:
                async with asyncio.timeout(0.05):
                    async with adb.connection(sql) as conn:
                        await asyncio.sleep(1)  # stands in for a slow query
            except TimeoutError:
                active = adb.pools()[(sql, None)].stats().active
                print(f"timed out after 50 ms; connections lent out now: {active}")
    finally:
        await adb.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql", "redis") as urls:
        asyncio.run(main(urls))
