"""Throughput against the servers' own C benchmark clients, in one run.

Rows (operations per second; median of the rounds):

PostgreSQL, primary-key select on pgbench's ``pgbench_accounts`` (100,000 rows, scale 1):
* ``pgbench -S -M prepared -c 8 -j 2``: the C client, the practical limit of the server;
* psycopg's ``AsyncConnectionPool``, 50 tasks on 10 connections;
* ``AsyncDatabaseManager.fetch_one`` and the builder, 50 tasks on 10 connections;
* sync, 8 threads on 8 connections: psycopg_pool, dbsystem raw SQL, dbsystem builder.

Redis ``GET`` of one key:
* ``redis-benchmark -t get -c 50``: the C client, the limit;
* ``redis.asyncio``, 50 tasks (one command per round trip: its default);
* dbsystem async, 50 tasks, with automatic pipelining (the default) and without.

Every ratio is against a row of the same run. Run:
``python benchmarks/bench_throughput.py`` (``--quick``; ``DBSYSTEM_TEST_POSTGRES_URL``,
``DBSYSTEM_TEST_REDIS_URL``). It creates the database ``dbsystem_bench_throughput`` with
``pgbench -i`` (and drops nothing: rerunning reuses it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, PoolConfig
from dbsystem.query import col

TASKS, POOL, THREADS = 50, 10, 8
DB = "dbsystem_bench_throughput"
SQL = "SELECT aid, abalance FROM pgbench_accounts WHERE aid = %s"
SQL_NAMED = "SELECT aid, abalance FROM pgbench_accounts WHERE aid = :aid"
ROWS = 100_000


def _pg_args(url: str) -> list[str]:
    parts = urlsplit(url)
    return ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
            "-U", parts.username or "root"]  # fmt: skip


def _prepare_pgbench(url: str) -> str:
    """The URL of a database holding pgbench's tables, made once."""
    base = _pg_args(url)
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {DB}")
            subprocess.run(["pgbench", *base, "-i", "-s", "1", "-q", DB], check=True,
                           capture_output=True)  # fmt: skip
    parts = urlsplit(url)
    return parts._replace(path=f"/{DB}").geturl()


