"""``dbsystem demo``: the end-to-end tour on an embedded SQLite file, with no setup.

A pool of 2 to 10 connections, a schema, five threads inserting 100 users each, a
department analytics query (GROUP BY, HAVING, ORDER BY), a transaction that rolls back,
a typed error, the same figures in Redis and MongoDB on their mock backends (when
``dbsystem[mock]`` is installed), and the pool's statistics.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dbsystem._facade import DatabaseManager
from dbsystem.errors import IntegrityError
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import DatabaseType
from dbsystem.query import col

DEPARTMENTS = ("engineering", "sales", "support", "finance", "research")
THREADS = 5
USERS_PER_THREAD = 100


def run_demo(path: Path | None, console: Console) -> None:
    """Run the demo against ``path`` (a new temporary file when None) and print what happens."""
    with tempfile.TemporaryDirectory(prefix="dbsystem-demo-") as tmp:
        target = path or Path(tmp) / "demo.db"
        _run(target, console)


def _redis_and_mongo(db: DatabaseManager, rows: list[dict[str, Any]], console: Console) -> None:
    """The same figures in Redis (a leaderboard) and MongoDB (an aggregation), on the mocks."""
    try:
        import fakeredis  # noqa: F401
        import mongomock  # noqa: F401
    except ImportError:
        console.print(
            "(pip install 'dbsystem[mock]' to see Redis and MongoDB in the demo too)",
            markup=False,
        )
        return
    db.create_pool(DatabaseType.REDIS, "redis+mock://")
    board = db.query(DatabaseType.REDIS)
    board.zadd(
        "departments:by_salary", {row["department"]: float(row["avg_salary"]) for row in rows}
    ).execute()
    top = board.zrevrange("departments:by_salary", 0, 2, withscores=True).execute()
    console.print(
        "Redis leaderboard (redis+mock://): "
        + ", ".join(f"{name} {score:,.0f}" for name, score in top)
    )
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://demo")
    people = db.query(DatabaseType.MONGODB).collection("people")
    people.insert_many([{"department": d, "n": i} for i, d in enumerate(DEPARTMENTS * 3)]).execute()
    counts = (
        people.aggregate()
        .match(col("n") >= 5)
        .group("$department", people={"$sum": 1})
        .sort("_id")
        .execute()
    )
    console.print(
        "MongoDB aggregation (mongodb+mock://): "
        + ", ".join(f"{c['_id']} {c['people']}" for c in counts)
    )


def _run(path: Path, console: Console) -> None:
    db = DatabaseManager()
    config = PoolConfig(url=f"sqlite:///{path}", min_size=2, max_size=10, acquire_timeout=5.0)
    db.create_pool(DatabaseType.SQLITE, config)
    console.print(f"[bold]dbsystem demo[/bold]: SQLite pool on {path} (2..10 connections)")
    try:
        with db.connection(DatabaseType.SQLITE) as conn:
            conn.execute("DROP TABLE IF EXISTS users")
            conn.execute(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, "
                "department TEXT NOT NULL, salary INTEGER NOT NULL, is_active BOOLEAN NOT NULL)"
            )

        def insert_users(worker: int) -> None:
            rng = random.Random(worker)
            rows = [
                {
                    "email": f"user{worker}-{i}@example.com",
                    "department": rng.choice(DEPARTMENTS),
                    "salary": rng.randrange(40_000, 160_000, 1_000),
                    "is_active": rng.random() < 0.9,
                }
                for i in range(USERS_PER_THREAD)
            ]
            with db.connection(DatabaseType.SQLITE) as conn, conn.transaction():
                conn.executemany(
                    "INSERT INTO users (email, department, salary, is_active) "
                    "VALUES (:email, :department, :salary, :is_active)",
                    rows,
                )

        start = time.perf_counter()
        workers = [threading.Thread(target=insert_users, args=(n,)) for n in range(THREADS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = (time.perf_counter() - start) * 1000
        total = db.fetch_value("SELECT COUNT(*) FROM users")
        console.print(f"{THREADS} threads inserted {total} users in {elapsed:.1f} ms")

        rows = db.fetch_all(
            "SELECT department, COUNT(*) AS employees, ROUND(AVG(salary)) AS avg_salary "
            "FROM users WHERE is_active = :active GROUP BY department "
            "HAVING COUNT(*) > :min_size ORDER BY avg_salary DESC",
            {"active": True, "min_size": 50},
        )
        table = Table(title="Active employees by department (more than 50)")
        for column in ("department", "employees", "avg_salary"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["department"], str(row["employees"]), f"{row['avg_salary']:,.0f}")
        console.print(table)

        try:
            with db.connection(DatabaseType.SQLITE) as conn, conn.transaction():
                conn.execute(
                    "UPDATE users SET salary = salary * 2 WHERE department = :d",
                    {"d": "finance"},
                )
                conn.execute(
                    "INSERT INTO users (email, department, salary, is_active) "
                    "VALUES (:e, 'finance', 1, 1)",
                    {"e": "user0-0@example.com"},
                )
        except IntegrityError as exc:
            console.print(
                f"duplicate email -> {type(exc).__name__}: {exc.message}; "
                "the salary update in the same transaction was rolled back too"
            )

        _redis_and_mongo(db, rows, console)

        stats = db.pool_stats()[DatabaseType.SQLITE]
        console.print(
            f"pool: total={stats.total} active={stats.active} idle={stats.idle} "
            f"acquired={stats.acquired} created={stats.created} timeouts={stats.timeouts} "
            f"wait_max={stats.wait_max * 1000:.2f} ms"
        )
    finally:
        db.close_all()
