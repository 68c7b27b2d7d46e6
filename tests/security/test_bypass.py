"""RBAC bypass attempts (the catalog's S9 and S10): every object a statement touches is
checked, on Redis (multi-key commands, pipelines, MULTI) and MongoDB (pipelines that read or
write other collections), and the decision matrix holds with its cost measured."""

from __future__ import annotations

import statistics
import time

import pytest

from dbsystem import DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.security import AccessControl, Permission, Role


def _acl() -> AccessControl:
    acl = AccessControl()
    acl.create_role(Role("own", grants={"a:*": Permission.ALL, "a": Permission.ALL}))
    acl.assign_role("ann", "own")
    return acl


@pytest.fixture
def redis():
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, "redis+mock://")
    db.connection(DatabaseType.REDIS).execute("SET", "b:1", "theirs")
    db.use_access_control(_acl())
    yield db, db.for_user("ann").connection(DatabaseType.REDIS)
    db.close_all()


@pytest.mark.parametrize(
    "command",
    [
        ("RENAME", "a:1", "b:1"),
        ("COPY", "a:1", "b:2"),
        ("SMOVE", "a:s", "b:s", "m"),
        ("LMOVE", "a:l", "b:l", "LEFT", "RIGHT"),
        ("RPOPLPUSH", "a:l", "b:l"),
        ("SUNIONSTORE", "a:d", "b:s"),
        ("ZUNIONSTORE", "a:d", "2", "a:z", "b:z"),
        ("MGET", "a:1", "b:1"),
        ("MSET", "a:1", "x", "b:1", "y"),
        ("BITOP", "OR", "a:d", "b:1"),
        ("SORT", "a:l", "STORE", "b:l"),
        ("BLPOP", "a:l", "b:l", "0"),
        ("XREAD", "STREAMS", "a:x", "b:x", "0", "0"),
        ("OBJECT", "ENCODING", "b:1"),
        ("SELECT", "1"),
        ("MOVE", "a:1", "1"),
        ("EVAL", "return redis.call('GET', 'b:1')", "0"),
        ("FLUSHALL",),
    ],
    ids=lambda c: c[0],
)
def test_redis_multi_key_commands_check_every_key(redis, command):
    db, conn = redis
    conn.execute("SET", "a:1", "mine")
    with pytest.raises(PermissionDenied):
        conn.execute(*command)
    with pytest.raises(PermissionDenied):
        conn.pipeline([("GET", "a:1"), command])
    with pytest.raises(PermissionDenied):
        conn.pipeline([("GET", "a:1"), command], transaction=True)
    assert db.connection(DatabaseType.REDIS).execute("GET", "b:1") == "theirs"


def test_redis_own_prefix_still_works(redis):
    _, conn = redis
    conn.execute("SET", "a:1", "mine")
    conn.execute("RENAME", "a:1", "a:2")
    assert conn.execute("MGET", "a:1", "a:2") == [None, "mine"]


@pytest.fixture
def mongo():
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://localhost/bypass")
    db.query(DatabaseType.MONGODB).collection("b").insert_one({"secret": 1}).execute()
    db.query(DatabaseType.MONGODB).collection("a").insert_one({"k": 1}).execute()
    db.use_access_control(_acl())
    yield db, db.for_user("ann").query(DatabaseType.MONGODB).collection("a")
    db.close_all()


@pytest.mark.parametrize(
    "stage",
    [
        {"$lookup": {"from": "b", "localField": "k", "foreignField": "k", "as": "x"}},
        {"$lookup": {"from": "a", "as": "x", "pipeline": [{"$unionWith": "b"}]}},
        {"$unionWith": {"coll": "b", "pipeline": []}},
        {
            "$graphLookup": {
                "from": "b",
                "startWith": "$k",
                "connectFromField": "k",
                "connectToField": "k",
                "as": "x",
            }
        },
        {"$facet": {"x": [{"$lookup": {"from": "b", "as": "y", "pipeline": []}}]}},
        {"$out": "b"},
        {"$merge": {"into": "b"}},
        {"$merge": {"into": {"db": "other", "coll": "a"}}},
        {"$out": {"db": "other", "coll": "a"}},
        {"$lookup": {"from": {"db": "other", "coll": "a"}, "as": "x", "pipeline": []}},
    ],
    ids=lambda s: next(iter(s)),
)
def test_mongo_pipelines_check_every_collection(mongo, stage):
    db, mine = mongo
    with pytest.raises(PermissionDenied, match="'b'|'\\*'"):
        mine.aggregate([stage]).execute()
    assert db.query(DatabaseType.MONGODB).collection("b").count().execute() == 1


def test_mongo_pipeline_on_own_collections_runs(mongo):
    _, mine = mongo
    mine.aggregate([{"$match": {"k": 1}}, {"$out": "a"}]).execute()  # no PermissionDenied


ACTIONS = ["select", "insert", "update", "delete", "ddl"]
RESOURCES = ["orders", "users", "user:1", "audit"]
ROLES = {
    "none": None,
    "reader": Role("reader", grants={"*": Permission.SELECT}),
    "writer": Role(
        "writer",
        grants={"orders": "INSERT|UPDATE|DELETE", "user:*": "INSERT|UPDATE"},
        inherits=("reader",),
    ),
    "admin": Role("admin", grants={"*": Permission.ALL}),
}
EXPECTED = {  # (role, action) -> the resources allowed
    ("reader", "select"): set(RESOURCES),
    ("writer", "select"): set(RESOURCES),
    ("writer", "insert"): {"orders", "user:1"},
    ("writer", "update"): {"orders", "user:1"},
    ("writer", "delete"): {"orders"},
    **{("admin", a): set(RESOURCES) for a in ACTIONS},
}


def test_s9_decision_matrix_and_its_cost():
    acl = AccessControl()
    for name, role in ROLES.items():
        if role is not None:
            acl.create_role(role)
            acl.assign_role(f"u_{name}", name)
    mismatches = [
        (name, action, resource)
        for name in ROLES
        for action in ACTIONS
        for resource in RESOURCES
        if acl.allowed(f"u_{name}", action, resource)
        != (resource in EXPECTED.get((name, action), set()))
    ]
    assert mismatches == []
    # The cost of one decision, cached and cold (after a change clears the cache).
    samples = []
    for i in range(2000):
        if i % 100 == 0:
            acl.create_role(ROLES["writer"])  # clears the caches
        start = time.perf_counter()
        acl.allowed("u_writer", ACTIONS[i % 5], RESOURCES[i % 4])
        samples.append(time.perf_counter() - start)
    p99 = statistics.quantiles(samples, n=100)[98]
    assert p99 < 50e-6, f"decision p99 {p99 * 1e6:.1f} us"
