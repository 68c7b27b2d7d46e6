"""Read throughput with 8 threads: the primary alone, then the primary plus a replica.

PK selects through ``db.fetch_one`` for ``--seconds`` each, in one run; a pool of 8 per
server. On one 2-core machine both servers share the cores, so this shows the routing's
cost and balance (reads served by each server), not the gain a second machine would give.

Run: ``python benchmarks/bench_replicas.py`` with a streaming replica at
``DBSYSTEM_TEST_PG_REPLICA_URL`` (default ``postgresql://root@127.0.0.1:5433/test``;
``tests/server_control.start_postgres_replica()`` makes one, as root).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter

from dbsystem import DatabaseManager, DatabaseType, PoolConfig

PG = DatabaseType.POSTGRES
THREADS = 8


def run(db: DatabaseManager, seconds: float) -> tuple[float, Counter[int]]:
    served: Counter[int] = Counter()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    done = [0] * THREADS

    def worker(n: int) -> None:
        mine: Counter[int] = Counter()
        i = n
        while time.perf_counter() < deadline:
            row = db.fetch_one(
                "SELECT id, inet_server_port() AS port FROM bench_rep WHERE id = :id",
                {"id": i % 1000 + 1},
            )
            mine[row["port"]] += 1  # type: ignore[index]
            done[n] += 1
            i += THREADS
        with lock:
            served.update(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started), served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    primary = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    replica = os.environ.get(
        "DBSYSTEM_TEST_PG_REPLICA_URL", "postgresql://root@127.0.0.1:5433/test"
    )
    setup = DatabaseManager()
    setup.create_pool(PG, primary)
    setup.execute("DROP TABLE IF EXISTS bench_rep")
    setup.execute("CREATE TABLE bench_rep (id INTEGER PRIMARY KEY, v TEXT)")
    setup.insert_many("bench_rep", [{"id": i, "v": "x"} for i in range(1, 1001)])
    time.sleep(1.0)  # let the replica replay the table
    alone = DatabaseManager()
    alone.create_pool(PG, PoolConfig(url=primary, min_size=THREADS, max_size=THREADS))
    both = DatabaseManager()
    both.create_pool(
        PG, PoolConfig(url=primary, replicas=[replica], min_size=THREADS, max_size=THREADS)
    )
    print(f"PK selects, {THREADS} threads, {args.seconds:g} s each")
    for name, db in (("primary alone", alone), ("primary + replica", both)):
        rate, served = run(db, args.seconds)
        shares = ", ".join(
            f"port {port}: {count / sum(served.values()):.0%}"
            for port, count in sorted(served.items())
        )
        print(f"  {name:<18} {rate:8.0f} reads/s   ({shares})")
        db.close_all()
    setup.execute("DROP TABLE bench_rep")
    setup.close_all()


if __name__ == "__main__":
    main()
