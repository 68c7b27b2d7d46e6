"""Row-level policies: one predicate, in the filter language, limits every read and write of
a user session on every SQL backend and on MongoDB; what cannot carry it is denied."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import ConfigurationError, DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.core.session import SessionContext
from dbsystem.orm import Entity, Field
from dbsystem.query import col, count
from dbsystem.security import AccessControl, Permission, Role
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

ROWS = [
    {"id": 1, "tenant_id": 1, "item": "a", "deleted": 0},
    {"id": 2, "tenant_id": 1, "item": "b", "deleted": 1},
    {"id": 3, "tenant_id": 2, "item": "c", "deleted": 0},
    {"id": 4, "tenant_id": 2, "item": "d", "deleted": 0},
]


def _acl(table: str) -> AccessControl:
    acl = AccessControl()
    acl.create_role(
        Role(
            "tenant_user",
            grants={table: "SELECT|INSERT|UPDATE|DELETE", "other": Permission.SELECT},
            policies={table: lambda ctx: col("tenant_id") == ctx.attrs["tenant"]},
        )
    )
    acl.create_role(
        Role("live_only", grants={table: "SELECT"}, policies={table: col("deleted") == 0})
    )
    acl.create_role(Role("auditor", grants={"*": Permission.SELECT}))
    acl.assign_role("ann", "tenant_user")
    acl.assign_role("liv", "live_only")
    acl.assign_role("aud", "auditor")
    acl.assign_role("aud", "live_only")  # an unrestricted grant wins over a policy
    return acl


@pytest.fixture(params=SQL_BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = (
        f"sqlite:///{tmp_path}/p.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_url")
    )
    manager = DatabaseManager()
    manager.create_pool(SQL_TYPES[kind], url)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    manager.execute(
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, "
        "item VARCHAR(20), deleted INTEGER NOT NULL)"
    )
    manager.execute("CREATE TABLE IF NOT EXISTS other (id INTEGER PRIMARY KEY)")
    manager.insert_many(table, ROWS)
    manager.use_access_control(_acl(table))
    manager.t = table  # type: ignore[attr-defined]
    yield manager
    manager.execute(f"DROP TABLE {table}")
    manager.execute("DROP TABLE other")
    manager.close_all()


def _ids(rows) -> list[int]:
    return sorted(r["id"] for r in rows)


def test_reads_see_only_the_rows_the_policy_allows(db):
    t = db.t
    ann = db.for_user("ann", attrs={"tenant": 1})
    q = ann.query()
    assert _ids(q.select("id").from_(t).all()) == [1, 2]
    assert _ids(q.select("id").from_(t, alias="o").where(col("item") != "zzz").all()) == [1, 2]
    assert q.select(count().as_("n")).from_(t).scalar_value() == 2
    assert q.select("id").from_(t).where("id", "=", 3).all() == []
    assert _ids(db.for_user("ann", attrs={"tenant": 2}).query().select("id").from_(t).all()) == [
        3,
        4,
    ]
    assert _ids(db.for_user("liv").query().select("id").from_(t).all()) == [1, 3, 4]
    assert _ids(db.for_user("aud").query().select("id").from_(t).all()) == [1, 2, 3, 4]
    assert len(db.fetch_all(f"SELECT * FROM {t}")) == 4  # the application is not a session


def test_writes_stay_inside_the_policy(db):
    t = db.t
    q = db.for_user("ann", attrs={"tenant": 1}).query()
    assert q.update(t).set(item="x").all_rows().execute() == 2
    assert q.delete_from(t).where("id", "=", 3).execute() == 0
    assert (
        q.insert_into(t).values({"id": 5, "tenant_id": 1, "item": "e", "deleted": 0}).execute() == 1
    )
    with pytest.raises(PermissionDenied, match="outside what it allows"):
        q.insert_into(t).values({"id": 6, "tenant_id": 2, "item": "f", "deleted": 0}).execute()
    with pytest.raises(PermissionDenied, match="outside what it allows"):
        q.update(t).set(tenant_id=2).where("id", "=", 1).execute()  # no moving rows out
    assert q.update(t).set(tenant_id=1, item="y").where("id", "=", 1).execute() == 1
    assert q.delete_from(t).all_rows().execute() == 3
    rows = {r["id"]: r for r in db.fetch_all(f"SELECT * FROM {t}")}
    assert sorted(rows) == [3, 4] and rows[3]["item"] == "c"  # the other tenant untouched


def test_what_cannot_carry_the_policy_is_denied(db):
    t = db.t
    ann = db.for_user("ann", attrs={"tenant": 1})
    q = ann.query()
    for attempt in (
        lambda: ann.fetch_all(f"SELECT * FROM {t}"),
        lambda: ann.execute(f"DELETE FROM {t} WHERE id = 3"),
        lambda: q.raw_sql(f"SELECT * FROM {t}").execute(),
        lambda: (
            q.select("o.id")
            .from_("other", alias="o")
            .join(t, on=col(f"{t}.id") == col("o.id"), kind="right")
            .all()
        ),
        lambda: q.select("id").from_("other").where(col("id").in_(q.select("id").from_(t))).all(),
        lambda: q.select("id").from_(t).union(q.select("id").from_(t)).all(),
        # A subquery on the same table would read the rows the outer WHERE hides.
        lambda: q.select("id").from_(t).where(col("id").in_(q.select("id").from_(t))).all(),
        lambda: (
            q.insert_into(t)
            .values({"id": 7, "tenant_id": 1, "item": "g", "deleted": 0})
            .upsert(conflict=["id"])
            .execute()
        ),
    ):
        with pytest.raises(PermissionDenied, match="row policy"):
            attempt()
    if db.mode is not DatabaseType.MYSQL:  # (MySQL has no FULL JOIN at all)
        full = q.select("o.id").from_(t, alias="o")
        full = full.join("other", on=col("other.id") == col("o.id"), kind="full")
        with pytest.raises(PermissionDenied, match="full join"):
            full.all()
    assert len(db.fetch_all(f"SELECT * FROM {t}")) == 4
    assert ann.fetch_all("SELECT id FROM other") == []  # tables without a policy: raw is fine


def test_the_orm_through_a_session_carries_the_policy(db):
    class Order(Entity, table=db.t):
        id: int = Field(primary_key=True)
        tenant_id: int
        item: str
        deleted: int = 0

    ann = db.for_user("ann", attrs={"tenant": 1})
    assert _ids(o.model_dump() for o in Order.query(ann).all()) == [1, 2]
    assert Order.query(ann).where(col("id") == 3).first() is None
    Order(id=8, tenant_id=1, item="h").save(ann)
    with pytest.raises(PermissionDenied):
        Order(id=9, tenant_id=2, item="i").save(ann)
    assert db.fetch_value(f"SELECT COUNT(*) FROM {db.t}") == 5


def test_a_policy_on_a_table_the_role_does_not_grant_is_refused():
    with pytest.raises(ConfigurationError, match="does not grant"):
        Role("r", grants={"a": Permission.SELECT}, policies={"b": col("x") == 1})


def test_mongodb_collections_carry_the_same_policy():
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://localhost/pol")
    db.query(DatabaseType.MONGODB).collection("orders").insert_many(
        [dict(r, _id=r["id"]) for r in ROWS]
    ).execute()
    db.use_access_control(_acl("orders"))
    orders = (
        db.for_user("ann", attrs={"tenant": 1}).query(DatabaseType.MONGODB).collection("orders")
    )
    assert _ids(orders.find().execute()) == [1, 2]
    assert orders.where(col("item") == "c").count().execute() == 0
    assert orders.where("id", ">", 0).update_many({"$set": {"item": "x"}}).execute()["matched"] == 2
    assert orders.where("id", "=", 3).delete_many().execute() == 0
    orders.insert_one({"_id": 5, "id": 5, "tenant_id": 1, "item": "e", "deleted": 0}).execute()
    for attempt in (
        lambda: orders.insert_one({"_id": 6, "id": 6, "tenant_id": 2}).execute(),
        lambda: orders.where("id", "=", 1).update_one({"$set": {"tenant_id": 2}}).execute(),
        lambda: orders.aggregate([{"$match": {}}]).execute(),
    ):
        with pytest.raises(PermissionDenied, match="row policy"):
            attempt()
    everything = db.query(DatabaseType.MONGODB).collection("orders").find().execute()
    assert {d["id"]: d["item"] for d in everything} == {1: "x", 2: "x", 3: "c", 4: "d", 5: "e"}
    db.close_all()


def test_reloading_grants_keeps_the_policies_defined_in_code(tmp_path):
    acl = _acl("orders")
    path = tmp_path / "acl.json"
    acl.save(path)
    acl.load(path)
    assert acl.policy_applies("ann", "select", "orders")
    assert (
        acl.row_filter(SessionContext("ann", attrs={"tenant": 3}), "select", "orders") is not None
    )


def test_joins_carry_each_tables_policy(db):
    t = db.t
    db.insert_many("other", [{"id": i} for i in (1, 2, 3, 4, 5)])
    ann = db.for_user("ann", attrs={"tenant": 1})
    q = ann.query()
    inner = (
        q.select("o.id")
        .from_("other", alias="x")
        .join(t, on=col("o.id") == col("x.id"), alias="o")
        .all()
    )
    assert _ids(inner) == [1, 2]
    reversed_ = q.select("x.id").from_(t).join("other", on=col(f"{t}.id") == col("x.id"), alias="x")
    assert _ids(reversed_.all()) == [1, 2]
    # A left join keeps every row of the left side; the joined rows the policy hides are NULL.
    left = (
        q.select(col("x.id"), col("o.item"))
        .from_("other", alias="x")
        .left_join(t, on=col("o.id") == col("x.id"), alias="o")
        .order_by("x.id")
        .all()
    )
    assert [(r["id"], r["item"]) for r in left] == [
        (1, "a"),
        (2, "b"),
        (3, None),
        (4, None),
        (5, None),
    ]
    # The same table twice, under two aliases: both are restricted.
    self_join = (
        q.select(col("a.id").as_("a_id"), col("b.id").as_("b_id"))
        .from_(t, alias="a")
        .join(t, on=col("a.tenant_id") == col("b.tenant_id"), alias="b")
        .all()
    )
    assert {(r["a_id"], r["b_id"]) for r in self_join} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    cross = q.select(col("a.id")).from_("other", alias="x").join(t, alias="a", kind="cross")
    assert len(cross.all()) == 5 * 2
    liv = db.for_user("liv").query()  # a constant policy (deleted = 0) on a join
    live = liv.select("o.id").from_(t, alias="o").join("other", on=col("other.id") == col("o.id"))
    with pytest.raises(PermissionDenied):  # liv has no grant on "other"
        live.all()