def pgbench(url: str, seconds: int) -> float:
    out = subprocess.run(
        ["pgbench", *_pg_args(url), "-S", "-M", "prepared", "-c", "8", "-j", "2",
         "-T", str(seconds), "-n", DB],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if found is None:
        raise SystemExit(f"cannot read pgbench's output:\n{out}")
    return float(found.group(1))


def redis_benchmark(url: str, requests: int) -> float:
    parts = urlsplit(url)
    out = subprocess.run(
        ["redis-benchmark", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379),
         "-t", "get", "-c", "50", "-n", str(requests), "-q"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = re.search(r"GET: ([\d.]+) requests per second", out)
    if found is None:
        raise SystemExit(f"cannot read redis-benchmark's output:\n{out}")
    return float(found.group(1))


async def tasks_rate(call: Callable[[int], Awaitable[object]], per_task: int) -> float:
    async def task(offset: int) -> None:
        for i in range(per_task):
            await call((offset * 7919 + i * 104_729) % ROWS + 1)

    start = time.perf_counter()
    await asyncio.gather(*(task(t) for t in range(TASKS)))
    return TASKS * per_task / (time.perf_counter() - start)


def threads_rate(call: Callable[[int], object], per_thread: int) -> float:
    def work(offset: int) -> None:
        for i in range(per_thread):
            call((offset * 7919 + i * 104_729) % ROWS + 1)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return THREADS * per_thread / (time.perf_counter() - start)


async def postgres(url: str, rounds: int, per_task: int, seconds: int) -> dict[str, list[float]]:
    adb = AsyncDatabaseManager()
    await adb.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=POOL, max_size=POOL))
    q = adb.query(DatabaseType.POSTGRES)
    raw_pool = AsyncConnectionPool(
        url, min_size=POOL, max_size=POOL, open=False, kwargs={"autocommit": True}
    )
    await raw_pool.open()
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=THREADS, max_size=THREADS))
    sq = db.query(DatabaseType.POSTGRES)
    sync_pool = ConnectionPool(
        url, min_size=THREADS, max_size=THREADS, open=True, kwargs={"autocommit": True}
    )

    async def raw(i: int) -> object:
        async with raw_pool.connection() as conn:
            return await (await conn.execute(SQL, (i,))).fetchone()

    async def ours(i: int) -> object:
        return await adb.fetch_one(SQL_NAMED, {"aid": i})

    async def builder(i: int) -> object:
        return (
            await q.select("aid", "abalance")
            .from_("pgbench_accounts")
            .where(col("aid") == i)
            .first()
        )

    def sync_raw(i: int) -> object:
        with sync_pool.connection() as conn:
            return conn.execute(SQL, (i,)).fetchone()

    def sync_ours(i: int) -> object:
        return db.fetch_one(SQL_NAMED, {"aid": i})

    def sync_builder(i: int) -> object:
        return sq.select("aid", "abalance").from_("pgbench_accounts").where(col("aid") == i).first()

    async_cases: dict[str, Callable[[int], Awaitable[object]]] = {
        "psycopg async pool, 50 tasks": raw,
        "AsyncDatabaseManager.fetch_one, 50 tasks": ours,
        "async builder .first(), 50 tasks": builder,
    }
    sync_cases: dict[str, Callable[[int], object]] = {
        "sync psycopg_pool, 8 threads": sync_raw,
        "sync DatabaseManager.fetch_one, 8 threads": sync_ours,
        "sync builder .first(), 8 threads": sync_builder,
    }
    results: dict[str, list[float]] = {"pgbench -S -M prepared -c 8 -j 2": []}
    results.update({name: [] for name in async_cases})
    results.update({name: [] for name in sync_cases})
    for call in async_cases.values():  # warm up
        await tasks_rate(call, 5)
    for round_ in range(rounds):
        results["pgbench -S -M prepared -c 8 -j 2"].append(pgbench(url, seconds))
        for name, call in async_cases.items():
            results[name].append(await tasks_rate(call, per_task))
        for name, sync_call in sync_cases.items():
            results[name].append(threads_rate(sync_call, per_task * TASKS // THREADS))
        print(f"  (postgres round {round_ + 1}/{rounds} done)", flush=True)
    await adb.close_all()
    await raw_pool.close()
    db.close_all()
    sync_pool.close()
    return results


async def redis(url: str, rounds: int, per_task: int) -> dict[str, list[float]]:
    key = "dbsystem:bench:throughput"
    plain = aioredis.Redis.from_url(url, max_connections=POOL * 5, decode_responses=True)
    await plain.set(key, "value")
    managers: dict[str, Any] = {}
    for label, pipelining in (("on", True), ("off", False)):
        adb = AsyncDatabaseManager()
        await adb.create_pool(
            DatabaseType.REDIS, PoolConfig(url=url, max_size=POOL * 5, pipelining=pipelining)
        )
        managers[label] = adb

    async def raw(_: int) -> object:
        return await plain.get(key)

    def ours(adb: AsyncDatabaseManager) -> Callable[[int], Awaitable[object]]:
        async def get(_: int) -> object:
            async with adb.connection(DatabaseType.REDIS) as conn:
                return await conn.execute("GET", key)

        return get

    cases: dict[str, Callable[[int], Awaitable[object]]] = {
        "redis.asyncio GET, 50 tasks": raw,
        "dbsystem async GET, 50 tasks, pipelining": ours(managers["on"]),
        "dbsystem async GET, 50 tasks, pipelining=False": ours(managers["off"]),
    }
    results: dict[str, list[float]] = {"redis-benchmark -t get -c 50": []}
    results.update({name: [] for name in cases})
    for call in cases.values():
        await tasks_rate(call, 5)
    for _ in range(rounds):
        results["redis-benchmark -t get -c 50"].append(redis_benchmark(url, TASKS * per_task * 2))
        for name, call in cases.items():
            results[name].append(await tasks_rate(call, per_task))
    await plain.delete(key)
    await plain.aclose()
    for adb in managers.values():
        await adb.close_all()
    return results


def report(title: str, results: dict[str, list[float]], limit: str) -> None:
    top = statistics.median(results[limit])
    print(f"\n{title}")
    print(f"  {'case':<48} {'ops/s':>9}  {'x limit':>7}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:<48} {median:9.0f}  {median / top:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("postgres", "redis"))
    args = parser.parse_args()
    pg_url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    redis_url = os.environ.get("DBSYSTEM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    rounds, per_task, seconds = (1, 40, 3) if args.quick else (3, 200, 8)
    for tool in ("pgbench", "redis-benchmark"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    print(f"{rounds} rounds; {os.cpu_count()} cores; medians")
    if args.only in (None, "postgres"):
        url = _prepare_pgbench(pg_url)
        report(
            "PostgreSQL primary-key select (pgbench_accounts, 100,000 rows)",
            asyncio.run(postgres(url, rounds, per_task, seconds)),
            "pgbench -S -M prepared -c 8 -j 2",
        )
    if args.only in (None, "redis"):
        report(
            "Redis GET",
            asyncio.run(redis(redis_url, rounds, per_task)),
            "redis-benchmark -t get -c 50",
        )


if __name__ == "__main__":
    main()
