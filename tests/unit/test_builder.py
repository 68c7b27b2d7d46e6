"""The SQL builder without a database: golden SQL per dialect, validation, immutability, cache."""

from __future__ import annotations

import threading

import pytest

from dbsystem import NotSupportedError, QueryBuildError
from dbsystem.query import (
    _compile,
    avg,
    col,
    count,
    delete_from,
    func,
    insert_into,
    literal,
    raw_sql,
    select,
    update,
)


def sql(query, dialect):
    text, params = query.build(dialect=dialect)
    return " ".join(text.split()), params


def test_issue_example_compiles_per_dialect():
    q = (
        select("department", count().as_("employee_count"), avg("salary").as_("avg_salary"))
        .from_("users")
        .where("is_active", "=", True)
        .group_by("department")
        .having(count(), ">", 50)
        .order_by("avg_salary", "desc")
        .limit(10)
    )
    assert sql(q, "postgresql") == (
        "SELECT department, count(*) AS employee_count, avg(salary) AS avg_salary FROM users "
        "WHERE is_active = :p0 GROUP BY department HAVING count(*) > :p1::INTEGER "
        "ORDER BY avg_salary DESC NULLS LAST LIMIT :p2",
        {"p0": True, "p1": 50, "p2": 10},
    )
    assert sql(q, "mysql") == (
        "SELECT department, count(*) AS employee_count, avg(salary) AS avg_salary FROM users "
        "WHERE is_active = :p0 GROUP BY department HAVING count(*) > :p1 "
        "ORDER BY avg_salary DESC LIMIT :p2",
        {"p0": True, "p1": 50, "p2": 10},
    )
    text, params = sql(q, "sqlite")
    assert text.endswith("ORDER BY avg_salary DESC LIMIT :p2 OFFSET :param_1")
    assert params == {"p0": True, "p1": 50, "p2": 10, "param_1": 0}


def test_identifiers_are_quoted_by_the_dialect():
    q = select("a.Name").from_("Artist", alias="a").where(col("a.order") == 1)
    assert sql(q, "postgresql")[0] == 'SELECT a."Name" FROM "Artist" AS a WHERE a."order" = :p0'
    assert sql(q, "mysql")[0] == "SELECT a.`Name` FROM `Artist` AS a WHERE a.`order` = :p0"


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_values_are_always_bound_never_pasted(dialect):
    payload = "x' OR '1'='1'; DROP TABLE canary;--"
    q = (
        select("id")
        .from_("users")
        .where("name", "=", payload)
        .where(col("bio").like(payload))
        .where(col("tag").in_([payload, payload]))
    )
    text, params = q.build(dialect=dialect)
    assert "DROP" not in text and "1'='1" not in text
    assert list(params.values()).count(payload) == 4
    many = select("id").from_("users").where(col("tag").in_([payload] * 40))
    text, params = many.build(dialect=dialect)
    assert "DROP" not in text and params == {"p0": [payload] * 40}


@pytest.mark.parametrize(
    "bad",
    [
        "users; DROP TABLE canary--",
        'name" FROM canary;--',
        "a`; DROP TABLE canary;-- ",
        "(SELECT passwd FROM pg_shadow LIMIT 1)",
        "users ",
        "1abc",
        "",
        "a.b.c",
    ],
)
def test_bad_identifiers_are_refused_before_any_sql(bad):
    with pytest.raises(QueryBuildError):
        select(bad)
    with pytest.raises(QueryBuildError):
        select("x").from_(bad)
    with pytest.raises(QueryBuildError):
        select("x").from_("t").order_by(bad)
    with pytest.raises(QueryBuildError):
        insert_into(bad)
    with pytest.raises(QueryBuildError):
        update("t").set({bad: 1})


@pytest.mark.parametrize("bad", [True, -1, 1.5, "10", "1; DROP TABLE x", None])
def test_limit_and_offset_take_non_negative_ints_only(bad):
    with pytest.raises(QueryBuildError):
        select("x").from_("t").limit(bad)
    with pytest.raises(QueryBuildError):
        select("x").from_("t").offset(bad)


@pytest.mark.parametrize("bad", ["up", "DESC; DROP TABLE x", "", None, 1])
def test_sort_direction_is_asc_or_desc(bad):
    with pytest.raises(QueryBuildError):
        select("x").from_("t").order_by("x", bad)


def test_unknown_operator_and_missing_value():
    with pytest.raises(QueryBuildError, match="unknown operator"):
        select("x").from_("t").where("x", "=~", 1)
    with pytest.raises(QueryBuildError, match="needs a value"):
        select("x").from_("t").where("x", "=")
    with pytest.raises(QueryBuildError, match="truth value"):
        bool(col("x") == 1)


