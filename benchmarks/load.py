"""Load: 50 threads on a pool of 10 against each real backend, beside the raw driver.

For each backend, for ``--seconds``: every thread loops over a mix of primary-key reads and
(``--writes``, default 10 %) inserts with unique ids, through dbsystem, then through the raw
driver behind the simplest pool there is (a ``queue.Queue`` of 10 connections), in the same
harness. Reported: throughput, p50/p99 latency per operation, p99 time to get a connection,
errors, and dbsystem's throughput as a share of the raw driver's. The test catalog's L2
(0 errors, 0 timeouts) and L7 (Redis at least 50 % of raw redis-py).

Run: ``python benchmarks/load.py`` (``--seconds 60`` for the catalog's figure;
``--backends postgres,mysql,redis``; ``--sweep 2,4,10,20`` compares pool sizes, the
catalog's L3; the ``DBSYSTEM_TEST_*_URL`` variables).
"""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymysql
import redis

from dbsystem import DatabaseManager, DatabaseType, PoolConfig

THREADS, POOL, ROWS = 50, 10, 1000


@dataclass
class Result:
    ops: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    error_types: set[str] = field(default_factory=set)


def _p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def run_load(
    borrow: Callable[[], AbstractContextManager[Any]],
    read: Callable[[Any, int], Any],
    write: Callable[[Any, int], Any],
    seconds: float,
    writes: float,
) -> tuple[Result, float]:
    """Threads loop until the deadline; returns the merged result and the elapsed time."""
    ids = itertools.count(10_000_000 + random.randrange(1_000_000) * 100)
    results = [Result() for _ in range(THREADS)]
    start_line = threading.Barrier(THREADS + 1)
    deadline = 0.0

    def worker(result: Result) -> None:
        rng = random.Random()
        start_line.wait()
        while (now := time.perf_counter()) < deadline:
            try:
                with borrow() as conn:
                    got = time.perf_counter()
                    if rng.random() < writes:
                        write(conn, next(ids))
                    else:
                        read(conn, rng.randrange(1, ROWS + 1))
                done = time.perf_counter()
                result.ops += 1
                result.waits.append(got - now)
                result.latencies.append(done - now)
            except Exception as exc:  # counted and reported: the load must go on
                result.errors += 1
                result.error_types.add(type(exc).__name__)

    threads = [threading.Thread(target=worker, args=(r,)) for r in results]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = Result()
    for result in results:
        merged.ops += result.ops
        merged.errors += result.errors
        merged.latencies += result.latencies
        merged.waits += result.waits
        merged.error_types |= result.error_types
    return merged, elapsed


def queue_pool(connect: Callable[[], Any]) -> Callable[[], AbstractContextManager[Any]]:
    """The simplest pool: ``POOL`` connections in a queue."""
    free: queue.Queue[Any] = queue.Queue()
    for _ in range(POOL):
        free.put(connect())

    @contextmanager
    def borrow() -> Iterator[Any]:
        conn = free.get()
        try:
            yield conn
        finally:
            free.put(conn)

    return borrow


def sql_cases(kind: str, url: str, table: str) -> dict[str, tuple[Any, Any, Any]]:
    db_type = DatabaseType.POSTGRES if kind == "postgres" else DatabaseType.MYSQL
    db = DatabaseManager()
    db.create_pool(db_type, PoolConfig(url=url, min_size=POOL, max_size=POOL, acquire_timeout=5))
    db.execute(f"DROP TABLE IF EXISTS {table}")
    db.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(40))")
    db.insert_many(table, [{"id": i, "name": f"n{i}"} for i in range(1, ROWS + 1)])
    select = f"SELECT id, name FROM {table} WHERE id = :id"
    insert = f"INSERT INTO {table} VALUES (:id, 'w')"
    ours = (
        lambda: db.connection(db_type),
        lambda conn, i: conn.fetch_one(select, {"id": i}),
        lambda conn, i: conn.execute(insert, {"id": i}),
    )
    if kind == "postgres":
        raw_borrow = queue_pool(lambda: psycopg.connect(url, autocommit=True))
        raw_select = f"SELECT id, name FROM {table} WHERE id = %s"
        raw_insert = f"INSERT INTO {table} VALUES (%s, 'w')"
        raw = (
            raw_borrow,
            lambda conn, i: conn.execute(raw_select, (i,)).fetchone(),
            lambda conn, i: conn.execute(raw_insert, (i,)),
        )
    else:
        parts = url.split("://", 1)[1]
        host = parts.split("@")[-1].split("/")[0].split(":")[0]
        raw_borrow = queue_pool(
            lambda: pymysql.connect(host=host, user="root", database="test", autocommit=True)
        )

        def my_read(conn: Any, i: int) -> Any:
            with conn.cursor() as cur:
                cur.execute(f"SELECT id, name FROM {table} WHERE id = %s", (i,))
                return cur.fetchone()

        def my_write(conn: Any, i: int) -> Any:
            with conn.cursor() as cur:
                return cur.execute(f"INSERT INTO {table} VALUES (%s, 'w')", (i,))

        raw = (raw_borrow, my_read, my_write)
    cleanup.append(lambda: (db.execute(f"DROP TABLE {table}"), db.close_all()))
    return {"dbsystem": ours, "raw driver": raw}


