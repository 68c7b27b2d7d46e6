"""Security: role-based access control on every statement, row policies, a tamper-evident
audit log (and catching the tampering), credentials kept out of URLs, and password hashes.

Run: ``python -m samples.enterprise_features`` (``--sql-url`` for another database).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from dbsystem import DatabaseManager, PermissionDenied, PoolConfig
from dbsystem.query import col
from dbsystem.security import (
    AccessControl,
    AuditLog,
    CredentialManager,
    JsonLinesAuditSink,
    Permission,
    Role,
    hash_password,
    verify_password,
)
from dbsystem.security.audit import verify_audit_file
from samples._common import database_type, own_tables, sample_urls


def main(url: str, audit_dir: Path) -> None:
    db = DatabaseManager()
    sql = database_type(url)
    db.create_pool(sql, url)
    try:
        with own_tables(db, sql, "sample_orders"):
            db.execute(
                "CREATE TABLE sample_orders (id INTEGER PRIMARY KEY, tenant INTEGER, total INTEGER)"
            )
            db.query(sql).insert_into("sample_orders").values(
                [{"id": n, "tenant": n % 2, "total": n * 10} for n in range(1, 7)]
            ).execute()

            # Roles: deny by default; grants by table (glob patterns), inherited.
            acl = AccessControl()
            acl.create_role(Role("reader", grants={"sample_*": Permission.SELECT}))
            acl.create_role(
                Role("clerk", grants={"sample_orders": "INSERT|UPDATE"}, inherits=["reader"])
            )
            acl.create_role(
                Role(  # a row policy: this role sees and writes its tenant's rows only
                    "tenant_user",
                    grants={"sample_orders": "SELECT|INSERT"},
                    policies={"sample_orders": lambda ctx: col("tenant") == ctx.attrs["tenant"]},
                )
            )
            acl.assign_role("ann", "reader")
            acl.assign_role("carl", "clerk")
            acl.assign_role("tess", "tenant_user")
            db.use_access_control(acl)

            audit_file = audit_dir / "audit.jsonl"
            db.add_hook(AuditLog([JsonLinesAuditSink(audit_file)]))

            ann = db.for_user("ann", session_id="s-1")
            print(f"ann reads {len(ann.fetch_all('SELECT * FROM sample_orders'))} orders")
            try:
                ann.execute("DELETE FROM sample_orders")
            except PermissionDenied as exc:
                print(f"ann deletes: PermissionDenied ({exc.message})")
            carl = db.for_user("carl", session_id="s-2")
            carl.query(sql).update("sample_orders").set({"total": 0}).where(
                col("id") == 1
            ).execute()
            print("carl updates order 1: allowed (clerk inherits reader and adds UPDATE)")
            tess = db.for_user("tess", attrs={"tenant": 1})
            mine = tess.query(sql).select("id").from_("sample_orders").order_by("id").all()
            print(f"tess (tenant 1) sees orders {[r['id'] for r in mine]}")
            try:
                tess.query(sql).insert_into("sample_orders").values(
                    {"id": 99, "tenant": 0, "total": 1}
                ).execute()
            except PermissionDenied:
                print("tess writes a row of tenant 0: PermissionDenied")
            every = db.fetch_value("SELECT COUNT(*) FROM sample_orders")
            print(f"the trusted manager still sees all {every}")

            # The audit log: one record per statement of a user session, denied ones too, each
            # chained to the one before by hash.
            records = [json.loads(line) for line in audit_file.read_text().splitlines()]
            outcomes = [f"{r['user']}:{r['action']}:{r['outcome']}" for r in records]
            print(f"audit: {len(records)} records: {', '.join(outcomes)}")
            ok, line, reason = verify_audit_file(audit_file)
            print(f"verify: ok={ok} ({reason})")
            text = audit_file.read_text()
            denied_line = text.splitlines()[1]  # someone hides the denied DELETE
            audit_file.write_text(text.replace(denied_line, denied_line.replace("denied", "ok")))
            ok, line, reason = verify_audit_file(audit_file)
            print(f"verify after editing line 2: ok={ok}, line {line}: {reason}")
    finally:
        db.close_all()

    # Credentials: the URL names no password; the pool takes it from the credential store
    # (code, environment variables or a 0600 TOML file), and it never shows.
    CredentialManager.instance().set("reports", username="reporter", password="s3cr3t-pw")
    config = PoolConfig(url=url, credential="reports")
    print(f"pool config: {config.describe()} (no password in it)")
    print(f"repr hides it too: {'s3cr3t-pw' not in repr(config)}")

    # Password hashes for the application's own users: argon2id, salted, constant-time.
    stored = hash_password("correct horse battery staple")
    print(f"hash: {stored[:30]}...")
    print(f"verify right password: {verify_password(stored, 'correct horse battery staple')}")
    print(f"verify wrong password: {verify_password(stored, 'Tr0ub4dor&3')}")


if __name__ == "__main__":
    with sample_urls(__doc__, "sql") as urls, tempfile.TemporaryDirectory() as tmp:
        main(urls["sql"], Path(tmp))
