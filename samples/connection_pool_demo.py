"""Connection pool: twenty threads share a pool of four connections; the statistics show
the borrowing, the waiting and a timeout handled.

Run: ``python -m samples.connection_pool_demo`` (``--sql-url`` for another database).
"""

from __future__ import annotations

import threading
import time

from dbsystem import DatabaseManager, PoolConfig, PoolTimeout
from samples._common import database_type, own_tables, sample_urls

THREADS = 20
QUERIES_PER_THREAD = 25


def main(url: str) -> None:
    db = DatabaseManager()
    sql = database_type(url)
    pool = db.create_pool(
        sql, PoolConfig(url=url, min_size=2, max_size=4, acquire_timeout=5.0, idle_timeout=60)
    )
    try:
        with own_tables(db, sql, "sample_hits"):
            with db.connection(sql) as conn:
                conn.execute("CREATE TABLE sample_hits (worker INTEGER, n INTEGER)")
            print(f"pool {pool.name!r}: min_size={pool.min_size} max_size={pool.max_size}")

            def worker(number: int) -> None:
                for n in range(QUERIES_PER_THREAD):
                    with db.connection(sql, label=f"worker-{number}") as conn:
                        conn.execute(
                            "INSERT INTO sample_hits (worker, n) VALUES (:w, :n)",
                            {"w": number, "n": n},
                        )
                        time.sleep(0.001)  # hold the connection a moment: threads queue for it

            start = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
            total = db.fetch_value("SELECT COUNT(*) FROM sample_hits", db_type=sql)
            print(f"{THREADS} threads ran {total} inserts in {elapsed:.2f} s on 4 connections")

            stats = db.pool_stats()[sql]
            print(
                f"stats: total={stats.total} active={stats.active} idle={stats.idle} "
                f"acquired={stats.acquired} created={stats.created} timeouts={stats.timeouts}"
            )
            print(f"waits: mean={stats.wait_mean * 1000:.2f} ms max={stats.wait_max * 1000:.2f} ms")

            # Every connection lent out: the next caller waits acquire_timeout, then PoolTimeout.
            held = [db.connection(sql, label=f"report-{n}") for n in range(4)]
            try:
                print("holders, longest first:", ", ".join(str(h.label) for h in pool.holders()))
                db.connection(sql, timeout=0.2)
            except PoolTimeout as exc:
                print(f"fifth caller: {type(exc).__name__} after 0.2 s ({exc.message})")
            finally:
                for conn in held:
                    conn.release()
            print(f"after release: active={db.pool_stats()[sql].active}")
    finally:
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql") as urls:
        main(urls["sql"])
