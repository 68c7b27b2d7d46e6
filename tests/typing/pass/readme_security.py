"""The README's security example, copied unchanged (test_readme_examples_are_copied)."""

from dbsystem import DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.security import AccessControl, AuditLog, MemoryAuditSink, Permission, Role

db = DatabaseManager()
db.create_pool(DatabaseType.SQLITE, "sqlite://:memory:")
db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")  # the app's own access
acl = AccessControl()
acl.create_role(Role("read_only", grants={"*": Permission.SELECT}))
acl.assign_role("analyst", "read_only")
db.use_access_control(acl)
audit = MemoryAuditSink()  # JsonLinesAuditSink("audit.jsonl") for a hash-chained file
db.add_hook(AuditLog([audit]))

analyst = db.for_user("analyst", session_id="s-42")
print(analyst.fetch_all("SELECT * FROM users"))  # []
try:
    analyst.execute("SELECT 1; DROP TABLE users")  # one statement per text, read first
except PermissionDenied as exc:
    print(exc)  # [sqlite] user 'analyst' may not send 2 statements in one text (...)
print([(e.user, e.action, e.outcome) for e in audit.events])
# [('analyst', 'select', 'ok'), ('analyst', 'multiple', 'denied')]
