"""Injection hardening: the payload corpus of ../shared/TEST-CATALOG.md (S1-S4, S7, S8)
pushed through every value and identifier entry point of the builders and raw parameters.

Values must be bound, never pasted: the built SQL never holds a payload, every payload
comes back byte-exact, the ``canary`` table keeps its row, and no time-based payload
sleeps. Identifier payloads are refused with ``QueryBuildError`` before any round trip.
"""

from __future__ import annotations

import time
import uuid

import pytest

from dbsystem import (
    DatabaseManager,
    DatabaseType,
    DataError,
    PoolConfig,
    ProgrammingError,
    QueryBuildError,
)
from dbsystem.query import col, escape_like
from dbsystem.testing import QueryCounter
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

# Payloads 1-22 (values) of the catalog's corpus.
VALUE_PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1-- ",
    '" OR ""="',
    "admin'--",
    "' OR 1=1#",
    "'; DROP TABLE canary;--",
    "1; DROP TABLE canary",
    "' UNION SELECT NULL,version()-- ",
    "' UNION SELECT usename,passwd FROM pg_shadow--",
    "1 AND 1=(SELECT COUNT(*) FROM canary)",
    "'; SELECT pg_sleep(5)--",
    "' OR SLEEP(5)-- ",
    "1 AND BENCHMARK(5000000,MD5(1))",
    "\\' OR 1=1-- ",
    "%' OR '%'='",
    "%",
    "_",
    "' AND extractvalue(1,concat(0x7e,version()))-- ",
    "'||(SELECT current_user)||'",
    "$$; DROP TABLE canary; $$",
    "/*!50000UNION*/ SELECT 1",
    "x'); INSERT INTO canary VALUES ('pwn",
    "0x61646d696e",
    "a\x00b",
    "\u02bc OR 1=1--",
    "\uff07 OR 1=1--",
]

# Payloads 23-26 and 29: identifiers.
IDENTIFIER_PAYLOADS = [
    "users; DROP TABLE canary--",
    'name" FROM canary;--',
    "a`; DROP TABLE canary;-- ",
    "(SELECT passwd FROM pg_shadow LIMIT 1)",
    "users ",
    '"users"',
    "x" * 64 + "; --",
    "a\x00b",
    "",
]

BACKENDS = SQL_BACKENDS
TYPES = SQL_TYPES


@pytest.fixture(scope="module", params=BACKENDS)
def db(request, tmp_path_factory):
    kind = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('inj')}/inj.db"
    else:
        url = request.getfixturevalue(f"{kind}_url")
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], PoolConfig(url=url, max_size=2))
    suffix = uuid.uuid4().hex[:8]
    manager.kind = kind  # type: ignore[attr-defined]
    manager.t = f"inj_{suffix}"  # type: ignore[attr-defined]
    manager.canary = f"canary_{suffix}"  # type: ignore[attr-defined]
    manager.execute(f"CREATE TABLE {manager.t} (id INTEGER PRIMARY KEY, name VARCHAR(200))")
    manager.execute(f"CREATE TABLE {manager.canary} (id INTEGER PRIMARY KEY)")
    manager.execute(f"INSERT INTO {manager.canary} VALUES (1)")
    yield manager
    manager.execute(f"DROP TABLE IF EXISTS {manager.t}")
    manager.execute(f"DROP TABLE IF EXISTS {manager.canary}")
    manager.close_all()


def _canary_intact(db) -> bool:
    return db.fetch_value(f"SELECT COUNT(*) FROM {db.canary}") == 1