def test_update_and_delete_without_where_are_refused_unless_asked():
    with pytest.raises(QueryBuildError, match="all_rows"):
        update("users").set({"active": False}).build(dialect="postgresql")
    with pytest.raises(QueryBuildError, match="all_rows"):
        delete_from("users").build(dialect="sqlite")
    text, _ = update("users").set({"active": False}).all_rows().build(dialect="postgresql")
    assert text == "UPDATE users SET active=:p0"
    assert delete_from("users").all_rows().build(dialect="mysql")[0] == "DELETE FROM users"


def test_returning_is_refused_on_mysql():
    q = insert_into("users").values({"name": "a"}).returning("id")
    assert q.build(dialect="postgresql")[0].endswith("RETURNING id")
    with pytest.raises(NotSupportedError, match="RETURNING"):
        q.build(dialect="mysql")


def test_upsert_per_dialect():
    q = insert_into("users").values({"id": 1, "name": "a"}).upsert(conflict=["id"])
    assert sql(q, "postgresql")[0].endswith("ON CONFLICT (id) DO UPDATE SET name = excluded.name")
    assert sql(q, "sqlite")[0].endswith("ON CONFLICT (id) DO UPDATE SET name = excluded.name")
    assert "ON DUPLICATE KEY UPDATE name = new.name" in sql(q, "mysql")[0] or (
        "ON DUPLICATE KEY UPDATE name = VALUES(name)" in sql(q, "mysql")[0]
    )


def test_builders_are_immutable_and_shareable():
    base = select("id").from_("users")
    active = base.where("active", "=", True)
    assert base.build(dialect="sqlite")[0] != active.build(dialect="sqlite")[0]
    assert "WHERE" not in base.build(dialect="sqlite")[0]
    results = []

    def worker(n: int) -> None:
        results.append(base.where("id", "=", n).build(dialect="postgresql")[1]["p0"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(20))


def test_same_shape_compiles_once():
    def query(n):
        return select("id", "name").from_("cache_probe").where("id", "=", n).limit(5)

    query(0).build(dialect="postgresql")
    calls = []
    original = _compile._compile
    _compile._compile = lambda *a: calls.append(a) or original(*a)
    try:
        for n in range(50):
            text, params = query(n).build(dialect="postgresql")
            assert params["p0"] == n
    finally:
        _compile._compile = original
    assert calls == []


def test_like_is_case_sensitive_everywhere_and_ilike_not():
    assert "GLOB :p0" in sql(select("x").from_("t").where(col("x").like("A_%")), "sqlite")[0]
    assert sql(select("x").from_("t").where(col("x").like("A_%*")), "sqlite")[1] == {"p0": "A?*[*]"}
    assert (
        "COLLATE utf8mb4_bin" in sql(select("x").from_("t").where(col("x").like("a%")), "mysql")[0]
    )
    assert "ILIKE" in sql(select("x").from_("t").where(col("x").ilike("a%")), "postgresql")[0]
    assert (
        "lower(x) LIKE lower(:p0)"
        in sql(select("x").from_("t").where(col("x").ilike("a%")), "sqlite")[0]
    )


def test_nulls_ordering_per_dialect():
    q = select("x").from_("t").order_by("x", nulls="last")
    assert sql(q, "postgresql")[0].endswith("ORDER BY x ASC NULLS LAST")
    assert sql(q, "mysql")[0].endswith("ORDER BY x IS NULL ASC, x ASC")
    assert sql(select("x").from_("t").order_by("x", "desc"), "postgresql")[0].endswith(
        "ORDER BY x DESC NULLS LAST"
    )


def test_true_division_and_concat():
    q = select((col("a") / 2).as_("half"), col("f").concat(" ", col("l")).as_("n")).from_("t")
    assert "CAST(a AS FLOAT) / CAST(:p0 AS FLOAT)" in sql(q, "postgresql")[0]
    assert "f || :p1 || l" in sql(q, "postgresql")[0]
    assert "concat(f, :p1, l)" in sql(q, "mysql")[0]


def test_raw_sql_passes_through():
    assert raw_sql("SELECT :a", {"a": 1}).build() == ("SELECT :a", {"a": 1})
    with pytest.raises(QueryBuildError):
        raw_sql("  ")


def test_unbound_query_needs_a_dialect():
    with pytest.raises(QueryBuildError, match="dialect"):
        select("x").from_("t").build()


def test_functions_and_windows():
    q = select(
        func.lower(col("name")).as_("n"),
        func.row_number().over(partition_by="dept", order_by=col("pay").desc()).as_("rn"),
        literal(1).as_("one"),
    ).from_("people")
    text, params = sql(q, "postgresql")
    assert "lower(name) AS n" in text
    assert "row_number() OVER (PARTITION BY dept ORDER BY pay DESC NULLS LAST) AS rn" in text
    assert params == {"p0": 1}
