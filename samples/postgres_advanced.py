"""PostgreSQL features through dbsystem: JSONB, arrays, a recursive CTE, an upsert, and
LISTEN/NOTIFY with a change trigger. Needs PostgreSQL.

Run: ``python -m samples.postgres_advanced --postgres-url postgresql://app@127.0.0.1/app``
(or set $DBSYSTEM_POSTGRES_URL).
"""

from __future__ import annotations

import time

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.query import col, count
from dbsystem.streams import StreamProcessor
from samples._common import own_tables, sample_urls

PG = DatabaseType.POSTGRES


def main(url: str) -> None:
    db = DatabaseManager()
    db.create_pool(PG, url)
    streams = StreamProcessor(db)
    try:
        with own_tables(db, PG, "sample_products", "sample_categories"):
            db.execute(
                "CREATE TABLE sample_products (sku TEXT PRIMARY KEY, name TEXT NOT NULL, "
                "attrs JSONB NOT NULL DEFAULT '{}', tags TEXT[] NOT NULL DEFAULT '{}', "
                "stock INTEGER NOT NULL DEFAULT 0)"
            )

            # JSONB: a dict goes in as JSONB and comes back a dict; query inside it with ->>.
            db.execute(
                "INSERT INTO sample_products (sku, name, attrs, tags) VALUES "
                "(:sku, :name, :attrs, :tags)",
                {
                    "sku": "A1",
                    "name": "lamp",
                    "attrs": {"color": "red", "watts": 40},
                    "tags": ["home", "light"],
                },
            )
            db.execute(
                "INSERT INTO sample_products (sku, name, attrs, tags) VALUES "
                "(:sku, :name, :attrs, :tags)",
                {
                    "sku": "B2",
                    "name": "desk",
                    "attrs": {"color": "oak"},
                    "tags": ["home", "office"],
                },
            )
            row = db.fetch_one("SELECT attrs FROM sample_products WHERE sku = :sku", {"sku": "A1"})
            print(f"JSONB  A1 attrs -> {row['attrs']} (a {type(row['attrs']).__name__})")
            red = db.fetch_all(
                "SELECT sku FROM sample_products WHERE attrs ->> 'color' = :color", {"color": "red"}
            )
            print(f"JSONB  color = red -> {[r['sku'] for r in red]}")

            # Arrays: a list binds as an array; = ANY(:list) is the array membership test.
            tagged = db.fetch_all(
                "SELECT sku, tags FROM sample_products WHERE :tag = ANY(tags) ORDER BY sku",
                {"tag": "office"},
            )
            print(f"ARRAY  tagged office -> {tagged}")
            several = db.fetch_value(
                "SELECT COUNT(*) FROM sample_products WHERE sku = ANY(:skus)",
                {"skus": ["A1", "B2", "Z9"]},
            )
            print(f"ARRAY  sku = ANY(['A1', 'B2', 'Z9']) -> {several}")

            # A recursive CTE through the builder: a category tree walked from its root.
            db.execute(
                "CREATE TABLE sample_categories (id INTEGER PRIMARY KEY, parent INTEGER, name TEXT)"
            )
            q = db.query(PG)
            q.insert_into("sample_categories").values(
                [
                    {"id": 1, "parent": None, "name": "home"},
                    {"id": 2, "parent": 1, "name": "lighting"},
                    {"id": 3, "parent": 2, "name": "lamps"},
                    {"id": 4, "parent": 1, "name": "furniture"},
                ]
            ).execute()
            base = q.select("id", "name").from_("sample_categories").where(col("parent").is_null())
            step = (
                q.select(col("c.id"), col("c.name"))
                .from_("sample_categories", alias="c")
                .join("tree", on=col("c.parent") == col("tree.id"))
            )
            tree = (
                q.select("name")
                .with_recursive("tree", base, step, columns=["id", "name"])
                .from_("tree")
            )
            print(f"CTE    the tree under 'home' -> {sorted(r['name'] for r in tree.all())}")

            # Upsert: insert, or update the row already there (ON CONFLICT DO UPDATE).
            restock = (
                q.insert_into("sample_products")
                .values({"sku": "A1", "name": "lamp", "stock": 12})
                .upsert(["sku"], update=["stock"])
            )
            restock.execute()
            q.insert_into("sample_products").values(
                {"sku": "C3", "name": "chair", "stock": 4}
            ).upsert(["sku"], update=["stock"]).execute()
            stock = q.select("sku", "stock").from_("sample_products").order_by("sku").all()
            print(f"UPSERT stock -> {stock}")
            print(f"       rows -> {q.select(count()).from_('sample_products').scalar_value()}")

            # LISTEN/NOTIFY: a trigger sends every change of the table as JSON.
            channel = streams.install_change_trigger("sample_products")
            changes = streams.listen(channel, json=True)
            time.sleep(0.2)  # the listener is connected
            db.execute(
                "UPDATE sample_products SET stock = stock - 1 WHERE sku = :sku", {"sku": "C3"}
            )
            db.execute("DELETE FROM sample_products WHERE sku = :sku", {"sku": "B2"})
            for _ in range(2):
                event = changes.get(timeout=5)
                assert event is not None, "no notification arrived"
                print(
                    f"NOTIFY {event.payload['op']} {event.payload['row']['sku']} "
                    f"(stock {event.payload['row']['stock']})"
                )
    finally:
        streams.stop()
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "postgres", required=("postgres",)) as urls:
        main(urls["postgres"])
