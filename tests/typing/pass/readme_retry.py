"""The README's retry example, copied unchanged (test_readme_examples_are_copied)."""

from dbsystem import DatabaseManager, DatabaseType, PoolConfig

db = DatabaseManager()

# --- README ---
from dbsystem import CommitUnknownError, retry


def transfer() -> None:
    with db.transaction() as conn:
        conn.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
        conn.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")


retry(transfer, attempts=5)  # reruns the whole unit on a deadlock or serialization failure
