"""Basic usage: a pool, statements with :name parameters, a transaction, errors, statistics.

Run: ``python -m samples.basic_usage`` (SQLite file in a temporary directory), or with
``--url sqlite:///path/to/file.db``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dbsystem import DatabaseManager, DatabaseType, IntegrityError, PoolConfig


def main(url: str) -> None:
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url=url, min_size=1, max_size=4))
    try:
        with db.connection(DatabaseType.SQLITE) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, "
                "title TEXT NOT NULL UNIQUE, body TEXT)"
            )
            created = conn.execute(
                "INSERT INTO notes (title, body) VALUES (:title, :body)",
                {"title": "first", "body": "hello"},
            )
            print(f"inserted note {created.lastrowid}")
            with conn.transaction():
                conn.executemany(
                    "INSERT INTO notes (title, body) VALUES (:title, :body)",
                    [{"title": f"note {i}", "body": "..."} for i in range(3)],
                )
            try:
                conn.execute("INSERT INTO notes (title) VALUES (:t)", {"t": "first"})
            except IntegrityError as exc:
                print(f"refused duplicate: {exc.message}")
            for row in conn.fetch_all("SELECT id, title FROM notes ORDER BY id"):
                print(row)
        print(db.pool_stats()[DatabaseType.SQLITE])
    finally:
        db.close_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a SQLite URL (default: a temporary file)")
    args = parser.parse_args()
    if args.url:
        main(args.url)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(f"sqlite:///{Path(tmp) / 'notes.db'}")
