"""Sharding over three SQLite files and over three PostgreSQL databases in one server:
routing by the key, fan-out with merged ORDER BY/OFFSET/LIMIT, the route explained."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import (
    DatabaseManager,
    DatabaseType,
    InterfaceError,
    NotSupportedError,
    QueryBuildError,
)
from dbsystem.orm import Entity, Field
from dbsystem.query import col, count, sum_
from dbsystem.scaling.sharding import ShardedPool, stable_hash

ROWS = [{"id": i, "customer_id": i % 17, "total": i * 10} for i in range(1, 61)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sharded(request, tmp_path):
    db = DatabaseManager()
    created: list[str] = []
    if request.param == "sqlite":
        db_type = DatabaseType.SQLITE
        for n in range(3):
            db.create_pool(db_type, f"sqlite:///{tmp_path}/shard{n}.db", name=f"s{n}")
    else:
        db_type = DatabaseType.POSTGRES
        url = request.getfixturevalue("postgres_url")
        admin = DatabaseManager()
        admin.create_pool(db_type, url)
        for n in range(3):
            name = f"shard_{uuid.uuid4().hex[:8]}"
            admin.execute(f"CREATE DATABASE {name}")
            created.append(name)
            db.create_pool(db_type, url.rsplit("/", 1)[0] + f"/{name}", name=f"s{n}")
    names = ["s0", "s1", "s2"]
    for name in names:
        with db.connection(db_type, name=name) as conn:
            conn.execute(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total INTEGER)"
            )
    shards = ShardedPool(db, db_type, names, key="customer_id")
    yield db, db_type, shards
    db.close_all()
    if created:
        for name in created:
            admin.execute(f"DROP DATABASE {name}")
        admin.close_all()


def _counts(db, db_type, names) -> list[int]:
    counts = []
    for name in names:
        with db.connection(db_type, name=name) as conn:
            counts.append(conn.fetch_value("SELECT COUNT(*) FROM orders"))
    return counts


def test_rows_go_to_their_shard_and_keyed_queries_to_one(sharded):
    db, db_type, shards = sharded
    q = shards.query()
    assert q.insert_into("orders").values(ROWS).execute() == 60
    per_shard = _counts(db, db_type, shards.names)
    assert sum(per_shard) == 60 and all(n > 0 for n in per_shard)
    # Each customer's rows all live on the one shard its key hashes to.
    for customer in range(17):
        owner = shards.shard_of(customer)
        with db.connection(db_type, name=owner) as conn:
            here = conn.fetch_value(
                "SELECT COUNT(*) FROM orders WHERE customer_id = :c", {"c": customer}
            )
        assert here == sum(1 for r in ROWS if r["customer_id"] == customer)
    keyed = q.select("id").from_("orders").where(col("customer_id") == 3).order_by("id")
    route = shards.explain_route(keyed)
    assert route.shards == (shards.shard_of(3),) and not route.fan_out
    assert [r["id"] for r in keyed.all()] == [r["id"] for r in ROWS if r["customer_id"] == 3]
    both = q.select("id").from_("orders").where(col("customer_id").in_([1, 2]) & (col("total") > 0))
    assert set(shards.explain_route(both).shards) == {shards.shard_of(1), shards.shard_of(2)}
    assert len(both.all()) == sum(1 for r in ROWS if r["customer_id"] in (1, 2))


def test_fan_out_merges_order_offset_and_limit(sharded):
    db, db_type, shards = sharded
    q = shards.query()
    q.insert_into("orders").values(ROWS).execute()
    everything = q.select("id", "total").from_("orders")
    route = shards.explain_route(everything)
    assert route.fan_out and route.shards == ("s0", "s1", "s2") and "every shard" in route.reason
    top = everything.order_by("total", "desc").limit(5).offset(2).all()
    assert [r["id"] for r in top] == [58, 57, 56, 55, 54]
    assert len(everything.all()) == 60
    assert q.select("id").from_("orders").order_by("id").first() == {"id": 1}
    # Writes without the key reach every shard; with it, one.
    assert q.update("orders").set(total=0).where(col("total") < 100).execute() == 9
    assert q.delete_from("orders").where(col("customer_id") == 0).execute() == 3
    assert sum(_counts(db, db_type, shards.names)) == 57


def test_what_cannot_be_routed_is_refused(sharded):
    db, db_type, shards = sharded
    q = shards.query()
    with pytest.raises(NotSupportedError, match="not DISTINCT"):
        q.select(count(col("customer_id"), distinct=True)).from_("orders").all()
    with pytest.raises(NotSupportedError, match="expressions of aggregates"):
        q.select((sum_("total") + 1).as_("n")).from_("orders").all()
    with pytest.raises(QueryBuildError, match="customer_id"):
        q.insert_into("orders").values({"id": 1, "total": 5}).execute()
    with pytest.raises(InterfaceError):
        ShardedPool(db, db_type, ["s0", "s1"], key="k", strategy="range", bounds=[])
    with pytest.raises(NotSupportedError, match="raw SQL"):
        q.raw_sql("SELECT * FROM orders").execute()
    with pytest.raises(NotSupportedError):
        q.select("id").from_("orders").union(q.select("id").from_("orders")).all()
    # An aggregate that names the key runs on its one shard.
    q.insert_into("orders").values(ROWS).execute()
    one = q.select(count().as_("n")).from_("orders").where(col("customer_id") == 5)
    assert one.scalar_value() == sum(1 for r in ROWS if r["customer_id"] == 5)
    # A plain COUNT adds up each shard's count.
    assert q.select(count().as_("n")).from_("orders").scalar_value() == len(ROWS)
    big = q.select(count()).from_("orders").where(col("total") > 300)
    assert shards.explain_route(big).fan_out and big.scalar_value() == 30


def test_range_and_function_strategies_and_a_stable_hash(tmp_path):
    db = DatabaseManager()
    for n in range(3):
        db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/r{n}.db", name=f"r{n}")
    names = ["r0", "r1", "r2"]
    by_range = ShardedPool(
        db, DatabaseType.SQLITE, names, key="k", strategy="range", bounds=[10, 20]
    )
    assert [by_range.shard_of(v) for v in (0, 9, 10, 19, 20, 99)] == [
        "r0",
        "r0",
        "r1",
        "r1",
        "r2",
        "r2",
    ]
    by_function = ShardedPool(db, DatabaseType.SQLITE, names, key="k", strategy=lambda v: v % 3)
    assert by_function.shard_of(7) == "r1"
    # The hash does not depend on the process (PYTHONHASHSEED): fixed values.
    assert stable_hash(42) == stable_hash("42") == 6319743179241711738
    db.close_all()


class Order(Entity, table="orders"):
    id: int = Field(primary_key=True)
    customer_id: int
    total: int = 0


def test_entities_persist_to_their_shard(sharded):
    db, db_type, shards = sharded
    shards.drop_tables([Order])
    shards.create_tables([Order])  # on every shard
    for row in ROWS:
        Order(**row).save(shards)
    assert sum(_counts(db, db_type, shards.names)) == len(ROWS)
    for name in shards.names:  # each shard holds only its own customers
        with db.connection(db_type, name=name) as conn:
            owners = {
                shards.shard_of(r["customer_id"])
                for r in conn.fetch_all("SELECT customer_id FROM orders")
            }
            assert owners <= {name}
    keyed = Order.query(shards).where(Order.customer_id == 5)
    assert [o.id for o in keyed.order_by("id").all()] == [5, 22, 39, 56]
    assert keyed.count() == 4 and Order.query(shards).count() == len(ROWS)
    top = Order.query(shards).order_by("total", "desc").limit(3).all()
    assert [o.id for o in top] == [60, 59, 58]
    found = Order.get(shards, 22)  # by primary key: asked of every shard
    assert found is not None and found.customer_id == 5
    found.total = 1
    found.save(shards)
    assert Order.get(shards, 22).total == 1
    found.delete(shards)
    assert Order.get(shards, 22) is None and Order.query(shards).count() == len(ROWS) - 1
    with pytest.raises(NotSupportedError, match="spanning shards"):
        shards.transaction()
