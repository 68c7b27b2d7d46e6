"""Builder writes and execution on every SQL backend: insert, upsert, update, delete,
RETURNING, insert from select, hooks seeing the builder's action and tables."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import DatabaseManager, ExecutionHook, NotSupportedError, PoolConfig
from dbsystem.query import col, count, escape_like, select
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

BACKENDS = SQL_BACKENDS
TYPES = SQL_TYPES


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = (
        f"sqlite:///{tmp_path}/w.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_url")
    )
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], PoolConfig(url=url, max_size=3))
    manager.kind = kind  # type: ignore[attr-defined]
    table = f"people_{uuid.uuid4().hex[:8]}"
    manager.execute(
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, "
        "dept VARCHAR(20), pay INTEGER)"
    )
    manager.table = table  # type: ignore[attr-defined]
    yield manager
    manager.execute(f"DROP TABLE IF EXISTS {table}")
    manager.close_all()


def test_insert_update_delete_round_trip(db):
    q, t = db.query(), db.table
    assert (
        q.insert_into(t).values({"id": 1, "name": "ada", "dept": "eng", "pay": 10}).execute() == 1
    )
    rows = [{"id": i, "name": f"p{i}", "dept": "ops", "pay": i} for i in range(2, 6)]
    assert q.insert_into(t).values(rows).execute() == 4
    assert q.update(t).set({"pay": col("pay") + 100}).where("dept", "=", "ops").execute() == 4
    assert q.select(count().as_("n")).from_(t).where(col("pay") > 100).scalar_value() == 4
    assert q.delete_from(t).where(col("id").in_([2, 3])).execute() == 2
    names = [r["name"] for r in q.select("name").from_(t).order_by("id").all()]
    assert names == ["ada", "p4", "p5"]
    assert q.select("name").from_(t).where("id", "=", 1).first() == {"name": "ada"}


def test_upsert_inserts_then_updates(db):
    q, t = db.query(), db.table
    q.insert_into(t).values({"id": 1, "name": "ada", "dept": "eng", "pay": 10}).upsert(
        conflict=["id"]
    ).execute()
    q.insert_into(t).values({"id": 1, "name": "ada l.", "dept": "eng", "pay": 20}).upsert(
        conflict=["id"], update=["pay"]
    ).execute()
    q.insert_into(t).values({"id": 1, "name": "ignored", "dept": "x", "pay": 99}).upsert(
        conflict=["id"], update=[]
    ).execute()
    assert q.select("id", "name", "pay").from_(t).all() == [{"id": 1, "name": "ada", "pay": 20}]


def test_insert_from_select_and_returning(db):
    q, t = db.query(), db.table
    q.insert_into(t).values(
        [{"id": i, "name": f"n{i}", "dept": "a", "pay": i} for i in range(1, 4)]
    ).execute()
    copied = (
        q.insert_into(t)
        .from_select(
            ["id", "name", "dept", "pay"],
            select((col("id") + 10).as_("id"), "name", "dept", "pay")
            .from_(t)
            .where(col("pay") > 1),
        )
        .execute()
    )
    assert copied == 2
    assert q.select(count().as_("n")).from_(t).scalar_value() == 5
    returning = q.delete_from(t).where(col("id") > 10).returning("id")
    if db.kind == "mysql":
        with pytest.raises(NotSupportedError):
            returning.execute()
        return
    assert sorted(r["id"] for r in returning.execute()) == [12, 13]


def test_builders_run_inside_a_transaction_and_roll_back(db):
    q, t = db.query(), db.table
    with db.connection() as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            q.insert_into(t).values({"id": 1, "name": "a", "dept": "x", "pay": 1}).execute(conn)
            assert q.select(count()).from_(t).scalar_value(conn) == 1
            raise RuntimeError
    assert q.select(count()).from_(t).scalar_value() == 0


def test_raw_sql_through_the_factory(db):
    q, t = db.query(), db.table
    assert (
        q.raw_sql(f"INSERT INTO {t} (id, name) VALUES (:id, :n)", {"id": 7, "n": "r"}).execute()
        == 1
    )
    assert q.raw_sql(f"SELECT name FROM {t} WHERE id = :id", {"id": 7}).execute() == [{"name": "r"}]


class Seen(ExecutionHook):
    def __init__(self) -> None:
        self.statements = []

    def after_execute(self, statement) -> None:
        self.statements.append(statement)


def test_hooks_see_builder_action_and_tables_without_parsing(db):
    seen = db.add_hook(Seen())
    q, t = db.query(), db.table
    q.select("name").from_(t, alias="p").join(
        select("id").from_(t).where(col("pay") > 0), on=col("s.id") == col("p.id"), alias="s"
    ).all()
    q.update(t).set({"pay": 1}).where("id", "=", 1).execute()
    select_stmt, update_stmt = seen.statements
    assert (select_stmt.action, select_stmt.resources) == ("select", (t,))
    assert (update_stmt.action, update_stmt.resources) == ("update", (t,))
    assert select_stmt._action == "select"  # stated by the builder, not re-parsed


def test_like_wildcards_and_backslash_escapes_mean_the_same_everywhere(db):
    q, t = db.query(), db.table
    names = ["50%", "500", "a_b", "axb", "back\\slash", "Star*", "q?"]
    q.insert_into(t).values([{"id": i, "name": n} for i, n in enumerate(names)]).execute()

    def like(pattern, insensitive=False):
        c = col("name").ilike(pattern) if insensitive else col("name").like(pattern)
        return sorted(r["name"] for r in q.select("name").from_(t).where(c).all())

    assert like("50%") == ["50%", "500"]
    assert like("50\\%") == ["50%"]
    assert like("a_b") == ["a_b", "axb"]
    assert like("a\\_b") == ["a_b"]
    assert like("back\\\\slash") == ["back\\slash"]
    assert like("Star*") == ["Star*"] and like("q?") == ["q?"]  # GLOB characters are literal
    assert like("star*", insensitive=True) == ["Star*"]
    assert like("A\\_B", insensitive=True) == ["a_b"]
    assert like(escape_like("50%")) == ["50%"] and like(escape_like("a_b") + "%") == ["a_b"]
    assert like(escape_like("back\\slash")) == ["back\\slash"]
