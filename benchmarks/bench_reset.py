"""The pool's reset on return (issue 19): what a lease costs when it changed its session,
and that a lease which changed nothing pays no reset.

For each server, on one connection of a pool of one (median of several rounds):

* ``plain lease``: ``with db.connection() as conn: conn.fetch_one(PK select)``;
* ``changed lease``: the same, plus one ``SET`` (Redis: ``SELECT``) that marks the session,
  so the return resets it;
* ``reset``: the difference minus the cost of the ``SET`` itself, measured on a lease
  that runs the ``SET`` twice (the second costs its round trip, not another reset);
* ``note``: what classifying a statement costs on the plain path (a set lookup).

Run: ``python benchmarks/bench_reset.py`` (the servers from ``DBSYSTEM_TEST_POSTGRES_URL``,
``DBSYSTEM_TEST_MYSQL_URL``, ``DBSYSTEM_TEST_REDIS_URL``; a missing one is skipped;
``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.backends._session import changes_session

ROUNDS = 7


def _per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def _median(fn: Callable[[], object], n: int) -> float:
    fn()  # warm
    return statistics.median(_per_call(fn, n) for _ in range(ROUNDS))


def _sql(db_type: DatabaseType, url: str, change: str, n: int) -> dict[str, float]:
    db = DatabaseManager()
    db.create_pool(db_type, PoolConfig(url=url, min_size=1, max_size=1))
    try:
        db.execute("DROP TABLE IF EXISTS bench_reset")
        db.execute("CREATE TABLE bench_reset (id INTEGER PRIMARY KEY, v INTEGER)")
        db.execute("INSERT INTO bench_reset (id, v) VALUES (1, 1)")
        pk = "SELECT id, v FROM bench_reset WHERE id = :id"

        def plain() -> None:
            with db.connection(db_type) as conn:
                conn.fetch_one(pk, {"id": 1})

        def changed() -> None:
            with db.connection(db_type) as conn:
                conn.fetch_one(pk, {"id": 1})
                conn.execute(change)

        def changed_twice() -> None:
            with db.connection(db_type) as conn:
                conn.fetch_one(pk, {"id": 1})
                conn.execute(change)
                conn.execute(change)

        figures = {"plain lease": _median(plain, n), "changed lease": _median(changed, n)}
        twice = _median(changed_twice, n)
        statement = twice - figures["changed lease"]
        figures["reset"] = figures["changed lease"] - figures["plain lease"] - statement
        db.execute("DROP TABLE bench_reset")
        return figures
    finally:
        db.close_all()


def _redis(url: str, n: int) -> dict[str, float]:
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, PoolConfig(url=url, min_size=1, max_size=1))
    database = url.rsplit("/", 1)[-1] or "0"
    try:
        redis: Any = db.connection(DatabaseType.REDIS)
        plain = _median(lambda: redis.execute("GET", "bench:reset"), n)
        changed = _median(lambda: redis.execute("SELECT", database), n)
        unmarked = _median(lambda: redis.execute("ECHO", database), n)  # same size, no reset
        return {"plain command": plain, "SELECT (resets)": changed, "reset": changed - unmarked}
    finally:
        db.close_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = _sql(
            DatabaseType.SQLITE, f"sqlite:///{tmp}/bench.db", "PRAGMA cache_size = -2000", n
        )
    postgres = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL")
    if postgres:
        results["postgresql"] = _sql(DatabaseType.POSTGRES, postgres, "SET work_mem = '4MB'", n)
    mysql = os.environ.get("DBSYSTEM_TEST_MYSQL_URL")
    if mysql:
        results["mariadb"] = _sql(DatabaseType.MYSQL, mysql, "SET @bench = 1", n)
    redis = os.environ.get("DBSYSTEM_TEST_REDIS_URL")
    if redis:
        results["redis"] = _redis(redis, n)
    text = "SELECT id, v FROM bench_reset WHERE id = :id"
    changes_session(text)
    note = _median(lambda: changes_session(text), n * 50)
    for server, figures in results.items():
        shown = ", ".join(f"{name} {value:.1f} us" for name, value in figures.items())
        print(f"{server:11s} {shown}")
    print(f"note (classify a known plain text): {note * 1000:.0f} ns")


if __name__ == "__main__":
    main()
