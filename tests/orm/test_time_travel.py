"""Time travel: versioned entities keep every version; as_of, history and restore."""

from __future__ import annotations

import datetime
import time

import pytest

from dbsystem import DatabaseManager, InterfaceError, PoolConfig
from dbsystem.orm import Entity, Field
from tests.backend_params import ENTITY_BACKENDS, ENTITY_TYPES

BACKENDS = ENTITY_BACKENDS
TYPES = ENTITY_TYPES


class Price(Entity, table="tt_prices", versioned=True):
    sku: str = Field(primary_key=True, max_length=20)
    amount: int
    note: str | None = None


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = {"sqlite": f"sqlite:///{tmp_path}/tt.db", "mongo": "mongodb+mock://tt"}.get(kind)
    if url is None:
        url = request.getfixturevalue(f"{kind}_url")
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], PoolConfig(url=url, max_size=2))
    manager.kind = kind  # type: ignore[attr-defined]
    manager.drop_tables([Price])
    manager.create_tables([Price])
    yield manager
    manager.drop_tables([Price])
    manager.close_all()


def tick() -> datetime.datetime:
    # A moment strictly between two writes (MongoDB keeps milliseconds).
    time.sleep(0.005)
    moment = datetime.datetime.now(datetime.UTC)
    time.sleep(0.005)
    return moment


def test_as_of_history_and_restore(db):
    price = Price(sku="A1", amount=100).save(db)
    Price(sku="B2", amount=5).save(db)
    t1 = tick()
    price.amount = 120
    price.save(db)
    t2 = tick()
    price.amount = 150
    price.note = "sale over"
    price.save(db)
    t3 = tick()
    price.delete(db)

    assert Price.get(db, "A1") is None
    assert [p.amount for p in Price.query(db).as_of(t1).order_by("sku").all()] == [100, 5]
    assert Price.query(db).as_of(t2).where(Price.sku == "A1").first().amount == 120
    at_t3 = Price.query(db).as_of(t3).where(Price.sku == "A1").first()
    assert (at_t3.amount, at_t3.note) == (150, "sale over")
    assert Price.query(db).where(Price.sku == "A1").count() == 0

    versions = Price.history(db, "A1")
    assert [v[0].amount for v in versions] == [100, 120, 150]
    assert all(v[2] is not None for v in versions)  # deleted: no current version
    assert versions[0][1] < versions[0][2] <= versions[1][1]

    restored = Price.restore(db, "A1", as_of=t2)
    assert restored.amount == 120 and Price.get(db, "A1").amount == 120
    with pytest.raises(InterfaceError, match="nothing to restore"):
        Price.restore(db, "A1")
    assert [v[0].amount for v in Price.history(db, "A1")][-1] == 120


def test_as_of_in_another_time_zone_is_the_same_instant(db):
    """A moment written with a non-UTC offset: SQLite compared the stamps as text, and
    12:00+02:00 sorted after 11:00+00:00, so as_of found nothing (issue 21)."""
    price = Price(sku="Z9", amount=1).save(db)
    moment = tick()
    price.amount = 2
    price.save(db)
    elsewhere = moment.astimezone(datetime.timezone(datetime.timedelta(hours=-5)))
    east = moment.astimezone(datetime.timezone(datetime.timedelta(hours=9)))
    assert [p.amount for p in Price.query(db).as_of(elsewhere).all()] == [1]
    assert [p.amount for p in Price.query(db).as_of(east).all()] == [1]
    price.delete(db)
    assert Price.restore(db, "Z9", as_of=east).amount == 1


def test_a_failed_versioned_update_leaves_no_history(db):
    if db.kind == "mongo":
        return  # mongomock has no transactions; archive and update are separate there
    from dbsystem import ConflictError

    class Guarded(Entity, table="tt_prices", versioned=True):
        sku: str = Field(primary_key=True, max_length=20)
        amount: int
        note: str | None = None

    Price(sku="C3", amount=1).save(db)
    stale = Guarded.get(db, "C3")
    fresh = Price.get(db, "C3")
    fresh.delete(db)
    stale.amount = 2
    with pytest.raises(ConflictError):
        stale.save(db)
    assert [v[0].amount for v in Price.history(db, "C3")] == [1]


def test_as_of_needs_a_versioned_entity(db):
    class Plain(Entity, table="tt_plain"):
        id: int = Field(primary_key=True)

    with pytest.raises(InterfaceError, match="versioned"):
        Plain.query(db).as_of(datetime.datetime.now(datetime.UTC))
