"""``extract(field, expr)``: the same integers on SQLite, PostgreSQL and MySQL (issue 21).

Before, there was no portable date part, and ``func.extract("year", col("d"))`` bound the
field name as a parameter: PostgreSQL and MySQL refused the SQL, SQLite raised SQLAlchemy's
own ``CompileError`` outside the dbsystem error tree.
"""

from __future__ import annotations

import datetime
import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig, QueryBuildError
from dbsystem.query import col, count, extract, func, select
from dbsystem.query import expr as e
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

STAMP_TYPE = {"sqlite": "TIMESTAMP", "postgres": "TIMESTAMP(6)", "mysql": "DATETIME(6)"}
STAMPS = {
    1: datetime.datetime(2024, 2, 29, 13, 45, 59, 987654),  # leap day, a Thursday
    2: datetime.datetime(2023, 12, 31, 0, 0, 0),  # a Sunday, day 365
    3: datetime.datetime(2025, 1, 4, 23, 59, 1),  # a Saturday
    4: datetime.datetime(1969, 12, 31, 23, 59, 59, 500000),  # before the epoch
    5: None,
}
EPOCH = datetime.datetime(1970, 1, 1)


def expected(field: str, stamp: datetime.datetime | None) -> int | None:
    if stamp is None:
        return None
    if field == "dow":
        return stamp.isoweekday() % 7
    if field == "doy":
        return stamp.timetuple().tm_yday
    if field == "epoch":
        return int((stamp - EPOCH).total_seconds() // 1)
    return int(getattr(stamp, field))


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


@pytest.mark.parametrize("field", e.DATE_PARTS)
def test_every_field_gives_the_same_integers(db, field):
    rows = (
        db.query()
        .select("id", extract(field, "at").as_("part"))
        .from_(db.table)
        .order_by("id")
        .all()
    )
    assert {r["id"]: r["part"] for r in rows} == {i: expected(field, s) for i, s in STAMPS.items()}
    assert all(type(r["part"]) is int for r in rows if r["part"] is not None)


@pytest.mark.parametrize("field", ["year", "month", "day", "hour", "dow", "doy", "epoch"])
def test_a_date_column_reads_as_midnight(db, field):
    rows = db.query().select("id", extract(field, "day").as_("part")).from_(db.table).all()
    got = {r["id"]: r["part"] for r in rows}
    midnight = {
        i: datetime.datetime.combine(s.date(), datetime.time()) if s else None
        for i, s in STAMPS.items()
    }
    assert got == {i: expected(field, s) for i, s in midnight.items()}


def test_func_extract_is_extract_and_filters_and_groups(db):
    year = func.extract("year", col("at"))
    rows = (
        db.query()
        .select(year.as_("y"), count().as_("n"))
        .from_(db.table)
        .where(year >= 2024)
        .group_by(year)
        .order_by("y")
        .all()
    )
    assert rows == [{"y": 2024, "n": 1}, {"y": 2025, "n": 1}]


def test_unknown_field_is_refused():
    with pytest.raises(QueryBuildError, match="extract: field must be one of"):
        extract("week", "at")
    with pytest.raises(QueryBuildError, match="extract: field must be one of"):
        func.extract(col("f"), col("at"))


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
def test_sqlalchemy_errors_become_query_build_errors(dialect):
    # A function node SQLAlchemy cannot compile, and SQLAlchemy functions with their own
    # constructors given the wrong arguments: QueryBuildError, never SQLAlchemy's errors.
    raw_extract = e.Func("extract", [e.coerce("year"), col("at")])
    if dialect == "sqlite":
        with pytest.raises(QueryBuildError, match="cannot compile SelectQuery for sqlite"):
            select(raw_extract).from_("t").build(dialect=dialect)
    with pytest.raises(QueryBuildError, match=r"func.cast\(\)"):
        select(func.cast(col("at"))).from_("t").build(dialect=dialect)
    with pytest.raises(QueryBuildError, match=r"func.next_value\(\)"):
        select(func.next_value(col("at"))).from_("t").build(dialect=dialect)


@pytest.fixture
def mongo():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.MONGODB, PoolConfig(url="mongodb+mock://"))
    stamps = manager.query(DatabaseType.MONGODB).collection(f"stamps_{uuid.uuid4().hex[:8]}")
    documents = [{"id": i, "at": s} for i, s in STAMPS.items() if s is not None]
    stamps.insert_many([*documents, {"id": 5, "at": None}, {"id": 6}]).execute()
    yield stamps
    manager.close_all()


@pytest.mark.parametrize("field", e.DATE_PARTS)
def test_mongodb_aggregation_gives_the_same_integers(mongo, field):
    rows = mongo.aggregate().project(_id=0, id=1, part=extract(field, "at")).execute()
    want = {i: expected(field, s) for i, s in STAMPS.items()}
    assert {r["id"]: r["part"] for r in rows} == {**want, 6: None}


def test_mongodb_filters_and_groups_on_a_date_part(mongo):
    found = mongo.where(extract("year", "at") >= 2024).project("id").all()
    assert sorted(r["id"] for r in found) == [1, 3]
    found = mongo.where(~(extract("dow", "at") == 0)).project("id").all()
    assert sorted(r["id"] for r in found) == [1, 3, 4]  # no null or missing date
    groups = mongo.aggregate().group(extract("year", "at"), n={"$sum": 1}).execute()
    assert {g["_id"]: g["n"] for g in groups} == {2024: 1, 2023: 1, 2025: 1, 1969: 1, None: 2}
