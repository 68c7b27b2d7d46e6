"""Async PostgreSQL primary-key selects: 50 concurrent tasks on a pool of 10 connections.

Cases, interleaved over rounds, median throughput reported (selects per second):

* ``psycopg async + psycopg_pool``: the raw driver's ``AsyncConnectionPool``, autocommit
  connections (the floor);
* ``psycopg async, bare queue of 10``: ten autocommit connections in an ``asyncio.Queue``
  (no pool features at all: the least any pool can cost);
* ``SQLAlchemy asyncio``: ``create_async_engine("postgresql+psycopg://")``, Core ``text()``
  (its defaults: a transaction per checkout, rolled back on return);
* ``dbsystem``: ``AsyncDatabaseManager.fetch_one`` (pool acquire, hooks check, release);
* ``dbsystem builder``: ``adb.query(...).select(...).where(...).first()``.

The issue's target: dbsystem at least 90 % of the raw driver's throughput.

Run: ``python benchmarks/bench_async.py`` (``--quick``; ``DBSYSTEM_TEST_POSTGRES_URL``;
``--json PATH`` also writes every timed round as JSON, see ``_timing.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from _timing import Lap, Recorder, Stopwatch, add_json_argument  # benchmarks/_timing.py
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from dbsystem import AsyncDatabaseManager, DatabaseType, PoolConfig
from dbsystem.query import col

TASKS, POOL = 50, 10


async def throughput(select: Callable[[int], Awaitable[object]], per_task: int) -> Lap:
    """``TASKS`` tasks each running ``per_task`` selects: the time they take together."""

    async def task(offset: int) -> None:
        for i in range(per_task):
            await select((offset * per_task + i) % 1000 + 1)

    sw = Stopwatch()
    await asyncio.gather(*(task(t) for t in range(TASKS)))
    return sw.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    rec = Recorder("bench_async", args.json)
    url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    per_task, rounds = (20, 3) if args.quick else (100, 7)

    adb = AsyncDatabaseManager()
    await adb.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=POOL, max_size=POOL))
    await adb.execute("DROP TABLE IF EXISTS bench_async")
    await adb.execute("CREATE TABLE bench_async (id INTEGER PRIMARY KEY, name TEXT)")
    await adb.insert_many("bench_async", [{"id": i, "name": f"n{i}"} for i in range(1, 1001)])

    # Autocommit, as dbsystem runs outside transactions: otherwise each select would also
    # pay a BEGIN and the pool's ROLLBACK on return (SQLAlchemy's case: its default).
    raw_pool = AsyncConnectionPool(
        url, min_size=POOL, max_size=POOL, open=False, kwargs={"autocommit": True}
    )
    await raw_pool.open()
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), pool_size=POOL, max_overflow=0
    )
    sa_sql = text("SELECT id, name FROM bench_async WHERE id = :id")
    q = adb.query(DatabaseType.POSTGRES)

    free: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for _ in range(POOL):
        free.put_nowait(await psycopg.AsyncConnection.connect(url, autocommit=True))

    async def bare(i: int) -> object:
        conn = await free.get()
        try:
            cur = await conn.execute("SELECT id, name FROM bench_async WHERE id = %s", (i,))
            return await cur.fetchone()
        finally:
            free.put_nowait(conn)

    async def raw(i: int) -> object:
        async with raw_pool.connection() as conn:
            cur = await conn.execute("SELECT id, name FROM bench_async WHERE id = %s", (i,))
            return await cur.fetchone()

    async def sqlalchemy(i: int) -> object:
        async with engine.connect() as conn:
            return (await conn.execute(sa_sql, {"id": i})).first()

    async def dbsystem(i: int) -> object:
        return await adb.fetch_one("SELECT id, name FROM bench_async WHERE id = :id", {"id": i})

    async def builder(i: int) -> object:
        return await q.select("id", "name").from_("bench_async").where(col("id") == i).first()

    cases: dict[str, Callable[[int], Awaitable[object]]] = {
        "psycopg async + psycopg_pool": raw,
        "psycopg async, bare queue of 10": bare,
        "SQLAlchemy asyncio": sqlalchemy,
        "dbsystem fetch_one": dbsystem,
        "dbsystem builder": builder,
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for select in cases.values():
        await throughput(select, 5)
    for _ in range(rounds):
        for name, select in cases.items():
            lap = await throughput(select, per_task)
            rec.add("pk select, 50 tasks", name, TASKS * per_task, lap)
            results[name].append(TASKS * per_task / lap.wall)
    floor = statistics.median(results["psycopg async + psycopg_pool"])
    print(
        f"PostgreSQL PK select, {TASKS} tasks on a pool of {POOL}, "
        f"median of {rounds} rounds of {TASKS * per_task} selects"
    )
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:<30} {median:8.0f} selects/s  ({median / floor * 100:5.1f} % of raw)")
    await adb.execute("DROP TABLE bench_async")
    await raw_pool.close()
    while not free.empty():
        await free.get_nowait().close()
    await engine.dispose()
    await adb.close_all()
    rec.write()


if __name__ == "__main__":
    asyncio.run(main())
