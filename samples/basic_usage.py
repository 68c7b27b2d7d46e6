"""Basic usage: a pool, statements with :name parameters, a transaction, errors, statistics.

Run: ``python -m samples.basic_usage`` (a SQLite file in a temporary directory), or on
another database with ``--sql-url postgresql://app@127.0.0.1/app`` (or $DBSYSTEM_SQL_URL).
"""

from __future__ import annotations

from dbsystem import DatabaseManager, IntegrityError, PoolConfig
from samples._common import database_type, own_tables, sample_urls


def main(url: str) -> None:
    db = DatabaseManager()
    sql = database_type(url)
    db.create_pool(sql, PoolConfig(url=url, min_size=1, max_size=4))
    try:
        with own_tables(db, sql, "sample_notes"):
            with db.connection(sql) as conn:
                conn.execute(
                    "CREATE TABLE sample_notes (id INTEGER PRIMARY KEY, "
                    "title VARCHAR(100) NOT NULL UNIQUE, body TEXT)"
                )
                created = conn.execute(
                    "INSERT INTO sample_notes (id, title, body) VALUES (:id, :title, :body)",
                    {"id": 1, "title": "first", "body": "hello"},
                )
                print(f"inserted {int(created)} note")
                with conn.transaction():  # all three, or none
                    conn.executemany(
                        "INSERT INTO sample_notes (id, title, body) VALUES (:id, :title, :body)",
                        [{"id": i, "title": f"note {i}", "body": "..."} for i in range(2, 5)],
                    )
                try:
                    conn.execute(
                        "INSERT INTO sample_notes (id, title) VALUES (:id, :t)",
                        {"id": 9, "t": "first"},
                    )
                except IntegrityError as exc:
                    print(f"refused duplicate title ({type(exc).__name__} from {exc.backend})")
                for row in conn.fetch_all("SELECT id, title FROM sample_notes ORDER BY id"):
                    print(row)
            print(db.pool_stats()[sql])
    finally:
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql") as urls:
        main(urls["sql"])
