"""Entities as the README declares them: typed construction, fields, queries and results."""

from __future__ import annotations

import datetime
from typing import assert_type

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, ShardedPool
from dbsystem.orm import Entity, EntityQuery, Field, Relation
from dbsystem.query import col


class Author(Entity, table="authors"):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    name: str = Field(max_length=80, index=True)
    born: datetime.date | None = None
    books: list[Book] = Relation(foreign_key="author_id")


class Book(Entity, table="books", versioned=True):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    title: str
    pages: int = 0
    author_id: int | None = Field(default=None, foreign_key="authors.id")
    author: Author | None = Relation(local_key="author_id")
    revision: int = Field(default=0, version=True)


db = DatabaseManager()

# Construction is checked per field; defaults may be left out.
ada = Author(name="ada")
book = Book(title="Notes", pages=12, author_id=1)
assert_type(ada.id, int | None)
assert_type(book.pages, int)
ada.name = "Ada"

# Filters: the class attribute compares as its type does (SQLModel's approach).
query = Book.query(db).where(Book.pages > 10).where(Book.title == "Notes")
assert_type(query, EntityQuery[Book])
query = query.where(col("title").like("N%")).order_by(Book.title).order_by("pages", "desc")
assert_type(query.all(), list[Book])
assert_type(query.for_update(skip_locked=True).all(), list[Book])
assert_type(query.paginate(limit=10).entities, list[Book])
assert_type(query.first(), Book | None)
assert_type(query.count(), int)
assert_type(Book.get(db, 1), Book | None)
assert_type(Author.query(db).include("books").all(), list[Author])
assert_type(Author.query(db).include(Author.books).all(), list[Author])
assert_type(Book.query(db).include(Book.author).first(), Book | None)
assert_type(book.save(db), Book)
assert_type(book.refresh(db), Book)
assert_type(Book.restore(db, 1), Book)
history = Book.history(db, 1)
assert_type(history, list[tuple[Book, datetime.datetime, datetime.datetime | None]])
Book.save_all(db, [book])
book.delete(db)
assert_type(book.is_persisted, bool)
assert_type(Book.query(db).as_of(datetime.datetime.now(datetime.UTC)).all(), list[Book])

# Entities persist through a user session, a sharded pool, the async manager's bridge.
session = db.for_user("ann")
assert_type(Book.query(session).where(Book.pages > 1).all(), list[Book])
assert_type(Book(title="t").save(session), Book)
shards = ShardedPool(db, DatabaseType.POSTGRES, ["s0", "s1"], key="author_id")
assert_type(Book.query(shards).where(Book.author_id == 7).all(), list[Book])


async def from_async_code() -> None:
    adb = AsyncDatabaseManager()
    assert_type(await adb.run_sync(lambda d: Book.get(d, 1)), Book | None)
