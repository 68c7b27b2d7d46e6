"""The cost of access control and audit per statement, on a PostgreSQL primary-key select.

The same select, interleaved, median of rounds: raw psycopg (for scale); the
application's own (unchecked) access through the pool; a user session checked by
``AccessControl``; the same with an ``AuditLog`` writing a hash-chained JSON-lines file
record by record before each call returns; and the same with ``AuditLog(background=True)``
(records queued and written in batches by a writer thread). Reported as microseconds per
call (wall and this process's user CPU, the writer thread included) and the overhead over
the unchecked call in percent.

Run: ``python benchmarks/bench_security.py`` (``--quick``; ``DBSYSTEM_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import psycopg
from _timing import measure  # benchmarks/_timing.py

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.security import AccessControl, AuditLog, JsonLinesAuditSink, Permission, Role

SQL = "SELECT id, name FROM bench_acl WHERE id = :id"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
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
    plain.insert_many("bench_acl", [{"id": i, "name": f"n{i}"} for i in range(1, 1001)])
    with tempfile.TemporaryDirectory() as tmp:
        checked = manager(None).for_user("ann", session_id="s")
        audited = manager(Path(tmp) / "audit.jsonl").for_user("ann", session_id="s")
        behind = manager(Path(tmp) / "behind.jsonl", background=True).for_user(
            "ann", session_id="s"
        )
        raw = psycopg.connect(url, autocommit=True)
        raw_sql = "SELECT id, name FROM bench_acl WHERE id = %(id)s"
        cases = {
            "raw psycopg (scale)": lambda i: raw.execute(raw_sql, {"id": i % 1000 + 1}).fetchone(),
            "unchecked": lambda i: plain.fetch_one(SQL, {"id": i % 1000 + 1}),
            "access control": lambda i: checked.fetch_one(SQL, {"id": i % 1000 + 1}),
            "access control + audit file": lambda i: audited.fetch_one(SQL, {"id": i % 1000 + 1}),
            "... audit file, background": lambda i: behind.fetch_one(SQL, {"id": i % 1000 + 1}),
        }
        wall: dict[str, list[float]] = {k: [] for k in cases}
        user: dict[str, list[float]] = {k: [] for k in cases}
        for fn in cases.values():
            measure(fn, 100)
        for _ in range(rounds):
            for name, fn in cases.items():
                w, c = measure(fn, n)
                wall[name].append(w)
                user[name].append(c)
        for log in logs:
            log.close()  # the background writer delivers what it still holds
        lines = sum(1 for _ in (Path(tmp) / "audit.jsonl").open())
        lines_behind = sum(1 for _ in (Path(tmp) / "behind.jsonl").open())
        raw.close()
    plain.execute("DROP TABLE bench_acl")
    plain.close_all()
    base_w = statistics.median(wall["unchecked"])
    base_c = statistics.median(user["unchecked"])
    print(f"PostgreSQL PK select, us per call, median of {rounds} rounds of {n}")
    for name in cases:
        w, c = statistics.median(wall[name]), statistics.median(user[name])
        print(
            f"  {name:<30} wall {w:7.1f} ({(w / base_w - 1) * 100:+5.1f}%)"
            f"   cpu {c:6.1f} ({c - base_c:+.1f} us)"
        )
    print(f"  audit records written: {lines} (record by record), {lines_behind} (background)")


if __name__ == "__main__":
    main()
