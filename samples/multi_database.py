"""Two databases in one application: users in a SQL database (PostgreSQL in production),
read through a Redis cache (cache-aside), kept correct when a user changes.

- A read asks Redis first; on a miss it reads the database and stores the answer in Redis
  for 60 seconds.
- A write goes to the database, then deletes the cached copy, so the next read is fresh.
- One manager holds both pools: one configuration, one set of statistics.

Run: ``python -m samples.multi_database`` (SQLite file and mock Redis), or
``--sql-url postgresql://app@127.0.0.1/app --redis-url redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.query import col
from samples._common import database_type, own_tables, sample_urls

TTL = 60


class UserStore:
    """Users by id, cache-aside: Redis in front of the SQL table."""

    def __init__(self, db: DatabaseManager, sql: DatabaseType) -> None:
        self.db, self.sql = db, sql
        self.hits = self.misses = 0

    def get(self, user_id: int) -> dict[str, Any] | None:
        cache = self.db.query(DatabaseType.REDIS)
        cached = cache.get(f"sample:user:{user_id}").execute()
        if cached is not None:
            self.hits += 1
            return json.loads(cached)
        self.misses += 1
        row = (
            self.db.query(self.sql)
            .select("id", "name", "email", "plan")
            .from_("sample_users")
            .where(col("id") == user_id)
            .first()
        )
        if row is not None:
            cache.set(f"sample:user:{user_id}", json.dumps(row), ex=TTL).execute()
        return row

    def change_plan(self, user_id: int, plan: str) -> None:
        self.db.query(self.sql).update("sample_users").set({"plan": plan}).where(
            col("id") == user_id
        ).execute()
        self.db.query(DatabaseType.REDIS).delete(f"sample:user:{user_id}").execute()


def main(urls: dict[str, str]) -> None:
    db = DatabaseManager()
    sql = database_type(urls["sql"])
    db.create_pool(sql, urls["sql"])
    db.create_pool(DatabaseType.REDIS, urls["redis"])
    try:
        with own_tables(db, sql, "sample_users"):
            db.execute(
                "CREATE TABLE sample_users (id INTEGER PRIMARY KEY, name VARCHAR(50), "
                "email VARCHAR(100), plan VARCHAR(20))",
                db_type=sql,
            )
            db.query(sql).insert_into("sample_users").values(
                [
                    {"id": n, "name": f"user{n}", "email": f"user{n}@example.com", "plan": "free"}
                    for n in range(1, 101)
                ]
            ).execute()
            db.query(DatabaseType.REDIS).delete(
                *(f"sample:user:{n}" for n in range(1, 101))
            ).execute()
            store = UserStore(db, sql)

            start = time.perf_counter()
            for n in range(1, 101):
                store.get(n)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            for n in range(1, 101):
                store.get(n)
            warm = time.perf_counter() - start
            print(
                f"first pass: {store.misses} misses, {cold * 1000:.1f} ms (database, then cached)"
            )
            print(f"second pass: {store.hits} hits, {warm * 1000:.1f} ms (Redis only)")

            print(f"user 7 before: {store.get(7)['plan']}")
            store.change_plan(7, "pro")
            print(f"user 7 after the change: {store.get(7)['plan']} (the cached copy was dropped)")
            print(f"cache: {store.hits} hits, {store.misses} misses")
            for key, stats in db.pool_stats().items():
                print(f"pool {key.value}: acquired={stats.acquired} total={stats.total}")
    finally:
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql", "redis") as urls:
        main(urls)
