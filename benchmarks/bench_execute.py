"""Execute and row conversion on SQLite ``:memory:``: dbsystem against sqlite3 and SQLAlchemy Core.

In-memory SQLite has no network, so the differences are the libraries' own costs. Each
case returns dict rows, the way an application would use them:

* ``pk select``: one row by primary key, borrowing a connection from the pool for each call
  (dbsystem ``db.fetch_one``; SQLAlchemy ``engine.connect()`` + ``execute``; the raw
  driver on a connection it already holds, which is the floor);
* ``pk select, held``: the same on a connection already borrowed;
* ``pk select, 1 hook``: as ``held`` with a no-op hook installed (the cost of the
  interception point once something uses it);
* ``fetch 1000``: 1,000 rows into dicts on a held connection.

Runs are interleaved over several rounds and the median is reported, in microseconds per
call, with the microseconds added over the raw driver and the ratio.

Run: ``python benchmarks/bench_execute.py`` (``--quick`` for a short run; ``--json PATH``
also writes every timed round as JSON, see ``_timing.py`` and ``compare_revisions.py``).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
from collections.abc import Callable
from typing import Any

from _timing import Recorder, add_json_argument  # benchmarks/_timing.py
from sqlalchemy import create_engine, text
from sqlalchemy.pool import StaticPool

from dbsystem import DatabaseManager, DatabaseType, ExecutionHook, PoolConfig

PK_SQL = "SELECT id, name, email, age FROM users WHERE id = :id"
ALL_SQL = "SELECT id, name, email, age FROM users"
ROWS = 1000


def _schema(execute: Callable[[str], Any]) -> None:
    execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, age INTEGER)")


def _rows() -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"user{i}", "email": f"user{i}@example.com", "age": 20 + i % 50}
        for i in range(1, ROWS + 1)
    ]


INSERT_SQL = "INSERT INTO users VALUES (:id, :name, :email, :age)"


def setup_raw() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    _schema(conn.execute)
    conn.executemany(INSERT_SQL, _rows())
    return conn


def raw_pk(conn: sqlite3.Connection, n: int) -> None:
    for i in range(n):
        cur = conn.execute(PK_SQL, {"id": i % ROWS + 1})
        row = cur.fetchone()
        dict(zip([d[0] for d in cur.description], row, strict=True))


def raw_fetch(conn: sqlite3.Connection, n: int) -> None:
    for _ in range(n):
        cur = conn.execute(ALL_SQL)
        rows = cur.fetchall()
        names = [d[0] for d in cur.description]
        [dict(zip(names, r, strict=True)) for r in rows]


class NoOpHook(ExecutionHook):
    """Does nothing: what remains is the cost of the hook path itself."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    rec = Recorder("bench_execute", args.json)
    n_pk, n_fetch, rounds = (5_000, 50, 3) if args.quick else (30_000, 300, 7)

    raw = setup_raw()

    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite://:memory:", min_size=2, max_size=2))
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, age INTEGER)")
    db.executemany(INSERT_SQL, _rows())
    held = db.connection()

    hooked_db = DatabaseManager()
    hooked_db.create_pool(DatabaseType.SQLITE, "sqlite://:memory:")
    hooked_db.execute(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, age INTEGER)"
    )
    hooked_db.executemany(INSERT_SQL, _rows())
    hooked_db.add_hook(NoOpHook())
    hooked = hooked_db.connection()

    engine = create_engine("sqlite://", poolclass=StaticPool)
    with engine.begin() as c:
        c.execute(
            text("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, age INTEGER)")
        )
        c.execute(text(INSERT_SQL), _rows())
    pk_text, all_text = text(PK_SQL), text(ALL_SQL)
    sa_held = engine.connect()

    def ours_pk(n: int) -> None:
        fetch_one = db.fetch_one
        for i in range(n):
            fetch_one(PK_SQL, {"id": i % ROWS + 1})

    def ours_pk_held(n: int) -> None:
        for i in range(n):
            held.fetch_one(PK_SQL, {"id": i % ROWS + 1})

    def ours_pk_hooked(n: int) -> None:
        for i in range(n):
            hooked.fetch_one(PK_SQL, {"id": i % ROWS + 1})

    def ours_fetch(n: int) -> None:
        for _ in range(n):
            held.fetch_all(ALL_SQL)

    def sa_pk(n: int) -> None:
        for i in range(n):
            with engine.connect() as c:
                dict(c.execute(pk_text, {"id": i % ROWS + 1}).mappings().one())

    def sa_pk_held(n: int) -> None:
        for i in range(n):
            dict(sa_held.execute(pk_text, {"id": i % ROWS + 1}).mappings().one())

    def sa_fetch(n: int) -> None:
        for _ in range(n):
            [dict(r) for r in sa_held.execute(all_text).mappings()]

    cases: dict[str, dict[str, tuple[Callable[[int], None], int]]] = {
        "pk select": {
            "sqlite3": (lambda n: raw_pk(raw, n), n_pk),
            "dbsystem": (ours_pk, n_pk),
            "sqlalchemy": (sa_pk, n_pk),
        },
        "pk select, held": {
            "sqlite3": (lambda n: raw_pk(raw, n), n_pk),
            "dbsystem": (ours_pk_held, n_pk),
            "sqlalchemy": (sa_pk_held, n_pk),
        },
        "pk select, 1 hook": {
            "sqlite3": (lambda n: raw_pk(raw, n), n_pk),
            "dbsystem": (ours_pk_hooked, n_pk),
        },
        "fetch 1000": {
            "sqlite3": (lambda n: raw_fetch(raw, n), n_fetch),
            "dbsystem": (ours_fetch, n_fetch),
            "sqlalchemy": (sa_fetch, n_fetch),
        },
    }
    results: dict[str, dict[str, list[float]]] = {
        case: {name: [] for name in impls} for case, impls in cases.items()
    }
    for case in cases.values():  # warm-up
        for fn, n in case.values():
            fn(max(1, n // 20))
    for _ in range(rounds):
        for case, impls in cases.items():
            for name, (fn, n) in impls.items():
                lap = rec.timed(case, name, n, lambda fn=fn, n=n: fn(n))
                results[case][name].append(lap.wall / n * 1e6)

    print(f"SQLite :memory:, dict rows, median of {rounds} interleaved rounds (us per call)")
    print(f"{'case':<20}{'library':<12}{'us/call':>10}{'added us':>10}{'vs raw':>8}")
    for case, impls in results.items():
        base = statistics.median(impls["sqlite3"])
        for name, samples in impls.items():
            value = statistics.median(samples)
            print(f"{case:<20}{name:<12}{value:>10.2f}{value - base:>10.2f}{value / base:>7.2f}x")
    held.release()
    hooked.release()
    sa_held.close()
    db.close_all()
    hooked_db.close_all()
    rec.write()


if __name__ == "__main__":
    main()