def redis_cases(url: str, prefix: str) -> dict[str, tuple[Any, Any, Any]]:
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, PoolConfig(url=url, min_size=POOL, max_size=POOL))
    with db.connection(DatabaseType.REDIS) as conn:
        conn.pipeline([("SET", f"{prefix}{i}", f"n{i}") for i in range(1, ROWS + 1)])
    ours = (
        lambda: db.connection(DatabaseType.REDIS),
        lambda conn, i: conn.execute("GET", f"{prefix}{i}"),
        lambda conn, i: conn.execute("SET", f"{prefix}w{i}", "w"),
    )
    raw_pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=POOL, decode_responses=True
    )
    client = redis.Redis(connection_pool=raw_pool)

    @contextmanager
    def raw_borrow() -> Iterator[Any]:
        yield client

    raw = (
        raw_borrow,
        lambda conn, i: conn.get(f"{prefix}{i}"),
        lambda conn, i: conn.set(f"{prefix}w{i}", "w"),
    )

    def clean() -> None:
        with db.connection(DatabaseType.REDIS) as conn:
            keys = list(conn.scan(match=f"{prefix}*"))
            for start in range(0, len(keys), 500):
                conn.execute("DEL", *keys[start : start + 500])
        db.close_all()
        raw_pool.disconnect()

    cleanup.append(clean)
    return {"dbsystem": ours, "raw driver": raw}


cleanup: list[Callable[[], Any]] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writes", type=float, default=0.1)
    parser.add_argument("--backends", default="postgres,mysql,redis")
    parser.add_argument(
        "--sweep",
        default="",
        help="pool sizes to compare instead (L3), e.g. 2,4,10,20: dbsystem only",
    )
    args = parser.parse_args()
    urls = {
        "postgres": os.environ.get(
            "DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test"
        ),
        "mysql": os.environ.get("DBSYSTEM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        "redis": os.environ.get("DBSYSTEM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    }
    tag = uuid.uuid4().hex[:6]
    if args.sweep:
        sweep(args, urls, tag)
        return
    print(
        f"{THREADS} threads, pool of {POOL}, {args.seconds:g} s each, "
        f"{args.writes:.0%} writes (PK reads otherwise)"
    )
    print(
        f"  {'backend':<9}{'harness':<12}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'p99 wait ms':>13}{'errors':>8}{'vs raw':>8}"
    )
    try:
        for kind in args.backends.split(","):
            if kind == "redis":
                cases = redis_cases(urls[kind], f"load:{tag}:")
            else:
                cases = sql_cases(kind, urls[kind], f"load_{tag}")
            figures: dict[str, float] = {}
            for harness, (borrow, read, write) in cases.items():
                result, elapsed = run_load(borrow, read, write, args.seconds, args.writes)
                rate = result.ops / elapsed
                figures[harness] = rate
                share = f"{figures['dbsystem'] / rate:.0%}" if harness == "raw driver" else ""
                print(
                    f"  {kind:<9}{harness:<12}{rate:9.0f}"
                    f"{statistics.median(result.latencies) * 1000:9.2f}"
                    f"{_p(result.latencies, 0.99) * 1000:9.2f}"
                    f"{_p(result.waits, 0.99) * 1000:13.2f}"
                    f"{result.errors:8d}{share:>8}"
                    + (f"  ({', '.join(sorted(result.error_types))})" if result.errors else "")
                )
    finally:
        for clean in cleanup:
            clean()
    print("  (vs raw, on the raw driver's line: dbsystem's throughput as a share of it)")


def sweep(args: argparse.Namespace, urls: dict[str, str], tag: str) -> None:
    """L3: the same load through pools of several sizes (dbsystem only)."""
    global POOL
    print(f"{THREADS} threads, {args.seconds:g} s per size, {args.writes:.0%} writes")
    print(f"  {'backend':<9}{'pool':>5}{'ops/s':>9}{'p99 ms':>9}{'p99 wait ms':>13}{'errors':>8}")
    for kind in args.backends.split(","):
        for size in (int(n) for n in args.sweep.split(",")):
            POOL = size
            try:
                if kind == "redis":
                    cases = redis_cases(urls[kind], f"load:{tag}:{size}:")
                else:
                    cases = sql_cases(kind, urls[kind], f"load_{tag}_{size}")
                borrow, read, write = cases["dbsystem"]
                result, elapsed = run_load(borrow, read, write, args.seconds, args.writes)
                print(
                    f"  {kind:<9}{size:>5}{result.ops / elapsed:9.0f}"
                    f"{_p(result.latencies, 0.99) * 1000:9.2f}"
                    f"{_p(result.waits, 0.99) * 1000:13.2f}{result.errors:8d}"
                )
            finally:
                while cleanup:
                    cleanup.pop()()


if __name__ == "__main__":
    main()
