"""The ORM on every backend: SQLite, PostgreSQL, MySQL and MongoDB (mongomock)."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pydantic
import pytest

from dbsystem import (
    ConflictError,
    DatabaseManager,
    DatabaseType,
    ExecutionHook,
    IntegrityError,
    NotSupportedError,
    PoolConfig,
    SchemaError,
)
from dbsystem.orm import Entity, Field
from tests.backend_params import ENTITY_BACKENDS, ENTITY_TYPES

BACKENDS = ENTITY_BACKENDS
TYPES = ENTITY_TYPES


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Person(Entity, table="orm_people"):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    username: str = Field(max_length=50, index=True)
    email: str = Field(unique=True)
    age: int = Field(default=0, ge=0)
    created_at: datetime.datetime = Field(default_factory=now)
    nickname: str | None = Field(default=None, column="nick")


class Account(Entity, table="orm_accounts"):
    key: str = Field(primary_key=True, max_length=40)
    balance: decimal.Decimal = decimal.Decimal("0")
    active: bool = True
    opened: datetime.date = datetime.date(2024, 1, 1)
    token: uuid.UUID = Field(default_factory=uuid.uuid4)
    settings: dict = Field(default_factory=dict)
    version: int = Field(default=0, version=True)


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    kind = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/orm.db"
    elif kind == "mongo":
        url = "mongodb+mock://orm"
    else:
        url = request.getfixturevalue(f"{kind}_url")
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], PoolConfig(url=url, max_size=3))
    manager.kind = kind  # type: ignore[attr-defined]
    manager.drop_tables([Person, Account])
    manager.create_tables([Person, Account])
    manager.create_tables([Person, Account])  # idempotent
    yield manager
    manager.drop_tables([Person, Account])
    manager.close_all()


def test_save_fills_the_key_and_get_reads_it_back(db):
    ada = Person(username="ada", email="ada@example.com", age=36, nickname="countess")
    assert ada.save(db) is ada and ada.id is not None
    bob = Person(username="bob", email="bob@example.com").save(db)
    assert bob.id != ada.id
    again = Person.get(db, ada.id)
    assert again.model_dump(exclude={"created_at"}) == ada.model_dump(exclude={"created_at"})
    # MongoDB keeps milliseconds; the SQL backends keep microseconds.
    assert abs(again.created_at - ada.created_at) < datetime.timedelta(milliseconds=1)
    assert again.nickname == "countess"
    assert Person.get(db, 10_000) is None


def test_query_with_the_filter_language(db):
    for name, age in [("ada", 36), ("bob", 12), ("cy", 50), ("dee", 19)]:
        Person(username=name, email=f"{name}@x", age=age).save(db)
    adults = Person.query(db).where(Person.age > 18).order_by("username").all()
    assert [p.username for p in adults] == ["ada", "cy", "dee"]
    page = Person.query(db).where(Person.age >= 12).order_by(Person.age, "desc").offset(1).limit(2)
    assert [p.username for p in page.all()] == ["ada", "dee"]
    assert Person.query(db).where(Person.username.like("d%") | (Person.age < 13)).count() == 2
    assert Person.query(db).where(Person.nickname.is_null()).count() == 4


def test_update_sends_only_changed_fields(db):
    class Seen(ExecutionHook):
        statements: list = []

        def after_execute(self, statement) -> None:
            self.statements.append(statement)

    ada = Person(username="ada", email="ada@x", age=36).save(db)
    seen = db.add_hook(Seen())
    ada.save(db)  # nothing changed: no statement
    assert seen.statements == []
    ada.age = 37
    ada.save(db)
    (statement,) = seen.statements
    assert statement.action == "update"
    assert "username" not in statement.text and "age" in statement.text
    assert Person.get(db, ada.id).age == 37


def test_validation_on_construction_and_assignment(db):
    with pytest.raises(pydantic.ValidationError):
        Person(username="x" * 51, email="a@x")
    person = Person(username="ok", email="ok@x")
    with pytest.raises(pydantic.ValidationError):
        person.age = -1
    with pytest.raises(pydantic.ValidationError):
        Person(username="ok", email="ok@x", age="not a number")


def test_unique_violation_is_an_integrity_error(db):
    Person(username="a", email="same@x").save(db)
    with pytest.raises(IntegrityError):
        Person(username="b", email="same@x").save(db)


def test_delete_and_refresh(db):
    ada = Person(username="ada", email="ada@x").save(db)
    copy = Person.get(db, ada.id)
    copy.age = 99
    copy.save(db)
    assert ada.refresh(db).age == 99
    ada.delete(db)
    assert Person.get(db, ada.id) is None


def test_optimistic_locking(db):
    Account(key="acc-1", balance=decimal.Decimal("10.5")).save(db)
    first = Account.get(db, "acc-1")
    second = Account.get(db, "acc-1")
    first.balance += 5
    first.save(db)
    assert first.version == 1
    second.balance -= 5
    with pytest.raises(ConflictError):
        second.save(db)
    assert Account.get(db, "acc-1").balance == decimal.Decimal("15.5")


def test_types_round_trip_through_the_orm_on_every_backend(db):
    token = uuid.uuid4()
    opened = datetime.date(2023, 12, 31)
    Account(
        key="typed",
        balance=decimal.Decimal("1234.567891"),
        active=False,
        opened=opened,
        token=token,
        settings={"a": [1, 2], "b": None},
    ).save(db)
    back = Account.get(db, "typed")
    assert back.balance == decimal.Decimal("1234.567891")
    assert back.active is False and back.opened == opened and back.token == token
    assert back.settings == {"a": [1, 2], "b": None}
    stamp = datetime.datetime(2024, 2, 29, 13, 14, 15, 123000, tzinfo=datetime.UTC)
    person = Person(username="t", email="t@x", created_at=stamp).save(db)
    assert Person.get(db, person.id).created_at == stamp


def test_save_all_bulk_inserts(db):
    people = [Person(id=i, username=f"u{i}", email=f"u{i}@x", age=i) for i in range(1, 101)]
    Person.save_all(db, people)
    assert Person.query(db).count() == 100
    assert Person.query(db).where(Person.age.between(10, 19)).count() == 10


def test_a_transaction_spans_orm_calls(db):
    if db.kind == "mongo":  # mongomock has no transactions, and says so
        with pytest.raises(NotSupportedError), db.connection(DatabaseType.MONGODB).transaction():
            pass
        return
    with pytest.raises(RuntimeError), db.transaction():
        Person(username="ghost", email="ghost@x").save(db)
        assert Person.query(db).count() == 1  # visible inside the transaction
        raise RuntimeError("roll back")
    assert Person.query(db).count() == 0
    with db.transaction():
        Person(username="kept", email="kept@x").save(db)
    assert Person.query(db).count() == 1


def test_entity_declarations_are_checked():
    with pytest.raises(SchemaError, match="exactly one"):

        class NoKey(Entity, table="nokey"):
            name: str

    with pytest.raises(Exception, match="invalid"):

        class BadTable(Entity, table="bad; drop"):
            id: int = Field(primary_key=True)
