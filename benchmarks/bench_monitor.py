"""The cost of monitoring per statement, on a PostgreSQL primary-key select.

Cases, interleaved over rounds, median reported (us per call, wall and this process's CPU):

* ``psycopg``: the raw driver on a connection it holds (the floor);
* ``sqlalchemy``: SQLAlchemy Core, ``engine.connect()`` + ``execute`` per call;
* ``dbsystem``: ``db.fetch_one`` with no hook;
* ``dbsystem + no-op hook``: with an ``ExecutionHook()`` that does nothing (the cost of the
  hook path itself: the ``Statement``, the timing; shared by monitor, access control, audit);
* ``dbsystem + monitor``: the same with a ``PerformanceMonitor`` attached;
* ``dbsystem + monitor + exporter``: and a ``PrometheusExporter`` scraped every 100 ms by
  another thread (a scrape interval 150x shorter than Prometheus' default 15 s).

The issue's target: the monitor costs at most 5% over ``dbsystem`` without it.
Also printed: the monitor's own ``after_execute`` cost in a tight loop.

Run: ``python benchmarks/bench_monitor.py`` (``--quick``; ``DBSYSTEM_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import timeit
import urllib.request
from collections.abc import Callable

import psycopg
from _timing import measure  # benchmarks/_timing.py
from psycopg.rows import dict_row
from sqlalchemy import create_engine, text

from dbsystem import DatabaseManager, DatabaseType, ExecutionHook, PoolConfig, Statement
from dbsystem.monitoring import PerformanceMonitor, PrometheusExporter

SQL = "SELECT id, name FROM bench_monitor WHERE id = :id"


def hook_cost() -> float:
    monitor = PerformanceMonitor()
    st = Statement(backend="postgresql", dialect="postgresql", pool="p", operation="fetch_one",
                   text=SQL)  # fmt: skip
    st.duration, st.executed = 0.0001, True
    n = 100_000
    return min(timeit.repeat(lambda: monitor.after_execute(st), number=n, repeat=5)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    n, rounds = (500, 3) if args.quick else (3000, 9)

    plain = DatabaseManager()
    plain.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
    plain.execute("DROP TABLE IF EXISTS bench_monitor")
    plain.execute("CREATE TABLE bench_monitor (id INTEGER PRIMARY KEY, name TEXT)")
    plain.insert_many("bench_monitor", [{"id": i, "name": f"n{i}"} for i in range(1, 1001)])

    hooked = DatabaseManager()
    hooked.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
    hooked.add_hook(ExecutionHook())

    monitored = DatabaseManager()
    monitored.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
    monitor = PerformanceMonitor().attach(monitored)

    scraped = DatabaseManager()
    scraped.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
    scraped_monitor = PerformanceMonitor().attach(scraped)
    exporter = PrometheusExporter(port=0, monitor=scraped_monitor).start()
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(0.1):
            urllib.request.urlopen(exporter.url + "/metrics", timeout=5).read()

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()

    raw = psycopg.connect(url.replace("postgresql://", "postgres://"), autocommit=True)
    raw.row_factory = dict_row  # type: ignore[assignment]
    raw_sql = "SELECT id, name FROM bench_monitor WHERE id = %(id)s"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"), pool_size=2)
    sa_sql = text(SQL)

    def sqlalchemy_case(i: int) -> object:
        with engine.connect() as conn:
            return conn.execute(sa_sql, {"id": i % 1000 + 1}).mappings().first()

    cases: dict[str, Callable[[int], object]] = {
        "psycopg": lambda i: raw.execute(raw_sql, {"id": i % 1000 + 1}).fetchone(),
        "sqlalchemy": sqlalchemy_case,
        "dbsystem": lambda i: plain.fetch_one(SQL, {"id": i % 1000 + 1}),
        "dbsystem + no-op hook": lambda i: hooked.fetch_one(SQL, {"id": i % 1000 + 1}),
        "dbsystem + monitor": lambda i: monitored.fetch_one(SQL, {"id": i % 1000 + 1}),
        "dbsystem + monitor + exporter": lambda i: scraped.fetch_one(SQL, {"id": i % 1000 + 1}),
    }
    wall: dict[str, list[float]] = {k: [] for k in cases}
    user: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        measure(fn, 200)
    for _ in range(rounds):
        for name, fn in cases.items():
            w, c = measure(fn, n)
            wall[name].append(w)
            user[name].append(c)
    stop.set()
    scraper.join()
    exporter.stop()
    counted = sum(monitor.query_counts().values())
    plain.execute("DROP TABLE bench_monitor")
    for db in (plain, hooked, monitored, scraped):
        db.close_all()
    raw.close()
    engine.dispose()

    median = {name: statistics.median(values) for name, values in wall.items()}
    cpu_median = {name: statistics.median(values) for name, values in user.items()}
    base = median["dbsystem"]
    print(f"PostgreSQL PK select, us per call, median of {rounds} interleaved rounds of {n}")
    print(f"  {'case':<32}{'wall':>8}{'cpu':>8}   vs psycopg   vs sqlalchemy   vs dbsystem")
    for name in cases:
        w = median[name]
        print(
            f"  {name:<32}{w:8.1f}{cpu_median[name]:8.1f}"
            f"   {w / median['psycopg']:9.2f}x   {w / median['sqlalchemy']:11.2f}x"
            f"   {(w / base - 1) * 100:+8.1f}%"
        )
    print(f"  statements the monitor counted: {counted}")
    print(f"  PerformanceMonitor.after_execute alone: {hook_cost():.2f} us per statement")
    overhead = (median["dbsystem + monitor"] / base - 1) * 100
    print(f"monitor overhead: {overhead:+.1f}% (target <= +5%)")


if __name__ == "__main__":
    main()
