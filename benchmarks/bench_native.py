"""The cost of native enforcement (the second wall) on a user session's primary-key select.

The same select through a user session checked by ``AccessControl``, with native
enforcement off and on, interleaved, median of rounds: on PostgreSQL (each statement in a
transaction that begins with the session's role and attributes) and on SQLite (an
authorizer installed for each lease). Reported as microseconds per call, wall and this
process's CPU, and the overhead of ``native=True`` in percent.

Run: ``python benchmarks/bench_native.py`` (``--quick``; ``DBSYSTEM_TEST_POSTGRES_URL``).
PostgreSQL roles made for it carry the prefix ``dbsystem_r_native_bench_`` and are dropped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from _timing import measure  # benchmarks/_timing.py

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.security import AccessControl, Permission, Role

SQL = "SELECT id, name FROM bench_native WHERE id = :id"
PREFIX = "dbsystem_r_native_bench_"


def _session(db_type: DatabaseType, url: str, native: bool) -> tuple[DatabaseManager, object]:
    db = DatabaseManager()
    db.create_pool(db_type, PoolConfig(url=url, min_size=1, max_size=2))
    acl = AccessControl(native=native, native_prefix=PREFIX)
    acl.create_role(Role("reader", grants={"bench_native": Permission.SELECT}))
    acl.assign_role("ann", "reader")
    if native and db_type is DatabaseType.POSTGRES:
        acl.apply_native(db)
    db.use_access_control(acl)
    return db, db.for_user("ann", session_id="s", attrs={"tenant": 7})


def _compare(
    label: str, off: Callable[[int], object], on: Callable[[int], object], n: int, rounds: int
) -> None:
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for _ in range(rounds):
        results["off"].append(measure(off, n))
        results["on"].append(measure(on, n))
    wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
    print(
        f"{label}: native off {wall['off']:.1f} us wall / {cpu['off']:.1f} us CPU; "
        f"on {wall['on']:.1f} us wall / {cpu['on']:.1f} us CPU; overhead "
        f"{100 * (wall['on'] / wall['off'] - 1):+.1f}% wall, "
        f"{100 * (cpu['on'] / cpu['off'] - 1):+.1f}% CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    n, rounds = (500, 3) if args.quick else (3000, 7)

    plain = DatabaseManager()
    plain.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
    plain.execute("DROP TABLE IF EXISTS bench_native")
    plain.execute("CREATE TABLE bench_native (id INTEGER PRIMARY KEY, name TEXT)")
    plain.insert_many("bench_native", [{"id": i, "name": f"n{i}"} for i in range(1, 1001)])
    managers = []
    try:
        db_off, off = _session(DatabaseType.POSTGRES, url, False)
        db_on, on = _session(DatabaseType.POSTGRES, url, True)
        managers += [db_off, db_on]
        _compare(
            "PostgreSQL PK select",
            lambda i: off.fetch_one(SQL, {"id": i % 1000 + 1}),  # type: ignore[attr-defined]
            lambda i: on.fetch_one(SQL, {"id": i % 1000 + 1}),  # type: ignore[attr-defined]
            n,
            rounds,
        )
        with tempfile.TemporaryDirectory() as tmp:
            lite = f"sqlite:///{Path(tmp) / 'bench.db'}"
            setup = DatabaseManager()
            setup.create_pool(DatabaseType.SQLITE, lite)
            setup.execute("CREATE TABLE bench_native (id INTEGER PRIMARY KEY, name TEXT)")
            setup.insert_many("bench_native", [{"id": i, "name": f"n{i}"} for i in range(1, 1001)])
            setup.close_all()
            lite_off, soff = _session(DatabaseType.SQLITE, lite, False)
            lite_on, son = _session(DatabaseType.SQLITE, lite, True)
            managers += [lite_off, lite_on]
            _compare(
                "SQLite PK select",
                lambda i: soff.fetch_one(SQL, {"id": i % 1000 + 1}),  # type: ignore[attr-defined]
                lambda i: son.fetch_one(SQL, {"id": i % 1000 + 1}),  # type: ignore[attr-defined]
                n * 3,
                rounds,
            )
            for db in managers[2:]:
                db.close_all()
    finally:
        for db in managers[:2]:
            db.close_all()
        AccessControl(native_prefix=PREFIX).apply_native(plain)  # drops the bench's roles
        plain.execute("DROP TABLE IF EXISTS bench_native")
        plain.close_all()


if __name__ == "__main__":
    main()
