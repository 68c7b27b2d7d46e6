"""The cost of access control and audit per statement, on a PostgreSQL primary-key select.

Three ways to run the same select through the pool, interleaved, median of rounds:
the application's own (unchecked) access; a user session checked by ``AccessControl``;
the same with an ``AuditLog`` writing a hash-chained JSON-lines file. Reported as
microseconds per call (wall and this process's user CPU) and the overhead in percent.

Run: ``python benchmarks/bench_security.py`` (``--quick``; ``DBSYSTEM_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

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

    def manager(audit_path: Path | None) -> DatabaseManager:
        db = DatabaseManager()
        db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
        acl = AccessControl()
        acl.create_role(Role("reader", grants={"bench_acl": Permission.SELECT}))
        acl.assign_role("ann", "reader")
        db.use_access_control(acl)
        if audit_path is not None:
            db.add_hook(AuditLog([JsonLinesAuditSink(audit_path)]))
        return db

    plain = DatabaseManager()
    plain.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, min_size=1, max_size=2))
    plain.execute("DROP TABLE IF EXISTS bench_acl")
    plain.execute("CREATE TABLE bench_acl (id INTEGER PRIMARY KEY, name TEXT)")
    plain.insert_many("bench_acl", [{"id": i, "name": f"n{i}"} for i in range(1, 1001)])
    with tempfile.TemporaryDirectory() as tmp:
        checked = manager(None).for_user("ann", session_id="s")
        audited = manager(Path(tmp) / "audit.jsonl").for_user("ann", session_id="s")
        cases = {
            "unchecked": lambda i: plain.fetch_one(SQL, {"id": i % 1000 + 1}),
            "access control": lambda i: checked.fetch_one(SQL, {"id": i % 1000 + 1}),
            "access control + audit file": lambda i: audited.fetch_one(SQL, {"id": i % 1000 + 1}),
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
        lines = sum(1 for _ in (Path(tmp) / "audit.jsonl").open())
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
    print(f"  audit records written: {lines}")


if __name__ == "__main__":
    main()
