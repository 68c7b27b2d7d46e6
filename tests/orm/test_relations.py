"""Relations: explicit eager loading, one query per relation (no N+1), no hidden I/O."""

from __future__ import annotations

import pytest

from dbsystem import DatabaseManager, InterfaceError, PoolConfig
from dbsystem.orm import Entity, Field, Relation
from dbsystem.testing import QueryCounter
from tests.backend_params import ENTITY_BACKENDS, ENTITY_TYPES

BACKENDS = ENTITY_BACKENDS
TYPES = ENTITY_TYPES


class Writer(Entity, table="rel_writers"):
    id: int = Field(primary_key=True)
    name: str = Field(max_length=40)
    books: list[Book] = Relation(foreign_key="writer_id")


class Book(Entity, table="rel_books"):
    id: int = Field(primary_key=True)
    title: str = Field(max_length=80)
    writer_id: int | None = Field(default=None, foreign_key="rel_writers.id", index=True)
    writer: Writer | None = Relation(local_key="writer_id")


Writer.model_rebuild()


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = {"sqlite": f"sqlite:///{tmp_path}/rel.db", "mongo": "mongodb+mock://rel"}.get(kind)
    if url is None:
        url = request.getfixturevalue(f"{kind}_url")
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], PoolConfig(url=url, max_size=2))
    manager.drop_tables([Writer, Book])
    manager.create_tables([Writer, Book])
    Writer.save_all(manager, [Writer(id=i, name=f"w{i}") for i in range(1, 51)])
    Book.save_all(
        manager,
        [Book(id=i, title=f"b{i}", writer_id=(i % 40) + 1) for i in range(1, 121)]
        + [Book(id=500, title="orphan")],
    )
    yield manager
    manager.drop_tables([Writer, Book])
    manager.close_all()


def test_one_to_many_loads_in_one_extra_query(db):
    counter = db.add_hook(QueryCounter())
    writers = Writer.query(db).include("books").order_by("id").all()
    assert counter.count == 2  # writers, then all their books: never one per writer
    assert len(writers) == 50
    assert [b.title for b in writers[0].books] == ["b40", "b80", "b120"]
    assert writers[45].books == []  # writers 41..50 have none


def test_many_to_one_loads_in_one_extra_query(db):
    counter = db.add_hook(QueryCounter())
    books = Book.query(db).include("writer").order_by("id").all()
    assert counter.count == 2
    assert books[0].writer.name == "w2"
    assert books[-1].writer is None  # the orphan


def test_touching_an_unloaded_relation_raises_and_names_include(db):
    writer = Writer.query(db).first()
    with pytest.raises(InterfaceError, match=r"\.include"):
        list(writer.books)
    book = Book.query(db).first()
    with pytest.raises(InterfaceError, match=r"\.include"):
        _ = book.writer.name


def test_relations_are_not_columns_and_not_dumped(db):
    writer = Writer.query(db).include("books").first()
    assert "books" not in writer.model_dump()
    writer.name = "renamed"
    writer.save(db)
    assert Writer.get(db, writer.id).name == "renamed"
    with pytest.raises(InterfaceError, match="no relation"):
        Writer.query(db).include("nope")
