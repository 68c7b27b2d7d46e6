"""The ORM: typed entities, relations without N+1, optimistic locking, migrations and time
travel, with one entity definition on a SQL database and on MongoDB.

Run: ``python -m samples.orm_examples`` (SQLite file and mock MongoDB), or with
``--sql-url`` and ``--mongo-url`` for real servers.
"""

from __future__ import annotations

import datetime
import tempfile
import time
from pathlib import Path

from dbsystem import ConflictError, DatabaseManager, DatabaseType
from dbsystem.orm import Entity, Field, Relation
from dbsystem.orm.migrations import MigrationRunner
from samples._common import database_type, own_tables, sample_urls


class Author(Entity, table="sample_authors"):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    name: str = Field(max_length=50, unique=True)
    born: int | None = None
    version: int = Field(default=0, version=True)  # optimistic locking
    books: list[Book] = Relation(foreign_key="author_id")


class Book(Entity, table="sample_books"):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    author_id: int = Field(foreign_key="sample_authors.id", index=True)
    title: str = Field(max_length=100)
    year: int
    author: Author | None = Relation(local_key="author_id")


class Price(Entity, table="sample_prices", versioned=True):  # keeps its history
    sku: str = Field(primary_key=True, max_length=20)
    amount: int


Author.model_rebuild()

# Every table (MongoDB: collection) the sample creates, parents first; dropped at the end.
TABLES = ("sample_authors", "sample_books", "sample_prices", "sample_prices_history")

BOOKS = {
    "Ursula K. Le Guin": (1929, [("A Wizard of Earthsea", 1968), ("The Dispossessed", 1974)]),
    "Stanislaw Lem": (1921, [("Solaris", 1961), ("The Cyberiad", 1965), ("Fiasco", 1986)]),
    "Octavia E. Butler": (1947, [("Kindred", 1979)]),
}


def tour(db: DatabaseManager, db_type: DatabaseType, label: str) -> None:
    print(f"--- {label}")
    db.create_tables([Author, Book, Price], db_type=db_type)
    for name, (born, books) in BOOKS.items():
        author = Author(name=name, born=born).save(db, db_type=db_type)  # id filled in
        Book.save_all(
            db, [Book(author_id=author.id, title=t, year=y) for t, y in books], db_type=db_type
        )
    prolific = (
        Author.query(db, db_type=db_type).include("books").order_by("name").all()
    )  # two queries in all: the authors, then every book of them at once
    for author in prolific:
        titles = ", ".join(b.title for b in sorted(author.books, key=lambda b: b.year))
        print(f"{author.name} ({author.born}): {titles}")
    old = Book.query(db, db_type=db_type).where(Book.year < 1970).order_by("year").all()
    print(f"before 1970: {[b.title for b in old]}")

    # Two copies of one row: the second save sees the first and refuses to overwrite it.
    first = Author.query(db, db_type=db_type).where(Author.name == "Stanislaw Lem").first()
    second = Author.get(db, first.id, db_type=db_type)
    first.born = 1921
    first.name = "Stanisław Lem"
    first.save(db, db_type=db_type)
    second.born = 1900
    try:
        second.save(db, db_type=db_type)
    except ConflictError:
        print("a stale copy was refused (optimistic locking): ConflictError")

    # Time travel: every change of a versioned entity keeps the version it replaced.
    price = Price(sku="A1", amount=100).save(db, db_type=db_type)
    time.sleep(0.05)
    before_raise = datetime.datetime.now(datetime.UTC)
    time.sleep(0.05)
    price.amount = 120
    price.save(db, db_type=db_type)
    then = Price.query(db, db_type=db_type).as_of(before_raise).first()
    print(
        f"price of A1 now {Price.get(db, 'A1', db_type=db_type).amount}, "
        f"before the raise {then.amount}"
    )
    history = Price.history(db, "A1", db_type=db_type)
    print(f"A1 has {len(history)} versions: {[version.amount for version, *_ in history]}")


def migrations(db: DatabaseManager, db_type: DatabaseType) -> None:
    print("--- migrations")
    with tempfile.TemporaryDirectory() as directory:
        runner = MigrationRunner(db, Path(directory), db_type=db_type)
        for applied in runner.status():
            print(f"(already applied: {applied})")
        path = runner.new("create the catalogue", entities=[Author, Book])
        print(f"wrote {path.name}: {path.read_text().count('CreateTable(')} CreateTable operations")
        db.drop_tables([Book, Author], db_type=db_type)
        print(f"up: {runner.up()}")
        print(f"status: {[(rev, applied) for rev, _, applied in runner.status()]}")
        print(f"down: {runner.down()}")


def main(urls: dict[str, str]) -> None:
    db = DatabaseManager()
    sql = database_type(urls["sql"])
    db.create_pool(sql, urls["sql"])
    db.create_pool(DatabaseType.MONGODB, urls["mongo"])
    try:
        with (
            own_tables(db, sql, *TABLES, "dbsystem_migrations"),
            own_tables(db, DatabaseType.MONGODB, *TABLES),
        ):
            tour(db, sql, f"{sql.value} ({urls['sql'].split('://')[0]})")
            tour(db, DatabaseType.MONGODB, "mongodb, the same classes")
            migrations(db, sql)  # (its history table too is created here, and dropped)
    finally:
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql", "mongo") as urls:
        main(urls)
