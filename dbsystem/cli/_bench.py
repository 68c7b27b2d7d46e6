"""``dbsystem bench``: the hot paths on one database, against the raw driver and SQLAlchemy.

A quick look at what dbsystem costs on your own server and network; the scripts in the
repository's ``benchmarks/`` are the thorough versions (more cases, rounds, threads). Each
case runs its contenders in turns for several rounds and keeps the median per call:

- ``acquire+release``: a connection from the pool and back (SQLAlchemy's QueuePool);
- ``build``: a parameterised SELECT compiled for the dialect (SQLAlchemy Core);
- ``execute``: a one-row SELECT with a bound parameter, as a dict (raw driver cursor);
- ``fetch 1000``: 1,000 generated rows into dicts (raw driver cursor).

Redis: ``GET`` and a 10-command pipeline against redis-py on its own pool.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from dbsystem._facade import DatabaseManager
from dbsystem.errors import NotSupportedError

__all__ = ["Case", "run_bench"]

Case = tuple[str, dict[str, Callable[[int], Any]]]

_ROWS_SQL = {  # 1,000 generated rows, without a table
    "sqlite": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
        "SELECT x AS id, x * 2 AS twice FROM c"
    ),
    "postgresql": "SELECT x AS id, x * 2 AS twice FROM generate_series(1, 1000) AS x",
    "mysql": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
        "SELECT x AS id, x * 2 AS twice FROM c"
    ),
}
_SQLALCHEMY_SCHEME = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
}


def run_bench(manager: DatabaseManager, seconds: float) -> list[dict[str, Any]]:
    """Run every case for about ``seconds`` each; one result row per case and contender."""
    backend = manager.backend()
    kind = backend.kind
    if kind == "kv":
        cases, cleanup = _redis_cases(manager)
    elif kind == "sql" and backend.dialect in _ROWS_SQL:
        cases, cleanup = _sql_cases(manager, backend)
    else:
        raise NotSupportedError(f"dbsystem bench runs on SQL databases and Redis, not {kind}")
    try:
        return [row for case in cases for row in _measure(case, seconds)]
    finally:
        cleanup()


def _measure(case: Case, seconds: float, rounds: int = 5) -> list[dict[str, Any]]:
    name, contenders = case
    for fn in contenders.values():  # warm up: caches, connections, JIT-less but lazy imports
        for i in range(20):
            fn(i)
    calls = _calls_for(next(iter(contenders.values())), seconds / rounds / len(contenders))
    samples: dict[str, list[float]] = {who: [] for who in contenders}
    for _ in range(rounds):
        for who, fn in contenders.items():
            start = time.perf_counter()
            for i in range(calls):
                fn(i)
            samples[who].append((time.perf_counter() - start) / calls * 1e6)
    medians = {who: statistics.median(times) for who, times in samples.items()}
    ours = medians["dbsystem"]
    return [
        {
            "case": name,
            "contender": who,
            "us_per_call": round(us, 2),
            "time_ratio": round(ours / us, 2),  # dbsystem's time over this contender's
        }
        for who, us in medians.items()
    ]


def _calls_for(fn: Callable[[int], Any], budget: float) -> int:
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 0.05:
        fn(calls)
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    return max(10, int(budget / per_call))


def _sql_cases(manager: DatabaseManager, backend: Any) -> tuple[list[Case], Callable[[], None]]:
    import sqlalchemy as sa

    from dbsystem.query import col

    dialect = backend.dialect
    url = backend.url
    sa_url = url.replace(scheme=_SQLALCHEMY_SCHEME[dialect], options={}).render(hide_password=False)
    engine = sa.create_engine(sa_url, pool_size=2, max_overflow=0)  # one held, one cycled
    one_sql = "SELECT :n AS n"
    rows_sql = _ROWS_SQL[dialect]
    held = manager.connection()
    raw = held.driver_connection
    native = "SELECT ? AS n" if dialect == "sqlite" else "SELECT %s AS n"
    sa_conn = engine.connect()
    sa_one = sa.text(one_sql)
    sa_rows = sa.text(rows_sql)
    users = sa.table("users", sa.column("id"), sa.column("name"))
    sa_dialect = engine.dialect
    query = manager.query()

    def raw_one(i: int) -> Any:
        cursor = raw.cursor()
        cursor.execute(native, (i,))
        names = [d[0] for d in cursor.description]
        row = dict(zip(names, cursor.fetchone(), strict=True))
        cursor.close()
        return row

    def raw_rows(i: int) -> Any:
        cursor = raw.cursor()
        cursor.execute(rows_sql)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        cursor.close()
        return rows

    def ours_acquire(i: int) -> None:
        with manager.connection():
            pass

    def sa_acquire(i: int) -> None:
        with engine.connect():
            pass

    cases: list[Case] = [
        ("acquire+release", {"dbsystem": ours_acquire, "sqlalchemy": sa_acquire}),
        (
            "build",
            {
                "dbsystem": lambda i: (
                    query.select("id", "name").from_("users").where(col("id") == i).build()
                ),
                "sqlalchemy": lambda i: (
                    sa.select(users.c.id, users.c.name)
                    .where(users.c.id == i)
                    .compile(dialect=sa_dialect)
                ),
            },
        ),
        (
            "execute",
            {
                "dbsystem": lambda i: held.fetch_one(one_sql, {"n": i}),
                "raw driver": raw_one,
                "sqlalchemy": lambda i: sa_conn.execute(sa_one, {"n": i}).mappings().first(),
            },
        ),
        (
            "fetch 1000",
            {
                "dbsystem": lambda i: held.fetch_all(rows_sql),
                "raw driver": raw_rows,
                "sqlalchemy": lambda i: sa_conn.execute(sa_rows).mappings().all(),
            },
        ),
    ]

    def cleanup() -> None:
        sa_conn.close()
        engine.dispose()
        held.release()

    return cases, cleanup


def _redis_cases(manager: DatabaseManager) -> tuple[list[Case], Callable[[], None]]:
    import redis

    backend = manager.backend()
    if getattr(backend, "mock", False) or getattr(backend, "cluster", False):
        raise NotSupportedError("dbsystem bench runs on one real Redis server")
    url = backend.url
    client = redis.Redis(
        host=url.host or "localhost",
        port=url.port or 6379,
        db=int(url.database or 0),
        username=url.username,
        password=url.password,
        decode_responses=True,
    )
    conn: Any = manager.connection()
    key = "dbsystem:bench"
    conn.execute("SET", key, "x" * 100)
    ten = [("GET", key)] * 10

    def raw_pipeline(i: int) -> Any:
        pipe = client.pipeline(transaction=False)
        for _ in range(10):
            pipe.get(key)
        return pipe.execute()

    cases: list[Case] = [
        (
            "GET",
            {"dbsystem": lambda i: conn.execute("GET", key), "redis-py": lambda i: client.get(key)},
        ),
        ("pipeline of 10", {"dbsystem": lambda i: conn.pipeline(ten), "redis-py": raw_pipeline}),
    ]

    def cleanup() -> None:
        conn.execute("DEL", key)
        client.close()

    return cases, cleanup
