"""Query builder cost: dbsystem against SQLAlchemy Core, and end to end against the raw driver.

1. Building a typical select (the issue's department analytics query: 3 columns with
   aggregates, WHERE, GROUP BY, HAVING, ORDER BY, LIMIT), PostgreSQL dialect:
   * cold: construct and compile, nothing cached (dbsystem's shape cache cleared);
   * cached: construct, then look the compiled SQL up and bind the values (dbsystem: the
     shape cache; SQLAlchemy: the construct plus its cache key, which is what an Engine
     computes to find its compiled-statement cache entry);
   * build only: ``build()`` on a builder already constructed (shape seen before).
2. End to end on SQLite ``:memory:``: a primary-key select built with the builder and run
   through the pool, against sqlite3 directly and against dbsystem with raw SQL.

Run: ``python benchmarks/bench_builder.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.query import _compile, avg, count, select

PG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def ours(n: int) -> object:
    return (
        select("department", count().as_("employee_count"), avg("salary").as_("avg_salary"))
        .from_("users")
        .where("is_active", "=", True)
        .group_by("department")
        .having(count(), ">", n)
        .order_by("avg_salary", "desc")
        .limit(10)
    )


USERS = sa.table("users", sa.column("department"), sa.column("salary"), sa.column("is_active"))


def theirs(n: int) -> sa.Select:  # type: ignore[type-arg]
    return (
        sa.select(
            USERS.c.department,
            sa.func.count().label("employee_count"),
            sa.func.avg(USERS.c.salary).label("avg_salary"),
        )
        .where(USERS.c.is_active == True)  # noqa: E712 - SQLAlchemy builds SQL from ==
        .group_by(USERS.c.department)
        .having(sa.func.count() > n)
        .order_by(sa.desc("avg_salary"))
        .limit(10)
    )


def per_call(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (2_000, 3) if args.quick else (10_000, 7)

    prebuilt = ours(50)

    def ours_cold(i: int) -> object:
        _compile._cache.clear()
        return ours(i).build(dialect="postgresql")

    def ours_cached(i: int) -> object:
        return ours(i).build(dialect="postgresql")

    def ours_build_only(i: int) -> object:
        prebuilt._values_cache = None  # values are collected again, as for a new builder
        return prebuilt.build(dialect="postgresql")

    def sa_cold(i: int) -> object:
        return theirs(i).compile(dialect=PG)

    def sa_cached(i: int) -> object:
        return theirs(i)._generate_cache_key()

    build_cases = {
        "dbsystem cold": ours_cold,
        "sqlalchemy cold": sa_cold,
        "dbsystem cached": ours_cached,
        "sqlalchemy cached": sa_cached,
        "dbsystem build only": ours_build_only,
    }

    # End to end on SQLite :memory:.
    raw = sqlite3.connect(":memory:", isolation_level=None)
    raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
    raw.executemany(
        "INSERT INTO users VALUES (?, ?, ?)", [(i, f"u{i}", f"u{i}@x") for i in range(1, 1001)]
    )
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, "sqlite://:memory:")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
    db.insert_many(
        "users", [{"id": i, "name": f"u{i}", "email": f"u{i}@x"} for i in range(1, 1001)]
    )
    factory = db.query(DatabaseType.SQLITE)
    pk = "SELECT id, name, email FROM users WHERE id = :id"

    def raw_pk(i: int) -> object:
        cur = raw.execute(pk, {"id": i % 1000 + 1})
        return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))

    def ours_raw_sql(i: int) -> object:
        return db.fetch_one(pk, {"id": i % 1000 + 1})

    def ours_builder(i: int) -> object:
        return (
            factory.select("id", "name", "email")
            .from_("users")
            .where("id", "=", i % 1000 + 1)
            .first()
        )

    e2e_cases = {
        "sqlite3": raw_pk,
        "dbsystem raw SQL": ours_raw_sql,
        "dbsystem builder": ours_builder,
    }

    results: dict[str, list[float]] = {k: [] for k in [*build_cases, *e2e_cases]}
    for fn in [*build_cases.values(), *e2e_cases.values()]:
        per_call(fn, 200)  # warm-up
    for _ in range(rounds):
        for name, fn in [*build_cases.items(), *e2e_cases.items()]:
            results[name].append(per_call(fn, n if "cold" not in name else n // 5))
    med = {k: statistics.median(v) for k, v in results.items()}

    print(
        f"building the analytics select (PostgreSQL dialect), us per query, median of "
        f"{rounds} rounds"
    )
    for name in build_cases:
        print(f"  {name:<22}{med[name]:>9.2f}")
    print(
        f"  cached: dbsystem / SQLAlchemy = {med['dbsystem cached'] / med['sqlalchemy cached']:.2f}"
        f"; cold: {med['dbsystem cold'] / med['sqlalchemy cold']:.2f}"
    )
    print("primary-key select end to end on SQLite :memory:, us per call")
    base = med["sqlite3"]
    for name in e2e_cases:
        print(f"  {name:<22}{med[name]:>9.2f}   +{med[name] - base:.2f} us over sqlite3")
    db.close_all()


if __name__ == "__main__":
    main()
