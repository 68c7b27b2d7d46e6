"""Soak: a long mixed load on PostgreSQL while a random pooled session is killed every few
seconds; records what callers saw per kill and the process's footprint over time.

``--minutes`` (default 2) of ``--threads`` (default 20) threads on a pool of 10 running PK
reads and 10 % inserts; every ``--kill-every`` seconds (default 10) one of the pool's
server sessions is ended with ``pg_terminate_backend``. Every second it samples RSS, open
file descriptors, threads, the pool's open connections and the server's sessions for the
pool (by ``application_name``). Writes ``soak-report.md`` and ``soak.png`` (matplotlib) in
``--out`` (default ``benchmarks/results``): errors per kill, the series, and whether the
footprint stayed flat. The test catalog's L5.

Run: ``python benchmarks/soak.py --minutes 10`` (``DBSYSTEM_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
import uuid
from pathlib import Path

from dbsystem import DatabaseManager, DatabaseType, PoolConfig

PG = DatabaseType.POSTGRES


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--kill-every", type=float, default=10.0)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    app = f"soak_{uuid.uuid4().hex[:8]}"
    db = DatabaseManager()
    db.create_pool(PG, PoolConfig(url=f"{url}?application_name={app}", min_size=10, max_size=10))
    admin = DatabaseManager()
    admin.create_pool(PG, url)
    table = f"soak_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, v TEXT)")
    db.insert_many(table, [{"id": i, "v": "x"} for i in range(1, 1001)])

    stop = threading.Event()
    errors: list[tuple[float, str]] = []
    ops = [0] * args.threads
    ids = iter(range(10_000, 10**12))
    ids_lock = threading.Lock()
    began = time.monotonic()

    def worker(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            try:
                if rng.random() < 0.1:
                    with ids_lock:
                        new = next(ids)
                    db.execute(f"INSERT INTO {table} VALUES (:i, 'w')", {"i": new})
                else:
                    db.fetch_one(
                        f"SELECT v FROM {table} WHERE id = :i", {"i": rng.randint(1, 1000)}
                    )
                ops[n] += 1
            except Exception as exc:  # what callers see is the measurement
                errors.append((time.monotonic() - began, type(exc).__name__))

    kills: list[float] = []
    samples: list[dict[str, float]] = []

    def killer() -> None:
        while not stop.wait(args.kill_every):
            pid = admin.fetch_value(
                "SELECT pid FROM pg_stat_activity WHERE application_name = :a "
                "ORDER BY random() LIMIT 1",
                {"a": app},
            )
            if pid is not None:
                kills.append(time.monotonic() - began)  # before: its errors come right after
                admin.execute("SELECT pg_terminate_backend(:p)", {"p": pid})

    def sampler() -> None:
        while not stop.wait(1.0):
            samples.append(
                {
                    "t": time.monotonic() - began,
                    "rss_mib": _rss_mib(),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "threads": threading.active_count(),
                    "pool_open": db.get_pool(PG).stats().total,
                    "server_sessions": admin.fetch_value(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a",
                        {"a": app},
                    ),
                    "ops": sum(ops),
                }
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
    threads += [threading.Thread(target=killer), threading.Thread(target=sampler)]
    for thread in threads:
        thread.start()
    time.sleep(args.minutes * 60)
    stop.set()
    for thread in threads:
        thread.join()
    db.execute(f"DROP TABLE {table}")
    db.close_all()
    admin.close_all()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_kill = [sum(1 for t, _ in errors if k <= t < k + args.kill_every) for k in kills]
    first, last = samples[min(5, len(samples) - 1)], samples[-1]
    lines = [
        f"# Soak: {args.minutes:g} min, {args.threads} threads, pool of 10, a session killed "
        f"every {args.kill_every:g} s",
        "",
        f"- operations: {sum(ops)} ({sum(ops) / (args.minutes * 60):.0f}/s)",
        f"- kills: {len(kills)}; errors: {len(errors)} "
        f"({', '.join(sorted({name for _, name in errors})) or 'none'})",
        f"- errors per kill: {per_kill} (max {max(per_kill, default=0)})",
        f"- RSS: {first['rss_mib']:.1f} MiB after warm-up, {last['rss_mib']:.1f} MiB at the end",
        f"- open descriptors: {first['fds']} -> {last['fds']}; threads: {first['threads']} -> "
        f"{last['threads']}",
        f"- pool connections: {first['pool_open']} -> {last['pool_open']}; server sessions: "
        f"{first['server_sessions']} -> {last['server_sessions']} (max "
        f"{max(s['server_sessions'] for s in samples)})",
    ]
    (out / "soak-report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = ["rss_mib", "fds", "threads", "pool_open", "server_sessions"]
    figure, axes = plt.subplots(len(series) + 1, 1, figsize=(8, 10), sharex=True)
    times = [s["t"] for s in samples]
    for axis, name in zip(axes, series, strict=False):
        axis.plot(times, [s[name] for s in samples])
        axis.set_ylabel(name)
        for kill in kills:
            axis.axvline(kill, color="red", alpha=0.2)
    rates = [0.0] + [
        (b["ops"] - a["ops"]) / (b["t"] - a["t"])
        for a, b in zip(samples, samples[1:], strict=False)
    ]
    axes[-1].plot(times, rates)
    axes[-1].set_ylabel("ops/s")
    axes[-1].set_xlabel("seconds (red: a session killed)")
    figure.tight_layout()
    figure.savefig(out / "soak.png", dpi=80)
    print(f"wrote {out / 'soak-report.md'} and {out / 'soak.png'}")


if __name__ == "__main__":
    main()
