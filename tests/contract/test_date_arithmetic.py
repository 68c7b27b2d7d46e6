"""``date_trunc(unit, expr)`` and ``expr +/- interval(...)``: the same timestamps on SQLite,
PostgreSQL and MySQL, and ``date_trunc`` in MongoDB aggregation (issue 21)."""

from __future__ import annotations

import calendar
import datetime
import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig, QueryBuildError
from dbsystem.query import col, date_trunc, extract, interval, literal, select
from dbsystem.query import expr as e
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

STAMP_TYPE = {"sqlite": "TIMESTAMP", "postgres": "TIMESTAMP", "mysql": "DATETIME"}
STAMPS = {
    1: datetime.datetime(2024, 2, 29, 13, 45, 59),  # leap day
    2: datetime.datetime(2024, 1, 31, 0, 0, 0),  # a month's last day
    3: datetime.datetime(2023, 12, 31, 23, 59, 1),
    4: datetime.datetime(1969, 7, 20, 20, 17, 40),  # before the epoch
    5: None,
}


def truncated(unit: str, stamp: datetime.datetime) -> datetime.datetime:
    keep = e.TRUNC_UNITS.index(unit) + 1
    parts = [stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second]
    defaults = [1, 1, 1, 0, 0, 0]
    return datetime.datetime(*(parts[:keep] + defaults[keep:]))  # type: ignore[misc]


def shifted(stamp: datetime.datetime, months: int, seconds: int) -> datetime.datetime:
    index = stamp.year * 12 + stamp.month - 1 + months
    year, month = divmod(index, 12)
    day = min(stamp.day, calendar.monthrange(year, month + 1)[1])
    moved = stamp.replace(year=year, month=month + 1, day=day)
    return moved + datetime.timedelta(seconds=seconds)


def as_stamp(value: object) -> object:
    """SQLite answers with text: read it back as the timestamp it spells."""
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    return value


@pytest.fixture(params=SQL_BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = (
        f"sqlite:///{tmp_path}/d.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_url")
    )
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES[kind], PoolConfig(url=url, max_size=2))
    table = f"stamps_{uuid.uuid4().hex[:8]}"
    manager.execute(
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, at {STAMP_TYPE[kind]}, day DATE)"
    )
    manager.insert_many(
        table,
        [{"id": i, "at": s, "day": s.date() if s else None} for i, s in STAMPS.items()],
    )
    manager.table = table  # type: ignore[attr-defined]
    yield manager
    manager.execute(f"DROP TABLE IF EXISTS {table}")
    manager.close_all()


def _column(db, expression) -> dict[int, object]:
    rows = db.query().select("id", expression.as_("v")).from_(db.table).all()
    return {r["id"]: as_stamp(r["v"]) for r in rows}


@pytest.mark.parametrize("unit", e.TRUNC_UNITS)
def test_date_trunc_gives_the_same_timestamps(db, unit):
    want = {i: truncated(unit, s) if s else None for i, s in STAMPS.items()}
    assert _column(db, date_trunc(unit, "at")) == want


def test_date_trunc_of_a_date_is_a_timestamp_at_midnight(db):
    want = {i: datetime.datetime(s.year, s.month, 1) if s else None for i, s in STAMPS.items()}
    assert _column(db, date_trunc("month", col("day"))) == want


SPANS = [
    {"days": 3},
    {"months": 1},  # 01-31 + 1 month: the month's last day, as PostgreSQL and MySQL
    {"years": 1},  # 2024-02-29 + 1 year: 2025-02-28
    {"years": 1, "months": 1, "days": 1, "hours": 2, "minutes": 3, "seconds": 4},
    {"months": -14, "seconds": 30},
    {"hours": -30},
]


@pytest.mark.parametrize("span", SPANS, ids=[str(s) for s in SPANS])
def test_adding_and_subtracting_an_interval(db, span):
    months = span.get("years", 0) * 12 + span.get("months", 0)
    seconds = (
        (span.get("days", 0) * 24 + span.get("hours", 0)) * 60 + span.get("minutes", 0)
    ) * 60 + span.get("seconds", 0)
    later = {i: shifted(s, months, seconds) if s else None for i, s in STAMPS.items()}
    earlier = {i: shifted(s, -months, -seconds) if s else None for i, s in STAMPS.items()}
    assert _column(db, col("at") + interval(**span)) == later
    assert _column(db, col("at") - interval(**span)) == earlier
    assert _column(db, interval(**span) + col("at")) == later


def test_intervals_filter_and_compose_with_date_parts(db):
    q = db.query()
    due = col("at") + interval(days=1)
    found = q.select("id").from_(db.table).where(due > datetime.datetime(2024, 3, 1)).all()
    assert [r["id"] for r in found] == [1]
    day = q.select(extract("day", col("day") + interval(months=1)).as_("d")).from_(db.table)
    assert day.where(col("id") == 2).scalar_value() == 29  # 2024-01-31 + 1 month
    start = literal(datetime.datetime(2024, 1, 31)) + interval(months=1)
    assert as_stamp(q.select(start.as_("s")).scalar_value()) == datetime.datetime(2024, 2, 29)


def test_what_is_not_an_interval_is_refused():
    with pytest.raises(QueryBuildError, match="whole number"):
        interval(days=1.5)  # type: ignore[arg-type]
    with pytest.raises(QueryBuildError, match="unit must be one of"):
        date_trunc("week", "at")
    with pytest.raises(QueryBuildError, match="not x"):
        interval(days=1) - col("at")
    with pytest.raises(QueryBuildError, match="added to or subtracted from"):
        select((interval(days=1) * 2).as_("x")).build(dialect="postgresql")


@pytest.fixture
def mongo():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.MONGODB, PoolConfig(url="mongodb+mock://"))
    stamps = manager.query(DatabaseType.MONGODB).collection(f"stamps_{uuid.uuid4().hex[:8]}")
    documents = [{"id": i, "at": s} for i, s in STAMPS.items() if s is not None]
    stamps.insert_many([*documents, {"id": 5, "at": None}, {"id": 6}]).execute()
    yield stamps
    manager.close_all()


@pytest.mark.parametrize("unit", e.TRUNC_UNITS)
def test_mongodb_date_trunc_gives_the_same_timestamps(mongo, unit):
    rows = mongo.aggregate().project(_id=0, id=1, v=date_trunc(unit, "at")).execute()
    want = {i: truncated(unit, s) if s else None for i, s in STAMPS.items()}
    assert {r["id"]: r["v"] for r in rows} == {**want, 6: None}


def test_mongodb_refuses_interval_arithmetic_clearly(mongo):
    with pytest.raises(QueryBuildError, match="no MongoDB aggregation form"):
        mongo.aggregate().project(v=col("at") + interval(days=1)).execute()


def test_a_long_list_after_a_timestamp_expression(db):
    """More than 32 values bind as one list; after a typed expression PostgreSQL's bind
    cast (``::TIMESTAMP``) was appended to ``= ANY(...)`` and the query refused (found by
    the differential fuzzer)."""
    wanted = [datetime.datetime(2024, 3, 1, 13, 45, 59)]
    wanted += [datetime.datetime(2000, 1, 1, 0, 0, n) for n in range(40)]
    moved = col("at") + interval(days=1)
    q = db.query().select("id").from_(db.table).order_by("id")
    assert [r["id"] for r in q.where(moved.in_(wanted)).all()] == [1]
    assert [r["id"] for r in q.where(moved.not_in(wanted)).all()] == [2, 3, 4]
