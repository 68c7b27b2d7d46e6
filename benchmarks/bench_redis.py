"""Redis through dbsystem against redis-py direct, in the same run, on the local server.

* GET and SET round trips (dbsystem: the builder's ``execute()``, and ``conn.execute``);
* a pipeline of 1,000 SETs.

Both sides use the same kind of pool (redis-py's blocking pool) and hiredis when
installed. Reported as microseconds per call and the overhead in percent.

Run: ``python benchmarks/bench_redis.py`` (``DBSYSTEM_TEST_REDIS_URL`` or the local
server, database 15; ``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import redis

from dbsystem import DatabaseManager, DatabaseType, PoolConfig


def per_call(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("DBSYSTEM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, n_pipe, rounds = (2_000, 20, 3) if args.quick else (10_000, 100, 7)

    raw = redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(
            args.url, max_connections=4, decode_responses=True
        )
    )
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, PoolConfig(url=args.url, max_size=4))
    q = db.query(DatabaseType.REDIS)
    conn = db.connection(DatabaseType.REDIS)
    raw.set("bench:k", "value")

    def pipe_raw(_: int) -> object:
        pipe = raw.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"bench:{i}", i)
        return pipe.execute()

    def pipe_ours(_: int) -> object:
        return conn.pipeline([("SET", f"bench:{i}", i) for i in range(1000)])

    def pipe_builder(_: int) -> object:
        builder = q
        for i in range(1000):
            builder = builder.set(f"bench:{i}", i)
        return builder.execute()

    cases: dict[str, tuple[Callable[[int], object], int]] = {
        "GET redis-py": (lambda i: raw.get("bench:k"), n),
        "GET dbsystem conn": (lambda i: conn.execute("GET", "bench:k"), n),
        "GET dbsystem builder": (lambda i: q.get("bench:k").execute(), n),
        "SET redis-py": (lambda i: raw.set("bench:k", i), n),
        "SET dbsystem conn": (lambda i: conn.execute("SET", "bench:k", i), n),
        "SET dbsystem builder": (lambda i: q.set("bench:k", i).execute(), n),
        "pipeline 1000 redis-py": (pipe_raw, n_pipe),
        "pipeline 1000 dbsystem conn": (pipe_ours, n_pipe),
        "pipeline 1000 dbsystem builder": (pipe_builder, n_pipe),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for fn, count in cases.values():
        per_call(fn, max(1, count // 10))
    for _ in range(rounds):
        for name, (fn, count) in cases.items():
            results[name].append(per_call(fn, count))
    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"Redis at {args.url}: us per call, median of {rounds} interleaved rounds")
    for name, value in med.items():
        base = med[name.split(" dbsystem")[0].replace(" redis-py", "") + " redis-py"]
        print(f"  {name:<34}{value:>10.1f}{(value / base - 1) * 100:>+9.1f}%")
    raw.delete(*[f"bench:{i}" for i in range(1000)], "bench:k")
    db.close_all()


if __name__ == "__main__":
    main()
