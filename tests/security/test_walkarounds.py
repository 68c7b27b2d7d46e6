"""Walk-arounds an attacker holding a user session tried, each now refused (issue 19).

Found by the adversarial review of the one-engine redesign: Redis commands whose other
keys hide behind option words, MongoDB update operators that move a row out of its row
policy, and a policy column written in another letter case on SQL.
"""

from __future__ import annotations

import pytest

from dbsystem import DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.backends.redis import classify_command
from dbsystem.query import col
from dbsystem.security import AccessControl, Permission, Role

# -- Redis: every key a command touches ----------------------------------------------------


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        (("GEORADIUS", "user:g", 13, 38, 10, "km", "STORE", "admin:pw"), ("user:g", "admin:pw")),
        (("GEORADIUS", "user:g", 13, 38, 10, "km", "STOREDIST", "admin:d"), ("user:g", "admin:d")),
        (("GEORADIUSBYMEMBER", "user:g", "m", 10, "km", "STORE", "admin:x"), ("user:g", "admin:x")),
        (("SORT", "user:l", "GET", "secret:*"), ("user:l", "secret:*")),
        (
            ("SORT", "user:l", "BY", "other:*->w", "STORE", "user:o"),
            ("user:l", "other:*->w", "user:o"),
        ),
        (("SORT_RO", "user:l", "GET", "#", "GET", "secret:*"), ("user:l", "secret:*")),
        (("SORT", "user:l", "BY", "nosort"), ("user:l",)),
    ],
)
def test_redis_keys_behind_option_words_are_checked(command, keys):
    assert classify_command(command)[1] == keys


@pytest.fixture
def redis_db():
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, "redis+mock://")
    acl = AccessControl()
    acl.create_role(Role("r", grants={"user:*": Permission.ALL}))
    acl.assign_role("ann", "r")
    db.use_access_control(acl)
    with db.connection(DatabaseType.REDIS) as redis:
        redis.execute("SET", "admin:pw", "secret")
        redis.execute("GEOADD", "user:g", "13.3", "38.1", "p")
        redis.execute("RPUSH", "user:l", "1")
    yield db
    db.close_all()


def test_georadius_cannot_store_into_a_key_out_of_the_grant(redis_db):
    ann = redis_db.for_user("ann")
    with ann.connection(DatabaseType.REDIS) as redis, pytest.raises(PermissionDenied):
        redis.execute("GEORADIUS", "user:g", "13.3", "38.1", "10", "km", "STORE", "admin:pw")
    with redis_db.connection(DatabaseType.REDIS) as redis:
        assert redis.execute("GET", "admin:pw") == "secret"


def test_sort_cannot_read_keys_out_of_the_grant_through_get(redis_db):
    ann = redis_db.for_user("ann")
    with ann.connection(DatabaseType.REDIS) as redis, pytest.raises(PermissionDenied):
        redis.execute("SORT", "user:l", "BY", "nosort", "GET", "admin:*")


# -- MongoDB: update operators on a policy field -------------------------------------------


@pytest.fixture
def mongo_db():
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://localhost/app")
    acl = AccessControl()
    acl.create_role(
        Role(
            "tenant",
            grants={"orders": Permission.ALL},
            policies={"orders": lambda ctx: col("tenant") == ctx.attrs["tenant"]},
        )
    )
    acl.assign_role("ann", "tenant")
    db.use_access_control(acl)
    db.query(DatabaseType.MONGODB).collection("orders").insert_many(
        [{"_id": 1, "tenant": 7, "n": 1, "spare": 8}]
    ).execute()
    yield db
    db.close_all()


@pytest.mark.parametrize(
    "update",
    [
        {"$inc": {"tenant": 1}},
        {"$mul": {"tenant": 2}},
        {"$max": {"tenant": 99}},
        {"$min": {"tenant": 0}},
        {"$unset": {"tenant": ""}},
        {"$rename": {"tenant": "was_tenant"}},
        {"$rename": {"spare": "tenant"}},
        {"$set": {"tenant": 8}},
        {"$set": {"tenant.x": 1}},
        {"$currentDate": {"tenant": True}},
    ],
    ids=lambda u: str(u),
)
def test_mongo_updates_cannot_move_a_row_out_of_its_policy(mongo_db, update):
    ann = mongo_db.for_user("ann", attrs={"tenant": 7})
    orders = ann.query(DatabaseType.MONGODB).collection("orders")
    with pytest.raises(PermissionDenied):
        orders.where(col("n") == 1).update_many(update).execute()
    stored = mongo_db.query(DatabaseType.MONGODB).collection("orders").find({}).execute()
    assert stored == [{"_id": 1, "tenant": 7, "n": 1, "spare": 8}]


def test_mongo_updates_of_other_fields_and_set_to_the_same_tenant_still_work(mongo_db):
    ann = mongo_db.for_user("ann", attrs={"tenant": 7})
    orders = ann.query(DatabaseType.MONGODB).collection("orders")
    orders.where(col("n") == 1).update_many({"$inc": {"n": 1}, "$set": {"tenant": 7}}).execute()
    stored = mongo_db.query(DatabaseType.MONGODB).collection("orders").find({}).execute()
    assert stored == [{"_id": 1, "tenant": 7, "n": 2, "spare": 8}]


# -- SQL: the policy column in another letter case -----------------------------------------


def test_sql_update_of_the_policy_column_in_another_case_is_refused(tmp_path):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'case.db'}")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, tenant_id INTEGER, item TEXT)")
    db.execute("INSERT INTO orders VALUES (1, 1, 'a')")
    acl = AccessControl()
    acl.create_role(
        Role(
            "t",
            grants={"orders": "SELECT|UPDATE"},
            policies={"orders": lambda ctx: col("tenant_id") == ctx.attrs["tenant"]},
        )
    )
    acl.assign_role("ann", "t")
    db.use_access_control(acl)
    ann = db.for_user("ann", attrs={"tenant": 1})
    try:
        with pytest.raises(PermissionDenied):
            ann.query().update("orders").set(TENANT_ID=2).where(col("id") == 1).execute()
        assert db.fetch_all("SELECT tenant_id FROM orders") == [{"tenant_id": 1}]
        ann.query().update("orders").set(item="b").where(col("id") == 1).execute()
        assert db.fetch_all("SELECT item FROM orders") == [{"item": "b"}]
    finally:
        db.close_all()


def test_a_policy_that_cannot_be_evaluated_refuses_the_statement(mongo_db):
    ann = mongo_db.for_user("ann")  # no "tenant" attribute: the policy's lambda fails
    orders = ann.query(DatabaseType.MONGODB).collection("orders")
    with pytest.raises(PermissionDenied, match="could not be evaluated.*KeyError"):
        orders.find({}).execute()
