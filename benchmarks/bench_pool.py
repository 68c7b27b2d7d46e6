"""Pool acquire + release: dbsystem against psycopg_pool, SQLAlchemy's QueuePool and a bare floor.

All three real pools hold the same kind of connection (psycopg 3, autocommit, to the local
PostgreSQL), so the figures compare the pools and nothing else. dbsystem's pool runs with
every feature on: statistics, leak tracking (``leak_threshold``), health-check bookkeeping,
lifetime and idle timeouts. The floor is a bare ``deque`` + ``threading.Condition``.

Two measurements, interleaved over several rounds (the median is reported):

* single thread: ``with pool.acquire():`` round trips per second, and microseconds each;
* contention: 8 threads sharing 4 connections, total round trips per second.

Run: ``python benchmarks/bench_pool.py`` (``--url`` or ``DBSYSTEM_TEST_POSTGRES_URL`` to
point at another server; ``--quick`` for a short run; ``--json PATH`` also writes every timed
round as JSON, see ``_timing.py`` and ``compare_revisions.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from _timing import Lap, Recorder, Stopwatch, add_json_argument  # benchmarks/_timing.py
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool as PsycopgPool
from sqlalchemy.pool import QueuePool

from dbsystem import ConnectionPool

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"
POOL_SIZE = 4
THREADS = 8


class PsycopgConnector:
    """Lets dbsystem's generic pool hold raw psycopg connections, as psycopg_pool does."""

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def check(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT 1")

    def reset(self, conn: psycopg.Connection[Any]) -> None:
        status = conn.pgconn.transaction_status
        if status != TransactionStatus.IDLE:
            if status == TransactionStatus.UNKNOWN:
                raise psycopg.OperationalError("connection lost")
            conn.rollback()

    def close(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()


class FloorPool:
    """The least a thread-safe pool can do: a deque guarded by a Condition, no bookkeeping."""

    def __init__(self, conns: list[Any]) -> None:
        self.items = deque(conns)
        self.cond = threading.Condition(threading.Lock())

    def acquire(self) -> _FloorLease:
        with self.cond:
            while not self.items:
                self.cond.wait()
            return _FloorLease(self, self.items.pop())


class _FloorLease:
    __slots__ = ("conn", "pool")

    def __init__(self, pool: FloorPool, conn: Any) -> None:
        self.pool = pool
        self.conn = conn

    def __enter__(self) -> Any:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        pool = self.pool
        with pool.cond:
            pool.items.append(self.conn)
            pool.cond.notify()


def make_pools(url: str) -> dict[str, tuple[Callable[[], Any], Callable[[], None]]]:
    """name -> (a function returning a context manager for one borrow, closer)."""
    ours: ConnectionPool[Any] = ConnectionPool(
        PsycopgConnector(url),
        name="bench",
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        acquire_timeout=30.0,
        idle_timeout=600.0,
        max_lifetime=3600.0,
        health_check_interval=1.0,
        leak_threshold=60.0,
    )
    theirs = PsycopgPool(
        url, min_size=POOL_SIZE, max_size=POOL_SIZE, kwargs={"autocommit": True}, open=True
    )
    theirs.wait()
    qp = QueuePool(
        lambda: psycopg.connect(url, autocommit=True), pool_size=POOL_SIZE, max_overflow=0
    )
    floor = FloorPool([psycopg.connect(url, autocommit=True) for _ in range(POOL_SIZE)])

    @contextmanager
    def sqlalchemy_borrow() -> Iterator[Any]:
        conn = qp.connect()
        try:
            yield conn
        finally:
            conn.close()

    return {
        "dbsystem": (ours.acquire, ours.close),
        "psycopg_pool": (theirs.connection, theirs.close),
        "sqlalchemy": (sqlalchemy_borrow, qp.dispose),
        "floor": (floor.acquire, lambda: None),
    }


def single(borrow: Callable[[], Any], n: int) -> Lap:
    """Acquire + release ``n`` times on one thread."""
    sw = Stopwatch()
    for _ in range(n):
        with borrow():
            pass
    return sw.stop()


def contended(borrow: Callable[[], Any], n_per_thread: int) -> Lap:
    """``n_per_thread`` acquire + release round trips in each of THREADS threads sharing
    POOL_SIZE connections (the clock starts when they are all ready)."""
    barrier = threading.Barrier(THREADS + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(n_per_thread):
            with borrow():
                pass

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    sw = Stopwatch()
    for t in threads:
        t.join()
    return sw.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    rec = Recorder("bench_pool", args.json)
    n_single, n_threaded, rounds = (
        (20_000, 5_000, 5) if args.quick else (100_000, 20_000, args.rounds)
    )

    pools = make_pools(args.url)
    names = list(pools)
    single_us: dict[str, list[float]] = {name: [] for name in names}
    ops: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        single(pools[name][0], 2_000)
    for _ in range(rounds):  # interleaved, so machine noise hits every pool alike
        for name in names:
            lap = single(pools[name][0], n_single)
            rec.add("1 thread", name, n_single, lap)
            single_us[name].append(lap.wall / n_single * 1e6)
        for name in names:
            lap = contended(pools[name][0], n_threaded)
            rec.add(f"{THREADS} threads / {POOL_SIZE} conns", name, THREADS * n_threaded, lap)
            ops[name].append(THREADS * n_threaded / lap.wall)
    for _, close in pools.values():
        close()

    us = {name: statistics.median(v) for name, v in single_us.items()}
    tput = {name: statistics.median(v) for name, v in ops.items()}
    print(f"pool acquire+release, psycopg connections, median of {rounds} interleaved rounds")
    print(
        f"{'pool':<14}{'1 thread us':>12}{'vs dbsystem':>13}{'8thr/4conn ops/s':>18}"
        f"{'dbsystem is':>13}"
    )
    for name in names:
        print(
            f"{name:<14}{us[name]:>12.2f}{us[name] / us['dbsystem']:>12.2f}x"
            f"{tput[name]:>18,.0f}{tput['dbsystem'] / tput[name]:>12.2f}x"
        )
    print()
    print("ratios (targets from issue 2):")
    print(
        f"  dbsystem / psycopg_pool, 1 thread:   {us['dbsystem'] / us['psycopg_pool']:.2f}"
        "  (target <= 0.33)"
    )
    print(
        f"  dbsystem / floor, 1 thread:          {us['dbsystem'] / us['floor']:.2f}"
        "  (target <= 2.0)"
    )
    print(f"  dbsystem / sqlalchemy, 1 thread:     {us['dbsystem'] / us['sqlalchemy']:.2f}")
    print(
        f"  throughput dbsystem / psycopg_pool:  {tput['dbsystem'] / tput['psycopg_pool']:.2f}"
        "  (target >= 1.3)"
    )
    rec.write()


if __name__ == "__main__":
    main()
