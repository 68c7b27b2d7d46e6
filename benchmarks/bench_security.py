"""The cost of access control and audit per statement, on a PostgreSQL primary-key select.

A table of 100,000 rows (``bench_acl``, made and dropped by this script). The same select,
interleaved, median of rounds: raw psycopg (for scale); the application's own (unchecked)
access through the pool and a user session checked by ``AccessControl`` (its SQL read by
the checker of ``dbsystem.security._sqlcheck``, decided once per text and cached), each as
raw SQL and as a builder; the checked raw call with an ``AuditLog`` writing a hash-chained
JSON-lines file record by record before each call returns; and the same with
``AuditLog(background=True)`` (records queued and written in batches by a writer thread).

Reported as microseconds per call (wall, and this process's CPU: ``time.process_time``,
all threads) and, for the checks, **the client's added CPU per call over the unchecked
call's wall time**, in percent: the issue's measure (wall-time differences swing on a
loaded machine by more than the check costs). Target: within 5 %, builder and raw.

Run: ``python benchmarks/bench_security.py`` (``--quick``; ``--json PATH``;
``DBSYSTEM_TEST_POSTGRES_URL``). ``--client-only`` measures the same four calls (unchecked
and checked, raw and builder) on an in-memory SQLite database instead: the client's CPU
alone, without a server's noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import psycopg
from _timing import Recorder, Stopwatch, add_json_argument  # benchmarks/_timing.py

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.query import col
from dbsystem.security import AccessControl, AuditLog, JsonLinesAuditSink, Permission, Role

SQL = "SELECT id, name FROM bench_acl WHERE id = :id"
ROWS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--client-only", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    if args.client_only:
        client_only()
        return
    recorder = Recorder("bench_security", args.json)
    url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    n, rounds = (500, 3) if args.quick else (3000, 7)

    logs: list[AuditLog] = []

    def manager(audit_path: Path | None, background: bool = False) -> DatabaseManager:
        db = DatabaseManager()
        db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
        acl = AccessControl()
        acl.create_role(Role("reader", grants={"bench_acl": Permission.SELECT}))
        acl.assign_role("ann", "reader")
        db.use_access_control(acl)
        if audit_path is not None:
            logs.append(
                db.add_hook(AuditLog([JsonLinesAuditSink(audit_path)], background=background))
            )
        return db

    plain = DatabaseManager()
    plain.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
    plain.execute("DROP TABLE IF EXISTS bench_acl")
    plain.execute("CREATE TABLE bench_acl (id INTEGER PRIMARY KEY, name TEXT)")
    plain.insert_many("bench_acl", [{"id": i, "name": f"n{i}"} for i in range(1, ROWS + 1)])
    plain.execute("ANALYZE bench_acl")
    with tempfile.TemporaryDirectory() as tmp:
        checked = manager(None).for_user("ann", session_id="s")
        audited = manager(Path(tmp) / "audit.jsonl").for_user("ann", session_id="s")
        behind = manager(Path(tmp) / "behind.jsonl", background=True).for_user(
            "ann", session_id="s"
        )
        raw = psycopg.connect(url, autocommit=True)
        raw_sql = "SELECT id, name FROM bench_acl WHERE id = %(id)s"
        app_q = plain.query(DatabaseType.POSTGRES)
        user_q = checked.query(DatabaseType.POSTGRES)

        def key(i: int) -> int:
            return i * 7919 % ROWS + 1

        cases = {
            "raw psycopg (scale)": lambda i: raw.execute(raw_sql, {"id": key(i)}).fetchone(),
            "unchecked raw": lambda i: plain.fetch_one(SQL, {"id": key(i)}),
            "checked raw": lambda i: checked.fetch_one(SQL, {"id": key(i)}),
            "unchecked builder": lambda i: (
                app_q.select("id", "name").from_("bench_acl").where(col("id") == key(i)).first()
            ),
            "checked builder": lambda i: (
                user_q.select("id", "name").from_("bench_acl").where(col("id") == key(i)).first()
            ),
            "checked raw + audit file": lambda i: audited.fetch_one(SQL, {"id": key(i)}),
            "... audit file, background": lambda i: behind.fetch_one(SQL, {"id": key(i)}),
        }
        wall: dict[str, list[float]] = {k: [] for k in cases}
        user: dict[str, list[float]] = {k: [] for k in cases}

        def timed(name: str, calls: int) -> tuple[float, float]:
            fn = cases[name]
            sw = Stopwatch()
            for i in range(calls):
                fn(i)
            lap = sw.stop()
            recorder.add("pk select", name, calls, lap, subject=name != "raw psycopg (scale)")
            return lap.wall / calls * 1e6, lap.cpu / calls * 1e6

        for name in cases:
            timed(name, 100)  # warm: pools, caches, the checker's first parse
        for _ in range(rounds):
            for name in cases:
                w, c = timed(name, n)
                wall[name].append(w)
                user[name].append(c)
        for log in logs:
            log.close()  # the background writer delivers what it still holds
        lines = sum(1 for _ in (Path(tmp) / "audit.jsonl").open())
        lines_behind = sum(1 for _ in (Path(tmp) / "behind.jsonl").open())
        raw.close()
    plain.execute("DROP TABLE bench_acl")
    plain.close_all()
    print(f"PostgreSQL PK select ({ROWS:,} rows), us per call, median of {rounds} rounds of {n}")
    for name in cases:
        w, c = statistics.median(wall[name]), statistics.median(user[name])
        print(f"  {name:<30} wall {w:7.1f}   cpu {c:6.1f}")
    for kind in ("raw", "builder"):
        base_w = statistics.median(wall[f"unchecked {kind}"])
        pairs = zip(user[f"checked {kind}"], user[f"unchecked {kind}"], strict=True)
        added = [checked_c - plain_c for checked_c, plain_c in pairs]
        extra = statistics.median(added)
        print(
            f"  check, {kind:<8} added CPU {extra:+5.1f} us per call = "
            f"{extra / base_w * 100:+5.1f}% of the unchecked call's wall time (target <= 5%)"
        )
    print(f"  audit records written: {lines} (record by record), {lines_behind} (background)")
    recorder.write()


def client_only() -> None:
    """The check's client CPU: the same calls on SQLite in memory, median of 7 x 3,000."""
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, "sqlite:///:memory:")
    db.execute("CREATE TABLE bench_acl (id INTEGER PRIMARY KEY, name TEXT)")
    db.insert_many("bench_acl", [{"id": i, "name": f"n{i}"} for i in range(1, 1001)])
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"bench_acl": Permission.SELECT}))
    acl.assign_role("ann", "reader")
    db.use_access_control(acl)  # (installed for both: the application's calls pass it)
    ann = db.for_user("ann")
    app_q, user_q = db.query(DatabaseType.SQLITE), ann.query(DatabaseType.SQLITE)
    cases = {
        "unchecked raw": lambda i: db.fetch_one(SQL, {"id": i % 1000 + 1}),
        "checked raw": lambda i: ann.fetch_one(SQL, {"id": i % 1000 + 1}),
        "unchecked builder": lambda i: (
            app_q.select("id", "name").from_("bench_acl").where(col("id") == i % 1000 + 1).first()
        ),
        "checked builder": lambda i: (
            user_q.select("id", "name").from_("bench_acl").where(col("id") == i % 1000 + 1).first()
        ),
    }
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(7):
        for name, fn in cases.items():
            sw = Stopwatch()
            for i in range(3000):
                fn(i)
            cpu[name].append(sw.stop().cpu / 3000 * 1e6)
    db.close_all()
    print("SQLite in memory, process CPU us per call, median of 7 rounds of 3000")
    for kind in ("raw", "builder"):
        plain, checked = (statistics.median(cpu[f"{c} {kind}"]) for c in ("unchecked", "checked"))
        print(
            f"  {kind:<8} unchecked {plain:6.1f}   checked {checked:6.1f}"
            f"   added {checked - plain:+.1f}"
        )


if __name__ == "__main__":
    main()
