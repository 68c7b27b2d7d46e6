"""A list or tuple after ``IN`` works the same on every SQL backend (issue 21).

Before: SQLite bound ``[1, 2]`` as the text ``'[1,2]'`` (``IN`` found nothing, ``NOT IN``
everything), PostgreSQL and MySQL failed. Now ``IN (:ids)`` and ``IN :ids`` take a list, an
empty list answers as an empty set, and a list compared as one value is refused.
"""

from __future__ import annotations

import time
import uuid

import pytest

from dbsystem import DatabaseManager, InterfaceError, PoolConfig
from dbsystem.backends._params import expand_lists
from dbsystem.query import col
from tests.backend_params import SQL_BACKENDS, SQL_TYPES


@pytest.fixture(params=SQL_BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = (
        f"sqlite:///{tmp_path}/lists.db"
        if kind == "sqlite"
        else request.getfixturevalue(f"{kind}_url")
    )
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES[kind], PoolConfig(url=url, min_size=1, max_size=2))
    yield manager
    manager.close_all()


@pytest.fixture
def table(db):
    name = f"t_{uuid.uuid4().hex[:12]}"
    db.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name VARCHAR(20))")
    db.insert_many(name, [{"id": i, "name": f"n{i}"} for i in (1, 2, 3)])
    yield name
    db.execute(f"DROP TABLE IF EXISTS {name}")


def _ids(db, sql, params):
    return sorted(row["id"] for row in db.fetch_all(sql, params))


@pytest.mark.parametrize("form", ["IN (:ids)", "IN :ids", "in(:ids)"])
@pytest.mark.parametrize("value", [[1, 3], (1, 3)], ids=["list", "tuple"])
def test_in_takes_a_list_or_tuple(db, table, form, value):
    assert _ids(db, f"SELECT id FROM {table} WHERE id {form}", {"ids": value}) == [1, 3]
    assert _ids(db, f"SELECT id FROM {table} WHERE id NOT {form}", {"ids": value}) == [2]


def test_text_items_and_other_parameters_beside_the_list(db, table):
    sql = f"SELECT id FROM {table} WHERE name IN (:names) AND id > :low"
    assert _ids(db, sql, {"names": ["n1", "n2", "zz"], "low": 1}) == [2]


def test_empty_list_is_an_empty_set(db, table):
    assert _ids(db, f"SELECT id FROM {table} WHERE id IN (:ids)", {"ids": []}) == []
    assert _ids(db, f"SELECT id FROM {table} WHERE id IN :ids", {"ids": ()}) == []
    assert _ids(db, f"SELECT id FROM {table} WHERE id NOT IN (:ids)", {"ids": []}) == [1, 2, 3]


def test_list_in_a_literal_or_comment_is_left_alone(db, table):
    sql = f"SELECT id, ':ids' AS s FROM {table} WHERE id IN (:ids) -- or IN :ids\n"
    rows = db.fetch_all(sql, {"ids": [2]})
    assert rows == [{"id": 2, "s": ":ids"}]


def test_the_same_list_used_twice_and_in_a_transaction(db, table):
    with db.connection() as conn, conn.transaction():
        sql = f"SELECT id FROM {table} WHERE id IN (:ids) AND id NOT IN (:ids)"
        assert conn.fetch_all(sql, {"ids": [1]}) == []
        count = conn.execute(f"DELETE FROM {table} WHERE id IN :ids", {"ids": [1, 2]})
        assert count == 2


@pytest.mark.parametrize(
    "where",
    ["id = :ids", "id <> :ids", "name LIKE :ids", "id BETWEEN :ids AND 3", "id IN (:ids, 2)"],
)
def test_a_list_compared_as_one_value_is_refused(db, table, where):
    with pytest.raises(InterfaceError, match=r"parameter :ids is a list"):
        db.fetch_all(f"SELECT id FROM {table} WHERE {where}", {"ids": [1, 2]})


def test_a_stream_expands_too(db, table):
    with db.connection() as conn:
        rows = list(conn.stream(f"SELECT id FROM {table} WHERE id IN (:ids)", {"ids": [3]}))
    assert rows == [{"id": 3}]


