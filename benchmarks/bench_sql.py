"""dbsystem against the raw drivers and SQLAlchemy Core on SQLite, PostgreSQL and MySQL.

Three measurements per backend, each returning dict rows, interleaved over several rounds
(median reported):

* ``pk select``: one row by primary key. dbsystem borrows a pooled connection per call
  (``db.fetch_one``); SQLAlchemy does ``engine.connect()`` per call (AUTOCOMMIT, so neither
  adds a round trip); the raw driver runs on a connection it holds (psycopg with
  ``dict_row``, pymysql ``DictCursor``, sqlite3 building the dict), which is the floor.
* ``fetch 1000``: 1,000 rows into dicts on a held connection.
* ``insert 10000``: ``insert_many`` of 10,000 rows against the raw driver's
  ``executemany`` in one transaction (psycopg 3 pipelines it; pymysql rewrites it into
  multi-row INSERTs) and SQLAlchemy's ``execute(insert, rows)``.

Run: ``python benchmarks/bench_sql.py`` (PostgreSQL and MySQL from
``DBSYSTEM_TEST_POSTGRES_URL`` / ``DBSYSTEM_TEST_MYSQL_URL``, defaulting to the local
servers; ``--backends sqlite`` to skip the servers; ``--quick`` for a short run; ``--json PATH``
also writes every timed round as JSON, see ``_timing.py`` and ``compare_revisions.py``).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
from collections.abc import Callable
from typing import Any

import psycopg
import pymysql
from _timing import Recorder, Stopwatch, add_json_argument  # benchmarks/_timing.py
from psycopg.rows import dict_row
from sqlalchemy import create_engine, text
from sqlalchemy.pool import StaticPool

from dbsystem import DatabaseManager, DatabaseType, DatabaseURL, PoolConfig

ROWS = 1000
BULK = 10_000
PK_SQL = "SELECT id, name, email, age FROM bench_users WHERE id = :id"
ALL_SQL = "SELECT id, name, email, age FROM bench_users"
CREATE = (
    "CREATE TABLE bench_users (id INTEGER PRIMARY KEY, name VARCHAR(50), "
    "email VARCHAR(100), age INTEGER)"
)
CREATE_BULK = "CREATE TABLE bench_bulk (id INTEGER PRIMARY KEY, name VARCHAR(50), score INTEGER)"


def rows(n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"user{i}", "email": f"user{i}@example.com", "age": 20 + i % 50}
        for i in range(1, n + 1)
    ]


def bulk_rows() -> list[dict[str, Any]]:
    return [{"id": i, "name": f"n{i}", "score": i % 100} for i in range(1, BULK + 1)]


class Side:
    """One library on one backend: pk(n), fetch(n), insert() and a cleanup between inserts."""

    pk: Callable[[int], None]
    fetch: Callable[[int], None]
    insert: Callable[[], None]
    clear: Callable[[], None]


def raw_side(kind: str, url: str) -> Side:
    side = Side()
    if kind == "sqlite":
        conn: Any = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.execute(CREATE)
        conn.execute(CREATE_BULK)
        conn.executemany("INSERT INTO bench_users VALUES (:id, :name, :email, :age)", rows(ROWS))

        def pk(n: int) -> None:
            for i in range(n):
                cur = conn.execute(PK_SQL, {"id": i % ROWS + 1})
                dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))

        def fetch(n: int) -> None:
            for _ in range(n):
                cur = conn.execute(ALL_SQL)
                names = [d[0] for d in cur.description]
                [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        def insert() -> None:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO bench_bulk (id, name, score) VALUES (:id, :name, :score)",
                bulk_rows(),
            )
            conn.execute("COMMIT")

        side.clear = lambda: conn.execute("DELETE FROM bench_bulk")
    elif kind == "postgres":
        conn = psycopg.connect(
            url.replace("postgresql://", "postgresql://", 1), autocommit=True, row_factory=dict_row
        )
        pk_q = "SELECT id, name, email, age FROM bench_users WHERE id = %(id)s"

        def pk(n: int) -> None:
            cur = conn.cursor()
            for i in range(n):
                cur.execute(pk_q, {"id": i % ROWS + 1})
                cur.fetchone()

        def fetch(n: int) -> None:
            cur = conn.cursor()
            for _ in range(n):
                cur.execute(ALL_SQL)
                cur.fetchall()

        def insert() -> None:
            with conn.transaction():
                conn.cursor().executemany(
                    "INSERT INTO bench_bulk (id, name, score) VALUES (%(id)s, %(name)s, %(score)s)",
                    bulk_rows(),
                )

        side.clear = lambda: conn.execute("TRUNCATE bench_bulk")
    else:
        parts = _mysql_kwargs(url)
        conn = pymysql.connect(**parts, autocommit=True, cursorclass=pymysql.cursors.DictCursor)
        pk_q = "SELECT id, name, email, age FROM bench_users WHERE id = %(id)s"

        def pk(n: int) -> None:
            cur = conn.cursor()
            for i in range(n):
                cur.execute(pk_q, {"id": i % ROWS + 1})
                cur.fetchone()

        def fetch(n: int) -> None:
            cur = conn.cursor()
            for _ in range(n):
                cur.execute(ALL_SQL)
                cur.fetchall()

        def insert() -> None:
            cur = conn.cursor()
            cur.execute("START TRANSACTION")
            cur.executemany(
                "INSERT INTO bench_bulk (id, name, score) VALUES (%(id)s, %(name)s, %(score)s)",
                bulk_rows(),
            )
            cur.execute("COMMIT")

        side.clear = lambda: conn.cursor().execute("TRUNCATE bench_bulk")
    side.pk, side.fetch, side.insert = pk, fetch, insert
    return side


def _mysql_kwargs(url: str) -> dict[str, Any]:
    parsed = DatabaseURL(url)
    return {
        "host": parsed.host,
        "port": parsed.port or 3306,
        "user": parsed.username or "root",
        "password": parsed.password or "",
        "database": parsed.database,
    }


def dbsystem_side(kind: str, url: str) -> Side:
    db_type = {
        "sqlite": DatabaseType.SQLITE,
        "postgres": DatabaseType.POSTGRES,
        "mysql": DatabaseType.MYSQL,
    }[kind]
    db = DatabaseManager()
    db.create_pool(
        db_type, PoolConfig(url=url if kind != "sqlite" else "sqlite://", min_size=2, max_size=2)
    )
    if kind == "sqlite":
        db.execute(CREATE)
        db.execute(CREATE_BULK)
        db.insert_many("bench_users", rows(ROWS))
    held = db.connection()
    side = Side()
    fetch_one = db.fetch_one

    def pk(n: int) -> None:
        for i in range(n):
            fetch_one(PK_SQL, {"id": i % ROWS + 1})

    def fetch(n: int) -> None:
        for _ in range(n):
            held.fetch_all(ALL_SQL)

    def insert() -> None:
        held.insert_many("bench_bulk", bulk_rows())

    side.pk, side.fetch, side.insert = pk, fetch, insert
    side.clear = lambda: held.execute(
        "DELETE FROM bench_bulk" if kind == "sqlite" else "TRUNCATE bench_bulk"
    )
    return side


def sqlalchemy_side(kind: str, url: str) -> Side:
    if kind == "sqlite":
        engine = create_engine("sqlite://", poolclass=StaticPool)
        with engine.begin() as c:
            c.execute(text(CREATE))
            c.execute(text(CREATE_BULK))
            c.execute(text("INSERT INTO bench_users VALUES (:id, :name, :email, :age)"), rows(ROWS))
    else:
        dialect = "postgresql+psycopg" if kind == "postgres" else "mysql+pymysql"
        engine = create_engine(
            dialect + url[url.index("://") :], isolation_level="AUTOCOMMIT", pool_size=2
        )
    pk_t, all_t = text(PK_SQL), text(ALL_SQL)
    insert_t = text("INSERT INTO bench_bulk (id, name, score) VALUES (:id, :name, :score)")
    held = engine.connect()
    side = Side()

    def pk(n: int) -> None:
        for i in range(n):
            with engine.connect() as c:
                dict(c.execute(pk_t, {"id": i % ROWS + 1}).mappings().one())

    def fetch(n: int) -> None:
        for _ in range(n):
            [dict(r) for r in held.execute(all_t).mappings()]

    # Inserts run in one transaction, like the other two: an engine without AUTOCOMMIT.
    tx_engine = (
        engine
        if kind == "sqlite"
        else create_engine(engine.url.render_as_string(hide_password=False), pool_size=1)
    )

    def insert() -> None:
        with tx_engine.begin() as c:
            c.execute(insert_t, bulk_rows())

    def clear() -> None:
        if kind == "sqlite":  # its own in-memory database; the servers' table is shared
            with engine.begin() as c:
                c.execute(text("DELETE FROM bench_bulk"))

    side.pk, side.fetch, side.insert, side.clear = pk, fetch, insert, clear
    return side


def prepare_server(kind: str, url: str) -> None:
    db = DatabaseManager()
    db_type = DatabaseType.POSTGRES if kind == "postgres" else DatabaseType.MYSQL
    db.create_pool(db_type, url)
    db.execute("DROP TABLE IF EXISTS bench_users")
    db.execute("DROP TABLE IF EXISTS bench_bulk")
    db.execute(CREATE)
    db.execute(CREATE_BULK)
    db.insert_many("bench_users", rows(ROWS))
    db.close_all()


def measure(
    kind: str, url: str, quick: bool, rec: Recorder
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    if kind != "sqlite":
        prepare_server(kind, url)
    sides = {
        "raw": raw_side(kind, url),
        "dbsystem": dbsystem_side(kind, url),
        "sqlalchemy": sqlalchemy_side(kind, url),
    }
    n_pk = (3000 if kind == "sqlite" else 300) if quick else (20000 if kind == "sqlite" else 2000)
    n_fetch = 10 if quick else 50
    rounds = 3 if quick else 5
    cases = ("pk select", "fetch 1000", "insert 10000")
    wall: dict[str, dict[str, list[float]]] = {c: {name: [] for name in sides} for c in cases}
    cpu: dict[str, dict[str, list[float]]] = {c: {name: [] for name in sides} for c in cases}

    def timed(case: str, name: str, call: Callable[[], None], per: int) -> None:
        sw = Stopwatch()
        call()
        lap = sw.stop()
        rec.add(f"{kind} {case}", name, per, lap)
        wall[case][name].append(lap.wall / per * 1e6)
        # The client's own CPU time: immune to how long the server and the loopback take.
        cpu[case][name].append(lap.user / per * 1e6)

    for side in sides.values():  # warm-up
        side.pk(50)
        side.fetch(2)
    for _ in range(rounds):
        for name, side in sides.items():
            timed("pk select", name, lambda side=side: side.pk(n_pk), n_pk)
        for name, side in sides.items():
            timed("fetch 1000", name, lambda side=side: side.fetch(n_fetch), n_fetch)
        for name, side in sides.items():
            for clear_side in sides.values():
                clear_side.clear()
            timed("insert 10000", name, side.insert, 1)
    for clear_side in sides.values():
        clear_side.clear()

    def medians(data: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
        return {case: {n: statistics.median(v) for n, v in d.items()} for case, d in data.items()}

    return medians(wall), medians(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres,mysql")
    parser.add_argument("--quick", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    rec = Recorder("bench_sql", args.json)
    urls = {
        "sqlite": "sqlite://",
        "postgres": os.environ.get(
            "DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test"
        ),
        "mysql": os.environ.get("DBSYSTEM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
    }
    print("microseconds per call (insert: per 10,000 rows), median of interleaved rounds;")
    print("wall = elapsed time; cpu = this process's user CPU (the libraries' own cost)")
    header = (
        f"{'backend':<9}{'case':<14}{'':<5}{'raw':>10}{'dbsystem':>10}{'added':>9}"
        f"{'ratio':>7}{'sqlalchemy':>12}{'sa/ours':>9}"
    )
    print(header)
    for kind in args.backends.split(","):
        wall, cpu = measure(kind, urls[kind], args.quick, rec)
        for case in wall:
            for label, table in (("wall", wall), ("cpu", cpu)):
                raw, ours, sa = (table[case][n] for n in ("raw", "dbsystem", "sqlalchemy"))
                print(
                    f"{kind:<9}{case:<14}{label:<5}{raw:>10.1f}{ours:>10.1f}"
                    f"{ours - raw:>9.1f}{ours / raw:>6.2f}x{sa:>12.1f}{sa / ours:>8.2f}x"
                )
    rec.write()


if __name__ == "__main__":
    main()
