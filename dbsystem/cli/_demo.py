"""``dbsystem demo``: the end-to-end tour on an embedded SQLite file, with no setup.

A pool of 2 to 10 connections, a schema, five threads inserting 100 users each, a
department analytics query (GROUP BY, HAVING, ORDER BY), a transaction that rolls back,
a typed error, the same figures in Redis and MongoDB on their embedded mocks (fakeredis and
mongomock are installed with dbsystem), and the pool's statistics. PostgreSQL and MySQL
join when configured (``DBSYSTEM_POSTGRES_URL``, ``DBSYSTEM_MYSQL_URL`` or the options);
a server listening on its usual local port without a URL is named, with how to include it.

The demo only touches what it creates: its SQLite table is ``dbsystem_demo_users`` (it
refuses to run on a file that already has one, and drops it at the end), and on a real
server its table has a fresh random name, dropped at the end.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dbsystem._facade import DatabaseManager
from dbsystem.errors import ConfigurationError, DBSystemError, IntegrityError, InterfaceError
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import DatabaseType
from dbsystem.query import col

DEPARTMENTS = ("engineering", "sales", "support", "finance", "research")
THREADS = 5
USERS_PER_THREAD = 100
TABLE = "dbsystem_demo_users"
# Servers the demo can show besides SQLite: (type, title, environment variable, local port).
SERVERS = (
    (DatabaseType.POSTGRES, "PostgreSQL", "DBSYSTEM_POSTGRES_URL", 5432),
    (DatabaseType.MYSQL, "MySQL/MariaDB", "DBSYSTEM_MYSQL_URL", 3306),
)


def run_demo(
    path: Path | None,
    console: Console,
    urls: Mapping[DatabaseType, str | None] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    probe_host: str = "127.0.0.1",
) -> None:
    """Run the demo against ``path`` (a new temporary file when None) and print what happens.

    ``urls`` (PostgreSQL, MySQL: from the command's options) override the environment.
    """
    with tempfile.TemporaryDirectory(prefix="dbsystem-demo-") as tmp:
        target = path or Path(tmp) / "demo.db"
        _run(target, console)
    _servers(console, urls or {}, os.environ if environ is None else environ, probe_host)


def _servers(
    console: Console,
    urls: Mapping[DatabaseType, str | None],
    environ: Mapping[str, str],
    probe_host: str,
) -> None:
    """The demo on each configured server; a hint for each one only listening locally."""
    for db_type, title, variable, port in SERVERS:
        url = urls.get(db_type)
        if url is None:
            try:
                url = PoolConfig.from_env(db_type, environ).url.render(hide_password=False)
            except ConfigurationError:
                url = None
        if url is not None:
            _on_server(db_type, title, url, console)
        elif _listening(probe_host, port):
            console.print(
                f"{title} is listening on {probe_host}:{port}: set {variable} (or pass "
                f"--{db_type.value}-url) to run the demo on it too",
                markup=False,
            )


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _on_server(db_type: DatabaseType, title: str, url: str, console: Console) -> None:
    """Insert, aggregate and drop a table of the demo's own (a fresh name) on a real server."""
    db = DatabaseManager()
    table = f"dbsystem_demo_{uuid.uuid4().hex[:10]}"
    try:
        db.create_pool(db_type, PoolConfig(url=url, min_size=1, max_size=4, connect_timeout=5))
        shown = db.backend(db_type).url
        start = time.perf_counter()
        db.execute(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, department VARCHAR(20), salary INTEGER)"
        )
        try:
            rng = random.Random(7)
            rows = [
                {"id": i, "d": rng.choice(DEPARTMENTS), "s": rng.randrange(40_000, 160_000)}
                for i in range(200)
            ]
            with db.transaction() as conn:
                conn.executemany(
                    f"INSERT INTO {table} (id, department, salary) VALUES (:id, :d, :s)", rows
                )
            top = db.fetch_one(
                f"SELECT department, COUNT(*) AS n FROM {table} GROUP BY department "
                "ORDER BY n DESC, department LIMIT 1"
            ) or {"department": "none", "n": 0}
        finally:
            db.execute(f"DROP TABLE {table}")
        elapsed = (time.perf_counter() - start) * 1000
        console.print(
            f"{title} ({shown}): 200 rows in one transaction, largest department "
            f"{top['department']} ({top['n']}), table created and dropped in {elapsed:.1f} ms",
            markup=False,
        )
    except DBSystemError as exc:
        console.print(f"{title}: skipped, {type(exc).__name__}: {exc}", markup=False)
    finally:
        db.close_all()


def _redis_and_mongo(db: DatabaseManager, rows: list[dict[str, Any]], console: Console) -> None:
    """The same figures in Redis (a leaderboard) and MongoDB (an aggregation), on the mocks."""
    try:
        import fakeredis  # noqa: F401
        import mongomock  # noqa: F401
    except ImportError:  # (installed with dbsystem; a stripped environment may lack them)
        console.print(
            "(pip install fakeredis mongomock to see Redis and MongoDB in the demo too)",
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
    created = False
    try:
        if db.fetch_value(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = :t", {"t": TABLE}
        ):
            raise InterfaceError(
                f"{path} already has a table {TABLE}; the demo only touches tables it creates "
                "(a previous demo was interrupted?): drop it, or use another --path"
            )
        created = True
        db.execute(
            f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, "
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
                    f"INSERT INTO {TABLE} (email, department, salary, is_active) "
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
        total = db.fetch_value(f"SELECT COUNT(*) FROM {TABLE}")
        console.print(f"{THREADS} threads inserted {total} users in {elapsed:.1f} ms")

        rows = db.fetch_all(
            "SELECT department, COUNT(*) AS employees, ROUND(AVG(salary)) AS avg_salary "
            f"FROM {TABLE} WHERE is_active = :active GROUP BY department "
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
                    f"UPDATE {TABLE} SET salary = salary * 2 WHERE department = :d",
                    {"d": "finance"},
                )
                conn.execute(
                    f"INSERT INTO {TABLE} (email, department, salary, is_active) "
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
        if created:
            db.execute(f"DROP TABLE IF EXISTS {TABLE}", db_type=DatabaseType.SQLITE)
        db.close_all()