@pytest.mark.parametrize("payload", VALUE_PAYLOADS, ids=range(1, len(VALUE_PAYLOADS) + 1))
def test_s1_values_are_bound_never_pasted(db, payload):
    q, t = db.query(), db.t
    db.execute(f"DELETE FROM {t}")
    db.execute(f"INSERT INTO {t} VALUES (1, 'alice'), (2, 'bob')")
    statements = [
        q.insert_into(t).values({"id": 3, "name": payload}),
        q.select("id", "name").from_(t).where("name", "=", payload),
        q.select("id").from_(t).where(col("name").in_([payload, "x"])),
        q.select("id").from_(t).where(col("name").like(escape_like(payload))),
        q.select("id").from_(t).where(col("name").between(payload, payload)),
        q.update(t).set(name=payload).where("id", "=", 2),
        q.insert_into(t).values({"id": 4, "name": payload}).upsert(conflict=["id"]),
    ]
    for index, statement in enumerate(statements):
        sql, params = statement.build()
        assert payload not in sql or payload in ("%", "_")  # "%" may be the pyformat marker
        if index != 3:  # like() binds the escaped pattern (as GLOB on SQLite)
            assert payload in params.values()

    start = time.perf_counter()
    if db.kind == "postgres" and "\x00" in payload:
        # PostgreSQL text cannot hold NUL: a clean, typed error, and nothing written.
        with pytest.raises(DataError, match="NUL|0x00"):
            statements[0].execute()
        assert db.fetch_value(f"SELECT COUNT(*) FROM {t}") == 2
        assert _canary_intact(db)
        return
    assert statements[0].execute() == 1
    assert statements[1].all() == [{"id": 3, "name": payload}]  # byte-exact, one row only
    assert [r["id"] for r in statements[2].all()] == [3]
    assert [r["id"] for r in statements[3].all()] == [3]  # the escaped payload, literally
    assert 3 in [r["id"] for r in statements[4].all()]
    assert statements[5].execute() == 1
    statements[6].execute()
    q.insert_into(t).values([{"id": 5, "name": payload}, {"id": 6, "name": "z"}]).execute()
    db.insert_many(t, [{"id": 7, "name": payload}])
    ids = [
        r["id"] for r in q.select("id").from_(t).where("name", "=", payload).order_by("id").all()
    ]
    assert ids == [2, 3, 4, 5, 7]
    assert db.fetch_value("SELECT :p AS p", {"p": payload}) == payload
    assert db.fetch_all(f"SELECT id FROM {t} WHERE name = :p ORDER BY id", {"p": payload}) == [
        {"id": i} for i in (2, 3, 4, 5, 7)
    ]
    assert time.perf_counter() - start < 4.0  # the sleep payloads would take 5 s each
    assert _canary_intact(db)


def _refused_before_any_round_trip(db, build) -> None:
    counter = QueryCounter()
    db.add_hook(counter)
    try:
        with pytest.raises(QueryBuildError):
            build().execute()
    finally:
        db.remove_hook(counter)
    assert counter.statements == []


@pytest.mark.parametrize("name", IDENTIFIER_PAYLOADS, ids=range(len(IDENTIFIER_PAYLOADS)))
def test_s2_identifier_payloads_are_refused_before_any_round_trip(db, name):
    q, t = db.query(), db.t
    builders = [
        lambda: q.select("id").from_(name),
        lambda: q.select(name).from_(t),
        lambda: q.select("id").from_(t, alias=name),
        lambda: q.select(col("id").as_(name)).from_(t),
        lambda: q.select("id").from_(t).where(name, "=", 1),
        lambda: q.select("id").from_(t).group_by(name),
        lambda: q.select("id").from_(t).order_by(name),
        lambda: q.insert_into(name).values({"id": 1}),
        lambda: q.insert_into(t).values({name: 1}),
        lambda: q.insert_into(t).values({"id": 1}).upsert(conflict=[name]),
        lambda: q.update(name).set(id=1).all_rows(),
        lambda: q.update(t).set({name: 1}).all_rows(),
        lambda: q.delete_from(name).all_rows(),
    ]
    for build in builders:
        _refused_before_any_round_trip(db, build)
    assert _canary_intact(db)


@pytest.mark.parametrize(
    "direction", ["id DESC; DROP TABLE canary", "desc;", "(CASE WHEN 1=1 THEN id END)", 1, None]
)
def test_s3_order_by_direction_is_asc_or_desc_only(db, direction):
    _refused_before_any_round_trip(
        db, lambda: db.query().select("id").from_(db.t).order_by("id", direction)
    )


@pytest.mark.parametrize(
    "count", ["1; DROP TABLE canary", -1, True, 1e9, "10 UNION SELECT 1", None]
)
def test_s4_limit_and_offset_take_non_negative_ints_only(db, count):
    base = db.query().select("id").from_(db.t)
    _refused_before_any_round_trip(db, lambda: base.limit(count))
    _refused_before_any_round_trip(db, lambda: base.offset(count))


# -- S7: MongoDB operators and JavaScript (mongomock) ---------------------------------------


@pytest.fixture
def mongo():
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.MONGODB, PoolConfig(url="mongodb+mock://localhost/inj"))
    users = manager.query(DatabaseType.MONGODB).collection("users")
    users.insert_many([{"user": "ada", "pw": "s3cret"}, {"user": "bob", "pw": "hunter2"}]).execute()
    yield manager, users
    manager.close_all()


