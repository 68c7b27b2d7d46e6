"""The end-to-end example: a pool of 10 to 100 connections, a schema, five threads inserting
100 users each through the query builder, a department analytics query (GROUP BY, HAVING,
ORDER BY), and the performance summary and pool statistics.

Run: ``python -m samples.enterprise_example`` (a SQLite file), or on a server with
``--sql-url postgresql://app@127.0.0.1/app`` / ``mysql://root@127.0.0.1/app``.
"""

from __future__ import annotations

import random
import threading
import time

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.monitoring import PerformanceMonitor
from dbsystem.query import avg, col, count, max_
from samples._common import AUTO_ID, database_type, own_tables, sample_urls

DEPARTMENTS = ("engineering", "sales", "support", "finance", "research")
THREADS = 5
USERS_PER_THREAD = 100


def create_schema(db: DatabaseManager, sql: DatabaseType) -> None:
    dialect = db.backend(sql).dialect
    with db.connection(sql) as conn:
        conn.execute(
            f"CREATE TABLE sample_employees (id {AUTO_ID[dialect]}, "
            "email VARCHAR(100) NOT NULL UNIQUE, department VARCHAR(30) NOT NULL, "
            "salary INTEGER NOT NULL, is_active BOOLEAN NOT NULL)"
        )
        conn.execute("CREATE INDEX sample_employees_department ON sample_employees (department)")


def insert_users(db: DatabaseManager, sql: DatabaseType, worker: int) -> None:
    rng = random.Random(worker)
    q = db.query(sql)
    for i in range(USERS_PER_THREAD):  # one INSERT per user: 500 statements in all
        q.insert_into("sample_employees").values(
            {
                "email": f"user{worker}-{i}@example.com",
                "department": rng.choice(DEPARTMENTS),
                "salary": rng.randrange(40_000, 160_000, 1_000),
                "is_active": rng.random() < 0.9,
            }
        ).execute()


def main(url: str) -> None:
    db = DatabaseManager()
    sql = database_type(url)
    db.create_pool(sql, PoolConfig(url=url, min_size=10, max_size=100, acquire_timeout=10))
    monitor = PerformanceMonitor().attach(db)
    try:
        with own_tables(db, sql, "sample_employees"):
            create_schema(db, sql)
            print(f"pool: {db.get_pool(sql).min_size} to {db.get_pool(sql).max_size} connections")

            start = time.perf_counter()
            workers = [
                threading.Thread(target=insert_users, args=(db, sql, n)) for n in range(THREADS)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            took = time.perf_counter() - start
            total = db.query(sql).select(count()).from_("sample_employees").scalar_value()
            print(
                f"{THREADS} threads inserted {total} users in {took:.2f} s "
                f"({total / took:,.0f} inserts/s)"
            )

            analytics = (
                db.query(sql)
                .select(
                    "department",
                    count().as_("employees"),
                    avg("salary").as_("avg_salary"),
                    max_("salary").as_("top_salary"),
                )
                .from_("sample_employees")
                .where(col("is_active") == True)  # noqa: E712 - an expression
                .group_by("department")
                .having(count() > 80)
                .order_by("avg_salary", "desc")
            )
            print("active employees by department (departments of more than 80):")
            print(f"  {'department':<12} {'employees':>9} {'avg salary':>11} {'top salary':>11}")
            for row in analytics.all():
                print(
                    f"  {row['department']:<12} {row['employees']:>9} "
                    f"{float(row['avg_salary']):>11,.0f} {row['top_salary']:>11,}"
                )

            summary = monitor.summary()
            print(
                f"performance: {summary.total_queries} statements, {summary.errors} errors, "
                f"{summary.queries_per_second:,.0f}/s, mean {summary.avg_latency * 1000:.2f} ms, "
                f"p95 {summary.p95 * 1000:.2f} ms, p99 {summary.p99 * 1000:.2f} ms"
            )
            stats = db.pool_stats()[sql]
            print(
                f"pool stats: total={stats.total} active={stats.active} idle={stats.idle} "
                f"acquired={stats.acquired} created={stats.created} timeouts={stats.timeouts} "
                f"wait mean={stats.wait_mean * 1000:.2f} ms max={stats.wait_max * 1000:.2f} ms"
            )
    finally:
        monitor.close()
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql") as urls:
        main(urls["sql"])
