"""GROUP BY / ORDER BY an expression holding a value, on every SQL backend (issue 21).

Before, each occurrence of ``func.substring(col("phone"), 1, 2)`` had its own parameters, so
PostgreSQL saw ``substring(phone, $1, $2)`` in the select list and ``substring(phone, $3,
$4)`` in GROUP BY: two expressions, and the query was refused.
"""

from __future__ import annotations

import uuid

import pytest

from dbsystem import DatabaseManager, PoolConfig
from dbsystem.query import col, count, func, select
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

PHONES = ["+44 20 1", "+44 161 2", "+33 1 3", "+1 212 4", None]


@pytest.fixture(params=SQL_BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = (
        f"sqlite:///{tmp_path}/g.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_url")
    )
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES[kind], PoolConfig(url=url, max_size=2))
    table = f"phones_{uuid.uuid4().hex[:8]}"
    manager.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, phone VARCHAR(20))")
    manager.insert_many(table, [{"id": i, "phone": p} for i, p in enumerate(PHONES)])
    manager.table = table  # type: ignore[attr-defined]
    yield manager
    manager.execute(f"DROP TABLE IF EXISTS {table}")
    manager.close_all()


def prefix(length: int = 3):
    return func.substring(col("phone"), 1, length)


def test_group_by_the_selected_expression(db):
    rows = (
        db.query()
        .select(prefix().as_("cc"), count().as_("n"))
        .from_(db.table)
        .where(col("id") >= 0)
        .group_by(prefix())
        .order_by(prefix())
        .limit(10)
        .all()
    )
    assert rows == [
        {"cc": None, "n": 1},
        {"cc": "+1 ", "n": 1},
        {"cc": "+33", "n": 1},
        {"cc": "+44", "n": 2},
    ]


def test_the_same_expression_selected_twice_and_grouped_twice(db):
    """Each GROUP BY item takes its own select item: both occurrences in the select list
    are then grouped, with their own parameters (found by the differential fuzzer)."""
    rows = (
        db.query()
        .select(prefix().as_("a"), prefix().as_("b"), count().as_("n"))
        .from_(db.table)
        .group_by(prefix(), prefix())
        .order_by("n")
        .order_by("a")
        .all()
    )
    assert rows == [
        {"a": None, "b": None, "n": 1},
        {"a": "+1 ", "b": "+1 ", "n": 1},
        {"a": "+33", "b": "+33", "n": 1},
        {"a": "+44", "b": "+44", "n": 2},
    ]


def test_having_an_expression_with_values(db):
    """HAVING on the grouped expression takes its parameters too (issue 21); a different
    value in HAVING is another expression, and compiles to other SQL."""
    query = (
        db.query()
        .select(prefix().as_("cc"), count().as_("n"))
        .from_(db.table)
        .group_by(prefix())
        .having(prefix().is_not_null() & (prefix() != "+1 "))
        .order_by("cc")
    )
    assert query.all() == [{"cc": "+33", "n": 1}, {"cc": "+44", "n": 2}]
    other = (
        db.query()
        .select(prefix().as_("cc"))
        .from_(db.table)
        .group_by(prefix())
        .having(prefix(2).is_not_null())
    )
    assert other.build()[0] != query.build()[0]
    assert other.shape() != query.shape()


def test_group_by_a_different_value_is_a_different_expression(db):
    # The same shape with other values must not reuse the select item's parameters.
    query = db.query().select(prefix(3).as_("cc")).from_(db.table).group_by(prefix(2))
    sql, params = query.build()
    assert sorted(params.values()) == [1, 1, 2, 3]
    same, _ = db.query().select(prefix(3).as_("cc")).from_(db.table).group_by(prefix(3)).build()
    assert same != sql


def test_order_by_the_selected_expression_without_group(db):
    rows = (
        db.query()
        .select("id", prefix(2).as_("p"))
        .from_(db.table)
        .where(col("phone").is_not_null())
        .order_by(prefix(2), "desc")
        .order_by("id")
        .all()
    )
    assert [r["id"] for r in rows] == [0, 1, 2, 3]


def test_unbound_builder_counts_each_parameter_once():
    sql, params = (
        select(prefix().as_("cc"), count())
        .from_("t")
        .group_by(prefix())
        .build(dialect="postgresql")
    )
    assert sql.count(":p0") == 2 and params == {"p0": 1, "p1": 3}