@pytest.mark.parametrize(
    "payload",
    [
        {"$ne": None},
        {"$gt": ""},
        {"$regex": ".*"},
        {"$in": ["s3cret", "hunter2"]},
        {"$ne": 1},
        {"$where": "sleep(5000)||true"},
        "'; return true; var a='",
        [{"$ne": 1}],
    ],
    ids=str,
)
def test_s7_operator_payloads_in_values_are_data(mongo, payload):
    _, users = mongo
    login = users.where("user", "=", "ada").where("pw", "=", payload).count()
    assert login.execute() == 0  # the login-bypass model finds nobody


@pytest.mark.parametrize(
    "document",
    [
        {"$where": "sleep(5000)||true"},
        {"$or": [{}, {"$where": "true"}]},
        {"$expr": {"$function": {"body": "return true", "args": [], "lang": "js"}}},
        {"a\x00b": 1},
    ],
    ids=str,
)
def test_s7_javascript_and_nul_field_names_are_refused(mongo, document):
    _, users = mongo
    with pytest.raises(QueryBuildError):
        users.find(document).execute()


@pytest.mark.parametrize("field", ["$set", "", "a\x00b", 5])
def test_s7_field_name_payloads_are_refused(mongo, field):
    _, users = mongo
    with pytest.raises(QueryBuildError):
        users.where(field, "=", 1).execute()
    with pytest.raises(QueryBuildError):
        users.sort(field).execute()


# -- S8: Redis (fakeredis and the real server) -----------------------------------------------

REDIS_BACKENDS = [
    pytest.param("mock", id="fakeredis"),
    pytest.param("real", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=REDIS_BACKENDS)
def redis(request):
    url = "redis+mock://" if request.param == "mock" else request.getfixturevalue("redis_url")
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.REDIS, PoolConfig(url=url, max_size=2))
    conn = manager.connection(DatabaseType.REDIS)
    conn.execute("FLUSHDB")
    conn.execute("SET", "canary", "1")
    yield manager, conn
    conn.execute("FLUSHDB")
    manager.close_all()


@pytest.mark.parametrize(
    "payload",
    [
        "foo\r\nFLUSHALL\r\n",
        "*1\r\n$8\r\nFLUSHALL\r\n",
        "tenantA:../tenantB:x",
        "{tenantB}x",
        "a\x00b",
    ],
    ids=range(5),
)
def test_s8_values_and_keys_are_argv_never_split(redis, payload):
    db, conn = redis
    q = db.query(DatabaseType.REDIS)
    q.set(payload, payload).execute()
    q.hset("h", {payload: payload}).execute()
    assert q.get(payload).execute() == payload
    assert q.hget("h", payload).execute() == payload
    assert conn.execute("GET", "canary") == "1"
    assert conn.execute("DBSIZE") == 3


def test_s8_big_values_round_trip(redis):
    db, conn = redis
    big = "x" * (1 << 20)
    db.query(DatabaseType.REDIS).set("big", big).execute()
    assert conn.execute("STRLEN", "big") == 1 << 20


def test_s8_scan_patterns_are_the_callers_glob(redis):
    _, conn = redis
    for key in ("user:1", "user:[a-z]*", "user:*x"):
        conn.execute("SET", key, "v")
    assert sorted(conn.scan(match="user:*")) == ["user:*x", "user:1", "user:[a-z]*"]
    assert list(conn.scan(match="user:\\[a-z\\]\\*")) == ["user:[a-z]*"]  # escaped: literal


@pytest.mark.parametrize("params", [None, {"p": 1}], ids=["no-params", "params"])
def test_s5_stacked_statements_are_refused_on_every_backend(db, params):
    stacked = f"SELECT 1 AS a; DELETE FROM {db.canary}"
    if params:
        stacked = f"SELECT :p AS a; DELETE FROM {db.canary}"
    for call in (db.execute, db.fetch_all, db.fetch_one):
        with pytest.raises(ProgrammingError):
            call(stacked, params)
    assert _canary_intact(db)
    # Semicolons that are data, comments or a trailing terminator are not a second statement.
    assert db.fetch_value("SELECT 'a;b' AS x") == "a;b"
    assert db.fetch_value("SELECT 1 AS x; ") == 1
    assert db.fetch_value("SELECT 2 AS x /* ; */") == 2
