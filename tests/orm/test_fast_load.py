"""Entities built from trusted rows without validating each (``dbsystem.orm._loader``).

What the fast path gives must equal what pydantic's validation gave; what it cannot vouch
for (another type, a validator) must still go through validation.
"""

from __future__ import annotations

import datetime
import decimal
import uuid

import pydantic
import pytest

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.orm import Entity, Field

STAMP = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)


class Plain(Entity, table="fast_plain"):
    id: int = Field(primary_key=True)
    name: str = Field(max_length=20)
    score: float = 0.0
    active: bool = True
    born: datetime.date = datetime.date(2000, 1, 2)
    created: datetime.datetime = STAMP
    alarm: datetime.time = datetime.time(6, 30)
    token: uuid.UUID = uuid.UUID(int=7)
    price: decimal.Decimal = decimal.Decimal("1.50")
    note: str | None = None
    count: int = Field(default=0, ge=0)


class Shouting(Entity, table="fast_shouting"):
    id: int = Field(primary_key=True)
    name: str

    @pydantic.field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    manager = DatabaseManager()
    if request.param == "sqlite":
        manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/fast.db")
    else:
        manager.create_pool(DatabaseType.POSTGRES, request.getfixturevalue("postgres_url"))
    manager.drop_tables([Plain, Shouting])
    manager.create_tables([Plain, Shouting])
    yield manager
    manager.drop_tables([Plain, Shouting])
    manager.close_all()


def _saved() -> list[Plain]:
    return [
        Plain(id=1, name="ada"),
        Plain(id=2, name="bob", score=2.5, active=False, note="hi", count=3),
        Plain(id=3, name="cy", created=STAMP.replace(microsecond=0), active=True),
    ]


def test_loaded_entities_equal_the_validated_ones(db):
    Plain.save_all(db, _saved())
    rows = db.query().select("*").from_("fast_plain").order_by("id").execute()
    loaded = Plain.query(db).order_by("id").all()
    validated = [Plain.model_validate(row) for row in rows]
    assert [e.model_dump() for e in loaded] == [e.model_dump() for e in validated]
    assert [e.model_dump() for e in loaded] == [e.model_dump() for e in _saved()]


def test_the_fast_path_is_taken_for_plain_entities(db):
    Plain.save_all(db, _saved())
    Plain.query(db).all()
    assert any(load is not None for load in Plain.__dbsystem__.loaders.values())


def test_types_come_back_as_declared(db):
    Plain(id=1, name="ada").save(db)
    (found,) = Plain.query(db).all()
    assert type(found.created) is datetime.datetime
    assert found.created == STAMP
    assert type(found.active) is bool
    assert type(found.born) is datetime.date
    assert type(found.alarm) is datetime.time
    assert type(found.token) is uuid.UUID
    assert found.price == decimal.Decimal("1.50")


def test_loaded_entities_track_changes_and_validate_assignment(db):
    Plain.save_all(db, _saved())
    found = Plain.get(db, 2)
    assert found is not None
    assert found.is_persisted
    assert found.model_fields_set == set()
    found.name = "bobby"
    assert found.model_fields_set == {"name"}
    with pytest.raises(pydantic.ValidationError):
        found.count = -1
    found.save(db)
    again = Plain.get(db, 2)
    assert again is not None
    assert again.name == "bobby"


def test_a_validator_still_runs_on_load(db):
    db.execute("INSERT INTO fast_shouting (id, name) VALUES (1, 'quiet')")
    (found,) = Shouting.query(db).all()
    assert found.name == "QUIET"
    assert all(load is None for load in Shouting.__dbsystem__.loaders.values())


@pytest.fixture
def sqlite_db(tmp_path):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/fast.db")
    manager.create_tables([Plain])
    yield manager
    manager.close_all()


def test_a_value_of_another_type_is_validated(sqlite_db):
    # Only SQLite stores a value of another type than its column's.
    db = sqlite_db
    db.execute(
        "INSERT INTO fast_plain (id, name, score, active, born, created, alarm, token, price,"
        " note, count) VALUES (1, 'ada', 1.0, 1, '2000-01-02', '2024-05-06 07:08:09+00:00',"
        " '06:30:00', :token, '1.50', NULL, '42')",
        {"token": str(uuid.UUID(int=7))},
    )
    (found,) = Plain.query(db).all()
    assert found.count == 42  # text '42': pydantic's lax conversion, as before
    db.execute("UPDATE fast_plain SET count = 'many'")
    with pytest.raises(pydantic.ValidationError):
        Plain.query(db).all()
    db.execute("UPDATE fast_plain SET count = 1, created = 'yesterday'")
    with pytest.raises(pydantic.ValidationError):
        Plain.query(db).all()
