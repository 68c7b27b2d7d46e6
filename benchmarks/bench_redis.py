"""Redis through dbsystem against redis-py direct, in the same run, on the local server.

* GET, SET and HGETALL round trips (dbsystem: ``conn.execute`` on
  ``db.connection(DatabaseType.REDIS)``, and the builder's ``execute()``);
* a pipeline of 10 commands, and one of 1,000 SETs.

Both sides use the same kind of pool (redis-py's blocking pool) and hiredis when
installed; no hook is installed. The cases run interleaved (one stretch of each per round)
and each figure is the median over the rounds of this process's CPU time per call
(``time.process_time``: the client's cost, steady on a loaded machine), with the wall time
beside it; the ratio is dbsystem's CPU over redis-py's in the same case.

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


def per_call(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """Microseconds per call of ``fn(0..n-1)``: CPU of this process, and wall."""
    start_cpu, start = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    return (
        (time.process_time() - start_cpu) / n * 1e6,
        (time.perf_counter() - start) / n * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("DBSYSTEM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, n_pipe, rounds = (1_000, 5, 5) if args.quick else (4_000, 20, 15)

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
    raw.hset("bench:h", mapping={f"f{i}": f"v{i}" for i in range(10)})
    ten = [("SET", f"bench:{i}", i) if i % 2 else ("GET", f"bench:{i}") for i in range(10)]

    def ten_raw(_: int) -> object:
        pipe = raw.pipeline(transaction=False)
        for args in ten:
            pipe.execute_command(*args)
        return pipe.execute()

    def ten_builder(_: int) -> object:
        builder = q
        for i in range(10):
            builder = builder.set(f"bench:{i}", i) if i % 2 else builder.get(f"bench:{i}")
        return builder.execute()

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
        "HGETALL redis-py": (lambda i: raw.hgetall("bench:h"), n),
        "HGETALL dbsystem conn": (lambda i: conn.execute("HGETALL", "bench:h"), n),
        "HGETALL dbsystem builder": (lambda i: q.hgetall("bench:h").execute(), n),
        "pipeline 10 redis-py": (ten_raw, n // 2),
        "pipeline 10 dbsystem conn": (lambda i: conn.pipeline(ten), n // 2),
        "pipeline 10 dbsystem builder": (ten_builder, n // 2),
        "pipeline 1000 redis-py": (pipe_raw, n_pipe),
        "pipeline 1000 dbsystem conn": (pipe_ours, n_pipe),
        "pipeline 1000 dbsystem builder": (pipe_builder, n_pipe),
    }
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    for fn, count in cases.values():
        per_call(fn, max(1, count // 10))
    load = os.getloadavg()[0]
    for _ in range(rounds):
        for name, (fn, count) in cases.items():
            spent, took = per_call(fn, count)
            cpu[name].append(spent)
            wall[name].append(took)
    med = {name: statistics.median(v) for name, v in cpu.items()}
    med_wall = {name: statistics.median(v) for name, v in wall.items()}
    print(
        f"Redis at {args.url}: microseconds per call, median of {rounds} interleaved rounds; "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"  {'case':<34}{'CPU':>8}{'ratio':>8}{'wall':>10}")
    for name, value in med.items():
        base = name.split(" dbsystem")[0].replace(" redis-py", "") + " redis-py"
        print(f"  {name:<34}{value:>8.1f}{value / med[base]:>7.3f}x{med_wall[name]:>10.1f}")
    raw.delete(*[f"bench:{i}" for i in range(1000)], "bench:k", "bench:h")
    db.close_all()


if __name__ == "__main__":
    main()