def test_expansion_is_linear_for_100000_items(tmp_path):
    """100,000 items: expanded (MySQL) in well under a second; on SQLite bound as one JSON
    array (100,000 named placeholders cost SQLite's parser about 45 s) and answered in well
    under a second."""
    items = list(range(100_000))
    started = time.perf_counter()
    sql, params = expand_lists("SELECT 1 WHERE x IN (:ids)", {"ids": items}, "mysql")
    elapsed = time.perf_counter() - started
    assert len(params) == 100_001 and sql.count(":ids_") == 100_000
    assert elapsed < 1.0
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES["sqlite"], PoolConfig(url=f"sqlite:///{tmp_path}/big.db"))
    try:
        manager.execute("CREATE TABLE big (id INTEGER PRIMARY KEY)")
        manager.insert_many("big", [{"id": i} for i in range(0, 200_000, 2)])
        started = time.perf_counter()
        found = manager.fetch_value("SELECT count(*) FROM big WHERE id IN (:ids)", {"ids": items})
        assert found == 50_000
        assert time.perf_counter() - started < 2.0
        many = [f"n{i}" for i in range(300)] + [None]
        manager.execute("CREATE TABLE names (name TEXT)")
        manager.insert_many("names", [{"name": "n7"}, {"name": "x"}, {"name": None}])
        assert manager.fetch_all("SELECT name FROM names WHERE name IN (:n)", {"n": many}) == [
            {"name": "n7"}
        ]
        assert manager.fetch_all("SELECT name FROM names WHERE name NOT IN :n", {"n": many}) == []
        fewer = many[:-1]
        assert manager.fetch_all("SELECT name FROM names WHERE name NOT IN :n", {"n": fewer}) == [
            {"name": "x"}
        ]
    finally:
        manager.close_all()


def test_postgres_binds_one_array_whatever_the_length():
    sql, params = expand_lists("SELECT 1 WHERE x NOT IN (:ids)", {"ids": (1, 2)}, "postgresql")
    assert (sql, params) == ("SELECT 1 WHERE x <> ALL(:ids)", {"ids": [1, 2]})


@pytest.mark.postgres
def test_postgres_takes_more_than_65535_items(postgres_url):
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES["postgres"], PoolConfig(url=postgres_url))
    try:
        found = manager.fetch_value(
            "SELECT count(*) FROM generate_series(1, 100) AS g(x) WHERE x IN (:ids)",
            {"ids": list(range(70_000))},
        )
        assert found == 100
    finally:
        manager.close_all()


def test_lists_elsewhere_are_bound_as_before(tmp_path):
    """``VALUES (:v)`` and ``SET a = :v`` keep the driver's binding (JSON text on SQLite)."""
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES["sqlite"], PoolConfig(url=f"sqlite:///{tmp_path}/j.db"))
    try:
        manager.execute("CREATE TABLE j (id INTEGER, doc TEXT)")
        manager.execute("INSERT INTO j VALUES (1, :doc)", {"doc": [1, 2]})
        manager.execute("UPDATE j SET doc = :doc WHERE id IN (:ids)", {"doc": [3], "ids": [1]})
        assert manager.fetch_value("SELECT doc FROM j") == "[3]"
    finally:
        manager.close_all()


def test_builder_in_with_100000_values_is_one_parameter(db, table):
    """``col("id").in_(ids)`` stays bound for long lists: one list parameter, expanded by the
    connection (or one array on PostgreSQL), the shape the same for every length."""
    ids = list(range(100_000))
    query = db.query().select("id").from_(table).where(col("id").in_(ids))
    started = time.perf_counter()
    assert sorted(r["id"] for r in query.all()) == [1, 2, 3]
    assert time.perf_counter() - started < 5.0
    other = db.query().select("id").from_(table).where(col("id").in_(ids[:50]))
    assert query.shape() == other.shape()
    excluded = db.query().select("id").from_(table).where(col("id").not_in([*range(2, 60)]))
    assert [r["id"] for r in excluded.all()] == [1]
    with_null = db.query().select("id").from_(table).where(col("id").not_in([None, *ids[:40]]))
    assert with_null.all() == []  # NOT IN a list holding NULL is never TRUE
    assert len(db.query().select("id").from_(table).where(col("id").in_([None] * 40)).all()) == 0


def test_expanded_statements_do_not_fill_the_rewrite_cache(db, table):
    from dbsystem.backends._params import to_pyformat

    before = to_pyformat.cache_info().currsize
    for length in range(1, 40):
        db.fetch_all(f"SELECT id FROM {table} WHERE id IN (:ids)", {"ids": list(range(length))})
    assert to_pyformat.cache_info().currsize - before <= 2  # PostgreSQL: one text (= ANY)
