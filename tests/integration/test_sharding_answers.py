"""A sharded pool answers as one database would (issue 21): every query below runs on three
shards and on one reference database holding the same rows, on SQLite, PostgreSQL and
MariaDB, and the answers are compared. Also: what cannot be answered the same is refused,
and user sessions are checked on every shard route (issue 19)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from dbsystem import (
    DatabaseManager,
    DatabaseType,
    InterfaceError,
    NotSupportedError,
    PermissionDenied,
)
from dbsystem.query import avg, col, count, func, max_, min_, sum_
from dbsystem.scaling.sharding import ShardedPool
from dbsystem.security import AccessControl, Role
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

# Range sharding on customer_id (bounds 4, 6): totals {NULL, 1, 2} | {3, 4} | {5}, the
# issue's example, then more rows so that groups span shards.
ORDERS = [
    {"id": 1, "customer_id": 1, "total": None, "note": "b"},
    {"id": 2, "customer_id": 2, "total": 1, "note": "a"},
    {"id": 3, "customer_id": 3, "total": 2, "note": None},
    {"id": 4, "customer_id": 4, "total": 3, "note": "c"},
    {"id": 5, "customer_id": 5, "total": 4, "note": "a"},
    {"id": 6, "customer_id": 6, "total": 5, "note": "b"},
    {"id": 7, "customer_id": 1, "total": 7, "note": "c"},
    {"id": 8, "customer_id": 4, "total": None, "note": "a"},
    {"id": 9, "customer_id": 7, "total": 2, "note": "b"},
]
CUSTOMERS = [{"customer_id": k, "name": f"c{k}"} for k in range(1, 8)]
DDL = [
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total INTEGER, "
    "note VARCHAR(10))",
    "CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name VARCHAR(10))",
    "CREATE TABLE regions (code VARCHAR(4) PRIMARY KEY, label VARCHAR(20))",
]


@pytest.fixture(scope="module", params=SQL_BACKENDS)
def databases(request, tmp_path_factory):
    """Four databases (three shards and a reference) with the tables, once per backend."""
    kind = request.param
    db_type = SQL_TYPES[kind]
    names = ["s0", "s1", "s2", "ref"]
    created: list[str] = []
    admin = None
    if kind == "sqlite":
        folder = tmp_path_factory.mktemp("shards")
        urls = {name: f"sqlite:///{folder}/{name}.db" for name in names}
    else:
        url = request.getfixturevalue(f"{kind}_url")
        admin = DatabaseManager()
        admin.create_pool(db_type, url)
        urls = {}
        for name in names:
            database = f"shard_{uuid.uuid4().hex[:8]}"
            admin.execute(f"CREATE DATABASE {database}")
            created.append(database)
            urls[name] = url.rsplit("/", 1)[0] + f"/{database}"
    setup_db = DatabaseManager()
    for name, url in urls.items():
        setup_db.create_pool(db_type, url, name=name)
        with setup_db.connection(db_type, name=name) as conn:
            for ddl in DDL:
                conn.execute(ddl)
    setup_db.close_all()
    yield db_type, urls
    if admin is not None:
        for database in created:
            admin.execute(f"DROP DATABASE {database}")
        admin.close_all()


@pytest.fixture
def setup(databases):
    """A fresh manager over the four databases, holding the rows again."""
    db_type, urls = databases
    db = DatabaseManager()
    for name, url in urls.items():
        db.create_pool(db_type, url, name=name)
        with db.connection(db_type, name=name) as conn:
            for table in ("orders", "customers", "regions"):
                conn.execute(f"DELETE FROM {table}")
    names = list(urls)
    shards = ShardedPool(
        db,
        db_type,
        names[:3],
        key="customer_id",
        strategy="range",
        bounds=[4, 6],
        replicated=["regions"],
    )
    shards.query().insert_into("orders").values(ORDERS).execute()
    shards.query().insert_into("customers").values(CUSTOMERS).execute()
    ref = db.query(db_type, name="ref")
    ref.insert_into("orders").values(ORDERS).execute()
    ref.insert_into("customers").values(CUSTOMERS).execute()
    for name in names:  # a replicated table: every shard holds all of it
        db.query(db_type, name=name).insert_into("regions").values(
            [{"code": "eu", "label": "Europe"}, {"code": "us", "label": "America"}]
        ).execute()
    yield db, db_type, shards, ref
    db.close_all()


def _same(shards, ref, build):
    """``build(q)`` on the shards and on the reference database: the same rows."""
    got = build(shards.query()).all()
    want = build(ref).all()
    assert got == want
    return got


def test_the_issue_example_order_by_with_nulls_and_limit(setup):
    db, db_type, shards, ref = setup
    rows = _same(shards, ref, lambda q: q.select("id").from_("orders").order_by("total").limit(2))
    assert [r["id"] for r in rows] == [1, 8]  # NULLs sort low, as on one database


@pytest.mark.parametrize(
    "build",
    [
        lambda q: q.select("id", "total").from_("orders").order_by("total", "desc").order_by("id"),
        lambda q: q.select("id").from_("orders").order_by("total", nulls="last").order_by("id"),
        lambda q: (
            q.select("id")
            .from_("orders")
            .order_by(col("total").desc(nulls="first"))
            .order_by("id")
            .limit(4)
        ),
        lambda q: q.select("id").from_("orders").order_by("id").offset(3),
        lambda q: q.select("id").from_("orders").order_by("id").limit(3).offset(4),
        lambda q: q.select("id").from_("orders").order_by("total").order_by("id").offset(7),
        # Ordered by a column it does not select: fetched hidden, then dropped.
        lambda q: q.select("note").from_("orders").order_by("total").order_by("id").limit(5),
        lambda q: q.select("id").from_("orders").order_by(col("total") * -1).order_by("id"),
        lambda q: q.select(col("id").as_("n")).from_("orders").order_by("n", "desc"),
        lambda q: q.select("*").from_("orders").order_by("customer_id").order_by("id").limit(3),
        lambda q: q.select("note").from_("orders").distinct().order_by("note"),
    ],
    ids=[
        "desc",
        "nulls-last",
        "desc-nulls-first",
        "offset",
        "limit-offset",
        "offset-past-shard",
        "unselected",
        "expression",
        "alias",
        "star",
        "distinct",
    ],
)
def test_ordered_fan_out_answers_as_one_database(setup, build):
    db, db_type, shards, ref = setup
    _same(shards, ref, build)


@pytest.mark.parametrize(
    "build",
    [
        lambda q: q.select(count().as_("n")).from_("orders"),
        lambda q: q.select(
            count(col("total")).as_("n"),
            sum_("total").as_("s"),
            min_("total").as_("lo"),
            max_("total").as_("hi"),
            avg("total").as_("mean"),
        ).from_("orders"),
        lambda q: (
            q.select(sum_("total").as_("s"), avg("total").as_("a"))
            .from_("orders")
            .where(col("id") > 100)
        ),
        lambda q: (
            q.select("note", count().as_("n"), avg("total").as_("a"))
            .from_("orders")
            .group_by("note")
            .order_by("note")
        ),
        lambda q: (
            q.select(count().as_("n"), max_("id").as_("top"))
            .from_("orders")
            .group_by(func.lower(col("note")))
            .order_by("top")
        ),
        lambda q: (
            q.select("note", sum_("total").as_("s"))
            .from_("orders")
            .group_by("note")
            .order_by("s", "desc")
            .order_by("note")
            .limit(2)
            .offset(1)
        ),
        lambda q: q.select(min_(col("note")).as_("first")).from_("orders"),
    ],
    ids=["count", "every-aggregate", "empty", "group", "group-expr", "group-page", "min-text"],
)
def test_aggregates_across_shards_answer_as_one_database(setup, build):
    db, db_type, shards, ref = setup
    rows = _same(shards, ref, build)
    assert rows  # an aggregate without GROUP BY gives its one row even over no rows


def test_average_keeps_the_dialects_type_and_scale(setup):
    db, db_type, shards, ref = setup
    query = lambda q: q.select(avg("total").as_("a")).from_("orders")  # noqa: E731
    got = query(shards.query()).scalar_value()
    assert got == query(ref).scalar_value()
    assert type(got) is (float if db_type is DatabaseType.SQLITE else Decimal)


def test_contradictory_key_predicates_give_no_rows(setup):
    db, db_type, shards, ref = setup
    k = col("customer_id")
    q = shards.query()
    both = q.select("id").from_("orders").where((k == 1) & (k == 6))
    assert not shards.explain_route(both).fan_out
    assert both.all() == []
    assert q.select(count().as_("n")).from_("orders").where((k == 1) & (k == 6)).scalar_value() == 0
    assert q.delete_from("orders").where(k.in_([1, 2]) & (k == 6)).execute() == 0
    either = q.select("id").from_("orders").where((k == 1) | (k == 6)).order_by("id")
    assert shards.explain_route(either).shards == ("s0", "s2")
    assert [r["id"] for r in either.all()] == [1, 6, 7]


def test_updating_the_shard_key_moves_nothing_silently(setup):
    db, db_type, shards, ref = setup
    q = shards.query()
    k = col("customer_id")
    # Within one shard (customer 1 to 2, both on s0): allowed.
    assert q.update("orders").set(customer_id=2).where(col("id") == 7).execute() == 1
    # To another shard: refused before anything changes, with the way out.
    with pytest.raises(NotSupportedError, match="would move rows from shard 's0' to 's2'"):
        q.update("orders").set(customer_id=6, total=0).where(col("id") == 7).execute()
    with pytest.raises(NotSupportedError, match="expression"):
        q.update("orders").set(customer_id=k + 1).where(col("id") == 7).execute()
    row = q.select("customer_id", "total").from_("orders").where(col("id") == 7).first()
    assert row == {"customer_id": 2, "total": 7}
    # A key update whose rows already live on the target shard runs there only.
    assert q.update("orders").set(customer_id=6, note="z").where(k == 6).execute() == 1


def test_joins_that_would_miss_rows_are_refused(setup):
    db, db_type, shards, ref = setup
    q = shards.query()
    on_key = (
        q.select("o.id", "c.name")
        .from_("orders", alias="o")
        .join("customers", col("o.customer_id") == col("c.customer_id"), alias="c")
        .order_by("o.id")
    )
    assert (
        on_key.all()
        == ref.select("o.id", "c.name")
        .from_("orders", alias="o")
        .join("customers", col("o.customer_id") == col("c.customer_id"), alias="c")
        .order_by("o.id")
        .all()
    )
    replicated = (
        q.select("o.id", "r.label")
        .from_("orders", alias="o")
        .join("regions", col("r.code") == "eu", alias="r")
        .order_by("o.id")
    )
    assert len(replicated.all()) == len(ORDERS)
    with pytest.raises(NotSupportedError, match="not on customer_id would miss"):
        q.select("o.id").from_("orders", alias="o").join(
            "orders", col("o.total") == col("p.id"), alias="p"
        ).all()
    with pytest.raises(NotSupportedError, match="replicated"):
        q.select("o.id").from_("orders", alias="o").left_join(
            "customers", col("o.id") == col("c.customer_id"), alias="c"
        ).where(col("o.customer_id") == 1).all()
    with pytest.raises(NotSupportedError, match="subquery"):
        q.select("id").from_("orders").where(
            col("customer_id").in_(q.select("customer_id").from_("customers"))
        ).all()
    with pytest.raises(NotSupportedError, match="HAVING"):
        q.select("note", count().as_("n")).from_("orders").group_by("note").having(
            count() > 1
        ).all()


@pytest.fixture
def acl():
    control = AccessControl()
    control.create_role(
        Role(
            "tenant",
            grants={"orders": "SELECT|INSERT|UPDATE|DELETE"},
            policies={"orders": lambda ctx: col("note") == ctx.attrs["note"]},
        )
    )
    control.create_role(Role("nobody", grants={"customers": "SELECT"}))
    control.assign_role("ann", "tenant")
    control.assign_role("nel", "nobody")
    return control


def test_user_sessions_are_checked_on_every_shard_route(setup, acl):
    db, db_type, shards, ref = setup
    db.use_access_control(acl)
    nel = shards.for_user("nel").query()
    k = col("customer_id")
    routes = [
        nel.select("id").from_("orders").where(k == 1),  # one shard
        nel.select("id").from_("orders").where(k.in_([1, 6])),  # two
        nel.select("id").from_("orders").order_by("id").limit(2),  # every shard, merged
        nel.select(count().as_("n")).from_("orders"),  # aggregated
        nel.select("id").from_("orders").where((k == 1) & (k == 6)),  # contradiction
        nel.insert_into("orders").values({"id": 50, "customer_id": 1, "total": 1, "note": "a"}),
        nel.update("orders").set(total=0).where(col("id") == 1),
        nel.delete_from("orders").where(k == 6),
    ]
    for query in routes:
        with pytest.raises(PermissionDenied):
            query.execute()
    assert nel.select("name").from_("customers").where(k == 1).all() == [{"name": "c1"}]
    assert sum(1 for _ in db.query(db_type, name="s0").select("id").from_("orders").all()) == 4


def test_row_policies_apply_on_every_shard(setup, acl):
    db, db_type, shards, ref = setup
    db.use_access_control(acl)
    ann = shards.for_user("ann", attrs={"note": "a"})
    q = ann.query()
    rows = q.select("id").from_("orders").order_by("id").all()
    assert [r["id"] for r in rows] == [2, 5, 8]
    assert q.select(count().as_("n")).from_("orders").scalar_value() == 3
    assert q.update("orders").set(total=0).where(col("total") > 0).execute() == 2
    assert q.delete_from("orders").where(col("customer_id") == 1).execute() == 0
    with pytest.raises(PermissionDenied, match="outside what it allows"):
        q.insert_into("orders").values(
            {"id": 60, "customer_id": 6, "total": 1, "note": "b"}
        ).execute()
    with pytest.raises(InterfaceError, match="already belongs"):
        ann.for_user("ann")
