"""Entities that could not work fail when their class is defined, with a SchemaError
naming the class, the field and the cause, not at their first query."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, InterfaceError, SchemaError
from dbsystem.orm import Entity, Field, Relation


def _table() -> str:
    return f"c_{uuid.uuid4().hex[:10]}"


class Unmapped:
    """Not a column type, and not an entity."""


def test_a_field_type_with_no_column_type():
    with pytest.raises(SchemaError, match=r"field 'blob': no column type"):

        class Bad(Entity, table=_table(), arbitrary_types_allowed=True):
            id: int = Field(primary_key=True)
            blob: Unmapped | None = None


def test_a_set_field_is_refused_too():
    with pytest.raises(SchemaError, match=r"field 'tags': no column type"):

        class Bad(Entity, table=_table()):
            id: int = Field(primary_key=True)
            tags: set[str] = set()


def test_an_index_on_a_json_column():
    with pytest.raises(SchemaError, match=r"Bad.data: a JSON column cannot be a key"):

        class Bad(Entity, table=_table()):
            id: int = Field(primary_key=True)
            data: dict[str, int] = Field(default_factory=dict, index=True)


def test_a_version_field_that_is_not_an_int():
    with pytest.raises(SchemaError, match=r"Bad.version: a version=True field must be an int"):

        class Bad(Entity, table=_table()):
            id: int = Field(primary_key=True)
            version: str = Field(default="1", version=True)


def test_an_auto_increment_key_that_is_not_an_int():
    with pytest.raises(SchemaError, match=r"Bad.id: an auto_increment field must be an int"):

        class Bad(Entity, table=_table()):
            id: str | None = Field(default=None, primary_key=True, auto_increment=True)


def test_a_foreign_key_that_is_not_table_dot_column():
    with pytest.raises(SchemaError, match=r"Bad.owner: foreign_key='owners' must be"):

        class Bad(Entity, table=_table()):
            id: int = Field(primary_key=True)
            owner: int = Field(foreign_key="owners")


def test_a_foreign_key_to_a_missing_column_of_a_defined_entity():
    parents = _table()

    class Parent(Entity, table=parents):
        id: int = Field(primary_key=True)

    with pytest.raises(SchemaError, match=rf"Child.parent_id: foreign_key='{parents}.uid' names"):

        class Child(Entity, table=_table()):
            id: int = Field(primary_key=True)
            parent_id: int = Field(foreign_key=f"{parents}.uid")


def test_a_foreign_key_to_an_entity_defined_later_is_checked_then():
    parents = _table()

    class Child(Entity, table=_table()):
        id: int = Field(primary_key=True)
        parent_id: int = Field(foreign_key=f"{parents}.uid")

    with pytest.raises(SchemaError, match=r"Child.parent_id: .* as Parent declares it"):

        class Parent(Entity, table=parents):
            id: int = Field(primary_key=True)


def test_a_foreign_key_to_a_later_entity_that_has_the_column():
    parents = _table()

    class Child(Entity, table=_table()):
        id: int = Field(primary_key=True)
        parent_id: int = Field(foreign_key=f"{parents}.id")

    class Parent(Entity, table=parents):
        id: int = Field(primary_key=True)

    assert Child.__dbsystem__.by_field["parent_id"].options.foreign_key == f"{parents}.id"


def test_a_relation_to_a_non_entity():
    with pytest.raises(SchemaError, match=r"Bad.owner: the relation's type names no entity"):

        class Bad(Entity, table=_table()):
            id: int = Field(primary_key=True)
            owner_id: int | None = None
            owner: str | None = Relation(local_key="owner_id")


def test_a_relation_whose_local_key_is_not_a_field():
    class Owner(Entity, table=_table()):
        id: int = Field(primary_key=True)

    with pytest.raises(SchemaError, match=r"Bad.owner: Relation\(local_key='owner'\) names no"):

        class Bad(Entity, table=_table()):
            id: int = Field(primary_key=True)
            owner: Owner | None = Relation(local_key="owner")


def test_valid_entities_with_forward_references_still_work(tmp_path):
    authors, books = _table(), _table()

    class Author(Entity, table=authors):
        id: int | None = Field(default=None, primary_key=True, auto_increment=True)
        name: str
        books: list[Book] = Relation(foreign_key="author_id")

    class Book(Entity, table=books):
        id: int | None = Field(default=None, primary_key=True, auto_increment=True)
        title: str
        author_id: int | None = Field(default=None, foreign_key=f"{authors}.id")

    Author.model_rebuild(_types_namespace={"Book": Book})
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/c.db")
    try:
        db.create_tables([Author, Book])
        ada = Author(name="ada").save(db)
        Book(title="notes", author_id=ada.id).save(db)
        (found,) = Author.query(db).include("books").all()
        assert [b.title for b in found.books] == ["notes"]
        (same,) = Author.query(db).include(Author.books).all()  # the class attribute
        assert [b.title for b in same.books] == ["notes"]
        with pytest.raises(InterfaceError, match="has no relation"):
            Author.query(db).include(Author.name)  # a column, not a relation
    finally:
        db.close_all()
