"""Attacks on Redis and MongoDB from user sessions (issue 19), each refused with no effect.

Table-driven: every case is something a user session tries that its grants do not allow.
Redis cases run on the real server (``DBSYSTEM_TEST_REDIS_URL``, the suite's own database)
and on ``redis+mock://`` (fakeredis), sync and async; the few that would harm a shared
server if a check ever let them through (FLUSHALL, SHUTDOWN, CONFIG SET, other databases...)
run on fakeredis only. MongoDB cases run on mongomock, sync and async. Each case asserts
``PermissionDenied``, that the audit log recorded the refusal, and that nothing changed
(every key, every document, compared before and after). The positive cases at the end
check that what the grants allow still works.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.errors import DBSystemError, QueryBuildError
from dbsystem.query import col
from dbsystem.security import AccessControl, AuditLog, MemoryAuditSink, Permission, Role
from dbsystem.streams import StreamProcessor
from dbsystem.streams.redis import RedisChannelListener, RedisStreamConsumer

OWNER = "SELECT|INSERT|UPDATE|DELETE"

# -- Redis ----------------------------------------------------------------------------------

# Who attacks: "reader" holds SELECT on user:* keys; "owner" every data permission on them.
# Neither holds anything on admin:* keys, ADMIN or EXECUTE.
R, W = "reader", "owner"

# (user, command). "admin:*" keys hold the victim's data; "user:*" keys the attacker's.
REDIS_ATTACKS: list[tuple[str, tuple[Any, ...]]] = [
    # writes to keys out of the grant, behind every kind of key position
    (W, ("SET", "admin:pw", "x")),
    (W, ("SET", "admin:pw", "x", "GET")),
    (W, ("SETEX", "admin:pw", "100", "x")),
    (W, ("SETNX", "admin:new", "x")),
    (W, ("SETRANGE", "admin:pw", "0", "x")),
    (W, ("APPEND", "admin:pw", "x")),
    (W, ("INCR", "admin:n")),
    (W, ("INCRBYFLOAT", "admin:n", "1.5")),
    (W, ("GETDEL", "admin:pw")),
    (W, ("GETEX", "admin:pw", "EX", "100")),
    (W, ("MSET", "user:a", "1", "admin:pw", "x")),
    (W, ("MSETNX", "user:new", "1", "admin:new", "2")),
    (W, ("DEL", "user:a", "admin:pw")),
    (W, ("UNLINK", "admin:pw")),
    (W, ("EXPIRE", "admin:pw", "100")),
    (W, ("PEXPIREAT", "admin:pw", "1")),
    (W, ("RENAME", "user:a", "admin:pw")),
    (W, ("RENAME", "admin:pw", "user:stolen")),
    (W, ("RENAMENX", "user:a", "admin:new")),
    (W, ("COPY", "user:a", "admin:copy")),
    (W, ("COPY", "admin:pw", "user:copy")),
    (W, ("HSET", "admin:h", "f", "x")),
    (W, ("HINCRBY", "admin:h", "n", "1")),
    (W, ("HDEL", "admin:h", "f")),
    (W, ("LPUSH", "admin:l", "x")),
    (W, ("LPOP", "admin:l")),
    (W, ("LSET", "admin:l", "0", "x")),
    (W, ("SADD", "admin:s", "x")),
    (W, ("SPOP", "admin:s")),
    (W, ("SMOVE", "admin:s", "user:s", "m")),
    (W, ("SMOVE", "user:s", "admin:s", "m")),
    (W, ("ZADD", "admin:z", "1", "x")),
    (W, ("ZPOPMIN", "admin:z")),
    (W, ("XADD", "admin:x", "*", "f", "v")),
    (W, ("XTRIM", "admin:x", "MAXLEN", "0")),
    (W, ("XGROUP", "CREATE", "admin:x", "g", "$", "MKSTREAM")),
    (W, ("PFADD", "admin:hll", "x")),
    (W, ("LMOVE", "user:l", "admin:l", "LEFT", "RIGHT")),
    (W, ("LMOVE", "admin:l", "user:l", "LEFT", "RIGHT")),
    (W, ("RPOPLPUSH", "user:l", "admin:l")),
    (W, ("BLMOVE", "admin:l", "user:l", "LEFT", "LEFT", "0.01")),
    (W, ("LMPOP", "2", "user:e", "admin:l", "LEFT")),
    (W, ("ZMPOP", "2", "user:e", "admin:z", "MIN")),
    (W, ("BLPOP", "user:e", "admin:l", "0.01")),
    (W, ("BZPOPMIN", "user:e", "admin:z", "0.01")),
    (W, ("SUNIONSTORE", "admin:d", "user:s")),
    (W, ("SINTERSTORE", "user:d", "admin:s")),
    (W, ("SDIFFSTORE", "admin:d", "user:s")),
    (W, ("ZUNIONSTORE", "admin:z", "1", "user:z")),
    (W, ("ZUNIONSTORE", "user:d", "2", "user:z", "admin:z")),
    (W, ("ZINTERSTORE", "admin:z", "1", "user:z")),
    (W, ("ZDIFFSTORE", "admin:z", "1", "user:z")),
    (W, ("ZRANGESTORE", "admin:z", "user:z", "0", "-1")),
    (W, ("ZRANGESTORE", "user:d", "admin:z", "0", "-1")),
    (W, ("BITOP", "OR", "admin:pw", "user:a")),
    (W, ("BITOP", "OR", "user:d", "admin:pw")),
    (W, ("PFMERGE", "admin:hll", "user:h")),
    (W, ("GEORADIUS", "user:g", "13.36", "38.11", "100", "km", "STORE", "admin:g")),
    (W, ("GEORADIUS", "user:g", "13.36", "38.11", "100", "km", "STOREDIST", "admin:g")),
    (W, ("GEORADIUSBYMEMBER", "user:g", "p", "100", "km", "STORE", "admin:g")),
    (
        W,
        ("GEOSEARCHSTORE", "admin:g", "user:g", "FROMLONLAT", "13.36", "38.11")
        + ("BYRADIUS", "100", "km"),
    ),
    (W, ("SORT", "user:l", "STORE", "admin:l")),
    (W, ("SORT", "user:l", "ALPHA", "DESC", "STORE", "admin:l")),
    (W, ("RESTORE", "user:r", "0", "payload")),
    # reads of keys out of the grant
    (R, ("GET", "admin:pw")),
    (R, ("MGET", "user:a", "admin:pw")),
    (R, ("EXISTS", "admin:pw")),
    (R, ("TYPE", "admin:pw")),
    (R, ("STRLEN", "admin:pw")),
    (R, ("GETRANGE", "admin:pw", "0", "-1")),
    (R, ("TTL", "admin:pw")),
    (R, ("DUMP", "admin:pw")),
    (R, ("HGETALL", "admin:h")),
    (R, ("HSCAN", "admin:h", "0")),
    (R, ("LRANGE", "admin:l", "0", "-1")),
    (R, ("SMEMBERS", "admin:s")),
    (R, ("SUNION", "user:s", "admin:s")),
    (R, ("SINTERCARD", "2", "user:s", "admin:s")),
    (R, ("ZRANGE", "admin:z", "0", "-1")),
    (R, ("ZUNION", "2", "user:z", "admin:z")),
    (R, ("XRANGE", "admin:x", "-", "+")),
    (R, ("XREAD", "COUNT", "1", "STREAMS", "user:x", "admin:x", "0", "0")),
    (R, ("PFCOUNT", "user:h", "admin:hll")),
    (R, ("LCS", "user:a", "admin:pw")),
    (R, ("GEOPOS", "admin:g", "p")),
    (R, ("OBJECT", "ENCODING", "admin:pw")),
    (R, ("MEMORY", "USAGE", "admin:pw")),
    (R, ("SORT", "user:l", "BY", "admin:*")),
    (R, ("SORT", "user:l", "BY", "nosort", "GET", "admin:*")),
    (R, ("SORT", "user:l", "GET", "#", "GET", "admin:h->f")),
    (R, ("SORT_RO", "user:l", "GET", "admin:*")),
    (R, ("SORT_RO", "user:l", "BY", "*", "GET", "#")),
    # reads the reader may not turn into writes on its own keys
    (R, ("SET", "user:a", "x")),
    (R, ("DEL", "user:a")),
    (R, ("LPOP", "user:l")),
    (R, ("GETDEL", "user:a")),
    (R, ("SPOP", "user:s")),
    (R, ("INCR", "user:n")),
    (R, ("SORT", "user:l", "STORE", "user:l2")),
    (R, ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "user:x", ">")),
    # the whole keyspace
    (W, ("KEYS", "*")),
    (W, ("KEYS", "admin:*")),
    (W, ("SCAN", "0")),
    (W, ("SCAN", "0", "MATCH", "admin:*")),
    (W, ("SCAN", "0", "MATCH", "us*")),
    (W, ("SCAN", "0", "MATCH", "*", "COUNT", "10")),
    (W, ("RANDOMKEY",)),
    (W, ("DBSIZE",)),
    (W, ("FLUSHDB",)),
    # server administration
    (W, ("INFO",)),
    (W, ("INFO", "keyspace")),
    (W, ("SLOWLOG", "GET")),
    (W, ("SLOWLOG", "LEN")),
    (W, ("CONFIG", "GET", "maxmemory")),
    (W, ("LASTSAVE",)),
    (W, ("LATENCY", "LATEST")),
    (W, ("MEMORY", "STATS")),
    (W, ("MEMORY", "DOCTOR")),
    (W, ("COMMAND", "COUNT")),
    (W, ("ACL", "WHOAMI")),
    (W, ("ACL", "LIST")),
    (W, ("MODULE", "LIST")),
    (W, ("FUNCTION", "LIST")),
    (W, ("SCRIPT", "EXISTS", "abc")),
    (W, ("ROLE",)),
    (W, ("WAIT", "0", "0")),
    (W, ("OBJECT", "HELP")),
    # the pooled connection's state
    (W, ("SELECT", "1")),
    (W, ("AUTH", "nobody", "guess")),
    (W, ("HELLO", "3", "AUTH", "default", "guess")),
    (W, ("RESET",)),
    (W, ("CLIENT", "LIST")),
    (W, ("CLIENT", "SETNAME", "ann")),
    (W, ("CLIENT", "ID")),
    (W, ("MULTI",)),
    (W, ("EXEC",)),
    (W, ("DISCARD",)),
    (W, ("WATCH", "user:a")),
    (W, ("UNWATCH",)),
    (W, ("READONLY",)),
    (W, ("SUBSCRIBE", "admin:cmdspec:ch")),
    (W, ("PSUBSCRIBE", "*")),
    (W, ("SSUBSCRIBE", "user:cmdspec:ch")),
    (W, ("UNSUBSCRIBE",)),
    # channels
    (W, ("PUBLISH", "admin:cmdspec:ch", "forged")),
    (W, ("SPUBLISH", "admin:cmdspec:ch", "forged")),
    (W, ("PUBSUB", "CHANNELS")),
    (W, ("PUBSUB", "CHANNELS", "admin:*")),
    (W, ("PUBSUB", "NUMSUB", "admin:cmdspec:ch")),
    (W, ("PUBSUB", "NUMPAT")),
    # scripts: EXECUTE on every key, besides their declared keys
    (W, ("EVAL", "return redis.call('GET', 'admin:pw')", "0")),
    (W, ("EVAL", "return 1", "1", "user:a")),
    (W, ("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "admin:pw")),
    (W, ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0")),
    (W, ("EVALSHA_RO", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0")),
    (W, ("FCALL", "fn", "0")),
    (W, ("FCALL_RO", "fn", "1", "user:a")),
    (W, ("SCRIPT", "LOAD", "return 1")),
    # commands the table does not know (a module's, a misspelling)
    (W, ("JSON.GET", "user:a")),
    (W, ("FT.SEARCH", "idx", "*")),
    (W, ("GETT", "user:a")),
    (W, ("OBJECT", "NOSUCH", "user:a")),
    # malformed key counts: the keys cannot be read, so the command is refused
    (W, ("ZUNIONSTORE", "user:d", "x", "user:z")),
    (W, ("LMPOP", "-1", "user:l", "LEFT")),
]

# Harmful on a shared server if ever let through: fakeredis only.
REDIS_MOCK_ONLY: list[tuple[str, tuple[Any, ...]]] = [
    (W, ("COPY", "user:a", "user:b", "DB", "3")),
    (W, ("MOVE", "user:a", "3")),
    (W, ("SWAPDB", "0", "3")),
    (W, ("FLUSHALL",)),
    (W, ("CONFIG", "SET", "maxmemory", "1")),
    (W, ("CONFIG", "RESETSTAT")),
    (W, ("SLOWLOG", "RESET")),
    (W, ("SAVE",)),
    (W, ("BGSAVE",)),
    (W, ("BGREWRITEAOF",)),
    (W, ("SHUTDOWN", "NOSAVE")),
    (W, ("FAILOVER",)),
    (W, ("REPLICAOF", "127.0.0.1", "1")),
    (W, ("SLAVEOF", "127.0.0.1", "1")),
    (W, ("DEBUG", "SLEEP", "0")),
    (W, ("MONITOR",)),
    (W, ("MIGRATE", "127.0.0.1", "1", "user:a", "0", "10")),
    (W, ("MIGRATE", "127.0.0.1", "1", "", "0", "10", "KEYS", "user:a")),
    (W, ("CLIENT", "KILL", "TYPE", "normal")),
    (W, ("CLIENT", "PAUSE", "10")),
    (W, ("CLIENT", "REPLY", "OFF")),
    (W, ("ACL", "SETUSER", "ann", "on", "+@all")),
    (W, ("MODULE", "LOAD", "/tmp/x.so")),
    (W, ("FUNCTION", "FLUSH")),
    (W, ("SCRIPT", "FLUSH")),
    (W, ("CLUSTER", "RESET")),
]


def _case_id(case: tuple[str, tuple[Any, ...]]) -> str:
    user, command = case
    return f"{user}-" + "-".join(str(w) for w in command[:3])


def _redis_acl() -> AccessControl:
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"user:*": Permission.SELECT}))
    acl.create_role(Role("owner", grants={"user:*": OWNER}))
    acl.assign_role(R, "reader")
    acl.assign_role(W, "owner")
    return acl


_SETUP = [
    ("SET", "admin:pw", "secret"),
    ("SET", "admin:n", "5"),
    ("HSET", "admin:h", "f", "v"),
    ("RPUSH", "admin:l", "a", "b"),
    ("SADD", "admin:s", "m"),
    ("ZADD", "admin:z", "1", "m"),
    ("XADD", "admin:x", "1-1", "f", "v"),
    ("PFADD", "admin:hll", "a"),
    ("GEOADD", "admin:g", "13.36", "38.11", "p"),
    ("SET", "user:a", "1"),
    ("RPUSH", "user:l", "3", "1", "2"),
    ("SADD", "user:s", "m"),
    ("ZADD", "user:z", "1", "m"),
    ("GEOADD", "user:g", "13.36", "38.11", "p"),
    ("PFADD", "user:h", "a"),
    ("XADD", "user:x", "1-1", "f", "v"),
]
_PREFIXES = ("admin:", "user:")


def _snapshot(conn: Any) -> dict[str, Any]:
    """Every key of the test's prefixes: its type, value and whether it expires."""
    found = {}
    for prefix in _PREFIXES:
        for key in conn.scan(match=prefix + "*"):
            kind = conn.execute("TYPE", key)
            read = {
                "string": ("GET", key),
                "hash": ("HGETALL", key),
                "list": ("LRANGE", key, "0", "-1"),
                "set": ("SMEMBERS", key),
                "zset": ("ZRANGE", key, "0", "-1", "WITHSCORES"),
                "stream": ("XRANGE", key, "-", "+"),
            }[kind]
            try:
                value = conn.execute(*read)
            except (UnicodeDecodeError, DBSystemError):  # binary (a HyperLogLog): its count
                value = conn.execute("PFCOUNT", key)
            if isinstance(value, (set, list)) and kind == "set":
                value = sorted(value)
            found[key] = (kind, repr(value), conn.execute("PTTL", key) > 0)
    return found


class _RedisWorld:
    """A manager with the attack's data, access control and an audit log."""

    def __init__(self, target: str) -> None:
        self.db = DatabaseManager()
        self.db.create_pool(DatabaseType.REDIS, target)
        self.app = self.db.connection(DatabaseType.REDIS)
        self.clean()
        for command in _SETUP:
            self.app.execute(*command)
        self.db.use_access_control(_redis_acl())
        self.audit = MemoryAuditSink()
        self.db.add_hook(AuditLog([self.audit]))

    def clean(self) -> None:
        keys = [k for prefix in _PREFIXES for k in self.app.scan(match=prefix + "*")]
        if keys:
            self.app.execute("DEL", *keys)

    def close(self) -> None:
        self.clean()
        self.db.close_all()

    def denied(self, user: str) -> list[Any]:
        return [e for e in self.audit.events if e.user == user and e.outcome == "denied"]


@pytest.fixture
def redis_world(redis_target):
    world = _RedisWorld(redis_target)
    yield world
    world.close()


@pytest.fixture
def mock_world():
    world = _RedisWorld("redis+mock://")
    yield world
    world.close()


def _attack_sync(world: _RedisWorld, user: str, command: tuple[Any, ...]) -> None:
    before = _snapshot(world.app)
    session = world.db.for_user(user)
    with pytest.raises(PermissionDenied):
        session.connection(DatabaseType.REDIS).execute(*command)
    with pytest.raises(PermissionDenied):  # in a pipeline, beside an allowed command
        session.connection(DatabaseType.REDIS).pipeline([("GET", "user:a"), command])
    with pytest.raises(PermissionDenied):  # in a MULTI/EXEC transaction
        session.connection(DatabaseType.REDIS).pipeline(
            [("GET", "user:a"), command], transaction=True
        )
    assert len(world.denied(user)) == 3
    assert _snapshot(world.app) == before


@pytest.mark.parametrize("case", REDIS_ATTACKS, ids=_case_id)
def test_redis_attack_is_refused(redis_world, case):
    _attack_sync(redis_world, *case)


@pytest.mark.parametrize("case", REDIS_MOCK_ONLY, ids=_case_id)
def test_redis_attack_harmful_to_a_shared_server_is_refused(mock_world, case):
    _attack_sync(mock_world, *case)


# The async sessions: the same table through AsyncDatabaseManager and redis.asyncio.


@pytest.mark.parametrize("case", REDIS_ATTACKS[::3], ids=_case_id)
def test_redis_attack_is_refused_async(redis_target, case):
    _attack_async(redis_target, *case)


@pytest.mark.parametrize("case", REDIS_MOCK_ONLY[::4], ids=_case_id)
def test_redis_attack_harmful_to_a_shared_server_is_refused_async(case):
    _attack_async("redis+mock://", *case)


def _attack_async(target: str, user: str, command: tuple[Any, ...]) -> None:
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.REDIS, target)
        app = adb.sync.connection(DatabaseType.REDIS)  # the same server, synchronously
        world = _SyncView(app)
        try:
            world.clean()
            async with adb.connection(DatabaseType.REDIS) as redis:
                for setup in _SETUP:
                    await redis.execute(*setup)
            adb.use_access_control(_redis_acl())
            audit = MemoryAuditSink()
            adb.add_hook(AuditLog([audit]))
            before = _snapshot(app)
            session = adb.for_user(user)
            async with session.connection(DatabaseType.REDIS) as redis:
                with pytest.raises(PermissionDenied):
                    await redis.execute(*command)
                with pytest.raises(PermissionDenied):
                    await redis.pipeline([("GET", "user:a"), command], transaction=True)
            q = session.query(DatabaseType.REDIS)
            with pytest.raises(PermissionDenied):  # the builder's chain, every command
                await q.get("user:a")._add(*command).multi().execute()
            assert [e.outcome for e in audit.events if e.user == user] == ["denied"] * 3
            assert _snapshot(app) == before
        finally:
            world.clean()
            await adb.close_all()

    asyncio.run(main())


class _SyncView:
    def __init__(self, app: Any) -> None:
        self.app = app

    def clean(self) -> None:
        keys = [k for prefix in _PREFIXES for k in self.app.scan(match=prefix + "*")]
        if keys:
            self.app.execute("DEL", *keys)


# -- Redis: the routes besides execute and pipeline ------------------------------------------

SCAN_ATTACKS = [None, "*", "admin:*", "us*", "?ser:*", "[a-z]*"]


@pytest.mark.parametrize("match", SCAN_ATTACKS, ids=str)
def test_redis_scan_beyond_the_grant_is_refused(redis_world, match):
    session = redis_world.db.for_user(W)
    with pytest.raises(PermissionDenied):
        list(session.connection(DatabaseType.REDIS).scan(match=match))
    with pytest.raises(PermissionDenied):
        list(session.query(DatabaseType.REDIS).scan(match=match))
    assert len(redis_world.denied(W)) == 2


def test_redis_scan_within_the_grant_works(redis_world):
    session = redis_world.db.for_user(R)
    keys = set(session.connection(DatabaseType.REDIS).scan(match="user:*"))
    assert "user:a" in keys
    assert not any(k.startswith("admin:") for k in keys)


SUBSCRIBE_ATTACKS = [
    (("admin:cmdspec:ch",), False),
    (("user:cmdspec:ch", "admin:cmdspec:ch"), False),
    (("*",), True),
    (("admin:*",), True),
    (("us*",), True),
    (("user?*",), True),
    (("[ua]ser:*",), True),
]


def _numsub(app: Any, channel: str) -> int:
    return int(app.execute("PUBSUB", "NUMSUB", channel)[1])


@pytest.mark.parametrize(("channels", "patterns"), SUBSCRIBE_ATTACKS, ids=str)
def test_redis_subscribe_beyond_the_grant_is_refused_and_audited(redis_world, channels, patterns):
    session = redis_world.db.for_user(R)
    with pytest.raises(PermissionDenied):
        session.connection(DatabaseType.REDIS).subscribe(*channels, patterns=patterns)
    with pytest.raises(PermissionDenied):
        RedisChannelListener(session, channels, patterns=patterns).start()
    with pytest.raises(PermissionDenied):
        StreamProcessor(session).redis_pubsub(*channels, patterns=patterns)
    assert [e.outcome for e in redis_world.audit.events if e.user == R] == ["denied"] * 3
    assert _numsub(redis_world.app, "admin:cmdspec:ch") == 0


@pytest.mark.parametrize(
    "channels", [("admin:cmdspec:s",), ("user:cmdspec:s", "admin:cmdspec:s")], ids=str
)
def test_redis_sharded_subscribe_beyond_the_grant_is_refused(redis_world, channels):
    session = redis_world.db.for_user(R)
    with pytest.raises(PermissionDenied):
        session.connection(DatabaseType.REDIS).subscribe(*channels, sharded=True)
    assert [e.outcome for e in redis_world.audit.events if e.user == R] == ["denied"]
    shards = redis_world.app.execute("PUBSUB", "SHARDNUMSUB", "admin:cmdspec:s")
    assert int(shards[1]) == 0


def test_redis_subscription_within_the_grant_is_audited_and_receives(redis_world):
    session = redis_world.db.for_user(R)
    channel = f"user:cmdspec:{uuid.uuid4().hex[:6]}"
    with session.connection(DatabaseType.REDIS).subscribe("user:cmdspec:*", patterns=True) as sub:
        redis_world.app.publish(channel, "hello")
        assert sub.get(2.0) == {"channel": channel, "data": "hello"}
    assert [(e.action, e.outcome) for e in redis_world.audit.events if e.user == R] == [
        ("select", "ok")
    ]


def test_redis_stream_consumer_of_a_user_is_checked(redis_world):
    session = redis_world.db.for_user(R)  # SELECT only: the group needs INSERT and UPDATE
    with pytest.raises(PermissionDenied):
        RedisStreamConsumer(session, "user:x", group="g", consumer="c").start()
    with pytest.raises(PermissionDenied):
        StreamProcessor(session).redis_stream("admin:x", group="g", consumer="c")
    assert redis_world.app.execute("XINFO", "GROUPS", "user:x") == []
    owner = redis_world.db.for_user(W)
    consumer = RedisStreamConsumer(owner, "user:x", group="g", consumer="c", start_id="0")
    with consumer.start():
        event = consumer.get(2.0)
    assert event is not None
    assert event.payload == {"f": "v"}
    assert [e.outcome for e in redis_world.audit.events if e.user == W] == ["ok"]


OPTIMISTIC_ATTACKS = {
    "watch another key": (("admin:pw",), lambda pipe: None),
    "read another key before multi": (("user:a",), lambda pipe: pipe.get("admin:pw")),
    "queue a write to another key": (
        ("user:a",),
        lambda pipe: (pipe.multi(), pipe.set("admin:pw", "x")),
    ),
    "queue an admin command": (("user:a",), lambda pipe: (pipe.multi(), pipe.flushdb())),
    "queue a script": (
        ("user:a",),
        lambda pipe: (pipe.multi(), pipe.eval("return redis.call('DEL', 'admin:pw')", 0)),
    ),
    "switch databases": (("user:a",), lambda pipe: pipe.execute_command("SELECT", "1")),
    "read beyond the grant": (("user:a",), lambda pipe: (pipe.multi(), pipe.delete("user:a"))),
}


@pytest.mark.parametrize("name", OPTIMISTIC_ATTACKS)
def test_redis_optimistic_checks_every_command(redis_world, name):
    watch, func = OPTIMISTIC_ATTACKS[name]
    user = R if name == "read beyond the grant" else W
    before = _snapshot(redis_world.app)
    with pytest.raises(PermissionDenied):
        redis_world.db.for_user(user).connection(DatabaseType.REDIS).optimistic(func, *watch)
    assert redis_world.denied(user)
    assert _snapshot(redis_world.app) == before


def test_redis_optimistic_within_the_grant_works_and_is_audited(redis_world):
    conn = redis_world.db.for_user(W).connection(DatabaseType.REDIS)

    def bump(pipe: Any) -> int:
        value = int(pipe.get("user:a"))
        pipe.multi()
        pipe.set("user:a", value + 1)
        return value

    assert conn.optimistic(bump, "user:a") == 1
    assert redis_world.app.execute("GET", "user:a") == "2"
    seen = [(e.operation, e.outcome) for e in redis_world.audit.events if e.user == W]
    assert seen == [("command", "ok"), ("command", "ok"), ("pipeline", "ok")]


# -- Redis: what the grants allow still works -------------------------------------------------

REDIS_ALLOWED: list[tuple[str, tuple[Any, ...]]] = [
    (R, ("GET", "user:a")),
    (R, ("MGET", "user:a", "user:b")),
    (R, ("HGETALL", "user:h2")),
    (R, ("LRANGE", "user:l", "0", "-1")),
    (R, ("SORT", "user:l", "BY", "user:*", "GET", "#")),
    (R, ("XRANGE", "user:x", "-", "+")),
    (R, ("XREAD", "STREAMS", "user:x", "0")),
    (R, ("STRLEN", "user:a")),
    (R, ("PING",)),
    (W, ("SET", "user:b", "x")),
    (W, ("HSET", "user:h2", "f", "v")),
    (W, ("ZADD", "user:z", "2", "n")),
    (W, ("XADD", "user:x", "*", "f", "v")),
    (W, ("RENAME", "user:a", "user:c")),
    (W, ("SUNIONSTORE", "user:d", "user:s")),
    (W, ("SORT", "user:l", "STORE", "user:sorted")),
    (W, ("GEORADIUS", "user:g", "13.36", "38.11", "100", "km", "STORE", "user:near")),
    (W, ("PUBLISH", "user:cmdspec:ch", "hi")),
]


@pytest.mark.parametrize("case", REDIS_ALLOWED, ids=_case_id)
def test_redis_granted_commands_still_work(redis_world, case):
    user, command = case
    session = redis_world.db.for_user(user)
    session.connection(DatabaseType.REDIS).execute(*command)
    assert [e.outcome for e in redis_world.audit.events if e.user == user] == ["ok"]


def test_redis_granted_builder_commands_still_work(redis_world):
    q = redis_world.db.for_user(W).query(DatabaseType.REDIS)
    assert q.set("user:k", "v").execute() is True
    assert q.get("user:k").execute() == "v"
    assert q.hset("user:hh", {"a": 1}).hgetall("user:hh").execute() == [1, {"a": "1"}]
    assert q.zadd("user:zz", {"m": 1}).multi().execute() == [1]


# -- MongoDB ----------------------------------------------------------------------------------

TENANT = 1


def _mongo_acl() -> AccessControl:
    acl = AccessControl()
    acl.create_role(
        Role(
            "tenant",
            grants={"orders": OWNER, "public": OWNER, "nested": OWNER},
            policies={
                "orders": lambda ctx: col("tenant_id") == ctx.attrs["tenant"],
                "nested": lambda ctx: col("meta.tenant") == ctx.attrs["tenant"],
            },
        )
    )
    acl.assign_role("ann", "tenant")
    return acl


_DOCS = {
    "orders": [
        {"_id": 1, "tenant_id": 1, "n": 1, "tags": ["a"], "meta": {"tenant_id": 1}},
        {"_id": 2, "tenant_id": 2, "n": 2, "tags": ["b"], "meta": {"tenant_id": 2}},
    ],
    "public": [{"_id": 1, "n": 1}],
    "nested": [{"_id": 1, "meta": {"tenant": 1, "x": 1}}, {"_id": 2, "meta": {"tenant": 2}}],
    "secrets": [{"_id": 1, "s": "x"}],
}


def _mongo_state(db: Any) -> dict[str, Any]:
    q = db.query(DatabaseType.MONGODB)
    return {name: q.collection(name).sort("_id").all() for name in (*_DOCS, "stolen")}


def _orders(session: Any) -> Any:
    return session.query(DatabaseType.MONGODB).collection("orders")


def _on(name: str) -> Any:
    return lambda s: s.query(DatabaseType.MONGODB).collection(name)


def _update(change: Any, many: bool = False, **where: Any) -> Any:
    def run(s: Any) -> Any:
        target = _orders(s).where(col("_id") == where.get("_id", 1))
        return target.update_many(change) if many else target.update_one(change)

    return run


def _nested(change: Any) -> Any:
    return lambda s: _on("nested")(s).where(col("_id") == 1).update_one(change)


# Each builds the attack from the session; .execute() is called by the test.
MONGO_ATTACKS: dict[str, Any] = {
    # update operators that move a document to another tenant or strip its tenant
    "$set to another tenant": _update({"$set": {"tenant_id": 2}}),
    "$set many to another tenant": _update({"$set": {"tenant_id": 2}}, many=True),
    "$set dotted into the policy field": _update({"$set": {"tenant_id.x": 2}}),
    "$set positional into the policy field": _update({"$set": {"tenant_id.$": 2}}),
    "$set all-positional into the policy field": _update({"$set": {"tenant_id.$[]": 2}}),
    "$setOnInsert another tenant": _update({"$setOnInsert": {"tenant_id": 2}}),
    "$unset": _update({"$unset": {"tenant_id": ""}}),
    "$inc": _update({"$inc": {"tenant_id": 1}}),
    "$mul": _update({"$mul": {"tenant_id": 2}}),
    "$rename the field away": _update({"$rename": {"tenant_id": "t"}}),
    "$rename onto the field": _update({"$rename": {"n": "tenant_id"}}),
    "$min": _update({"$min": {"tenant_id": 0}}),
    "$max": _update({"$max": {"tenant_id": 9}}),
    "$currentDate": _update({"$currentDate": {"tenant_id": True}}),
    "$push": _update({"$push": {"tenant_id": 2}}),
    "$addToSet": _update({"$addToSet": {"tenant_id": 2}}),
    "$pop": _update({"$pop": {"tenant_id": 1}}),
    "$pull": _update({"$pull": {"tenant_id": 1}}),
    "$pullAll": _update({"$pullAll": {"tenant_id": [1]}}),
    "$bit": _update({"$bit": {"tenant_id": {"or": 2}}}),
    "upsert": lambda s: (
        _orders(s).where(col("_id") == 9).update_one({"$set": {"n": 1}}, upsert=True)
    ),
    # a policy on a field of an embedded document (col("meta.tenant"))
    "nested $set the field": _nested({"$set": {"meta.tenant": 2}}),
    "nested $set the parent to another tenant": _nested({"$set": {"meta": {"tenant": 2}}}),
    "nested $set the parent without it": _nested({"$set": {"meta": {"x": 1}}}),
    "nested $set the parent with another case": _nested({"$set": {"meta": {"TENANT": 1}}}),
    "nested $inc the field": _nested({"$inc": {"meta.tenant": 1}}),
    "nested $unset the parent": _nested({"$unset": {"meta": ""}}),
    "nested $rename the parent": _nested({"$rename": {"meta": "m"}}),
    "nested $set below the field": _nested({"$set": {"meta.tenant.x": 1}}),
    "nested pipeline $set the parent": _nested([{"$set": {"meta": {"x": 1}}}]),
    "nested insert for another tenant": lambda s: _on("nested")(s).insert_one(
        {"meta": {"tenant": 2}}
    ),
    "nested insert with another case": lambda s: _on("nested")(s).insert_one(
        {"meta": {"TENANT": 1}}
    ),
    "nested replace without it": lambda s: (
        _on("nested")(s).where(col("_id") == 1).replace_one({"meta": {}})
    ),
    # update pipelines
    "pipeline $set to another tenant": _update([{"$set": {"tenant_id": 2}}]),
    "pipeline $set a literal other tenant": _update([{"$set": {"tenant_id": {"$literal": 2}}}]),
    "pipeline $set from another field": _update([{"$set": {"tenant_id": "$n"}}], _id=2),
    "pipeline $addFields an expression": _update(
        [{"$addFields": {"tenant_id": {"$add": ["$tenant_id", 1]}}}]
    ),
    "pipeline $unset": _update([{"$unset": "tenant_id"}]),
    "pipeline $unset a list": _update([{"$unset": ["n", "tenant_id"]}]),
    "pipeline $project dropping it": _update([{"$project": {"n": 1}}]),
    "pipeline $project excluding it": _update([{"$project": {"tenant_id": 0}}]),
    "pipeline $project changing it": _update([{"$project": {"tenant_id": {"$literal": 2}}}]),
    "pipeline $replaceWith without it": _update([{"$replaceWith": {"n": 5}}]),
    "pipeline $replaceWith another tenant": _update([{"$replaceWith": {"tenant_id": 2}}]),
    "pipeline $replaceWith an expression": _update([{"$replaceWith": "$meta"}]),
    "pipeline $replaceRoot another tenant": _update(
        [{"$replaceRoot": {"newRoot": {"tenant_id": 2, "n": 1}}}]
    ),
    # replace and insert
    "replace_one without the field": lambda s: (
        _orders(s).where(col("_id") == 1).replace_one({"n": 5})
    ),
    "replace_one into another tenant": lambda s: (
        _orders(s).where(col("_id") == 1).replace_one({"tenant_id": 2})
    ),
    "insert_one for another tenant": lambda s: _orders(s).insert_one({"tenant_id": 2}),
    "insert_many with one for another tenant": lambda s: _orders(s).insert_many(
        [{"tenant_id": 1}, {"tenant_id": 2}]
    ),
    # bulk_write: the same checks as the single operations
    "bulk UpdateOne to another tenant": lambda s: _orders(s).bulk_write(
        [UpdateOne({"_id": 1}, {"$set": {"tenant_id": 2}})]
    ),
    "bulk UpdateMany $inc": lambda s: _orders(s).bulk_write(
        [UpdateMany({}, {"$inc": {"tenant_id": 1}})]
    ),
    "bulk UpdateOne pipeline $unset": lambda s: _orders(s).bulk_write(
        [UpdateOne({"_id": 1}, [{"$unset": "tenant_id"}])]
    ),
    "bulk ReplaceOne without the field": lambda s: _orders(s).bulk_write(
        [ReplaceOne({"_id": 1}, {"n": 5})]
    ),
    "bulk InsertOne for another tenant": lambda s: _orders(s).bulk_write(
        [InsertOne({"tenant_id": 1}), InsertOne({"tenant_id": 2})]
    ),
    "bulk upsert": lambda s: _orders(s).bulk_write(
        [UpdateOne({"_id": 9}, {"$set": {"n": 1}}, upsert=True)]
    ),
    "bulk on an ungranted collection": lambda s: _on("secrets")(s).bulk_write(
        [DeleteOne({"_id": 1})]
    ),
    "bulk insert into an ungranted collection": lambda s: _on("secrets")(s).bulk_write(
        [InsertOne({"s": "forged"})]
    ),
    "bulk with an unknown query operator": lambda s: _on("public")(s).bulk_write(
        [DeleteMany({"n": {"$nosuch": 1}})]
    ),
    # aggregation stages that write or read other collections
    "$out into another collection": lambda s: _on("public")(s).aggregate([{"$out": "secrets"}]),
    "$out into a new collection": lambda s: _on("public")(s).aggregate([{"$out": "stolen"}]),
    "$out into another database": lambda s: _on("public")(s).aggregate(
        [{"$out": {"db": "admin", "coll": "x"}}]
    ),
    "$merge into another collection": lambda s: _on("public")(s).aggregate(
        [{"$merge": {"into": "secrets"}}]
    ),
    "$merge into another database": lambda s: _on("public")(s).aggregate(
        [{"$merge": {"into": {"db": "admin", "coll": "x"}}}]
    ),
    "$lookup from another collection": lambda s: (
        _on("public")(s).aggregate().lookup("secrets", "n", "_id", "leak")
    ),
    "$graphLookup from another collection": lambda s: _on("public")(s).aggregate(
        [
            {
                "$graphLookup": {
                    "from": "secrets",
                    "startWith": "$n",
                    "connectFromField": "_id",
                    "connectToField": "_id",
                    "as": "leak",
                }
            }
        ]
    ),
    "$unionWith another collection": lambda s: _on("public")(s).aggregate(
        [{"$unionWith": "secrets"}]
    ),
    "$unionWith in a $facet": lambda s: _on("public")(s).aggregate(
        [{"$facet": {"a": [{"$unionWith": {"coll": "secrets"}}]}}]
    ),
    "$lookup in a $lookup pipeline": lambda s: _on("public")(s).aggregate(
        [
            {
                "$lookup": {
                    "from": "public",
                    "as": "x",
                    "pipeline": [{"$lookup": {"from": "secrets", "as": "y", "pipeline": []}}],
                }
            }
        ]
    ),
    "aggregate on a policed collection": lambda s: _orders(s).aggregate([{"$match": {}}]),
    "$lookup into a policed collection": lambda s: (
        _on("public")(s).aggregate().lookup("orders", "n", "_id", "leak")
    ),
    # stages and operators not on the allow-lists
    "stage $collStats": lambda s: _on("public")(s).aggregate([{"$collStats": {"count": {}}}]),
    "stage $indexStats": lambda s: _on("public")(s).aggregate([{"$indexStats": {}}]),
    "stage $currentOp": lambda s: _on("public")(s).aggregate([{"$currentOp": {}}]),
    "stage $listSessions": lambda s: _on("public")(s).aggregate([{"$listSessions": {}}]),
    "stage $planCacheStats": lambda s: _on("public")(s).aggregate([{"$planCacheStats": {}}]),
    "stage misspelt": lambda s: _on("public")(s).aggregate([{"$mtach": {}}]),
    "query operator unknown": lambda s: _on("public")(s).find({"n": {"$nosuch": 1}}),
    "top-level operator unknown": lambda s: _on("public")(s).find({"$nosuch": [{"n": 1}]}),
    "operator unknown inside $or": lambda s: _on("public")(s).find(
        {"$or": [{"n": 1}, {"n": {"$nosuch": 2}}]}
    ),
    "operator unknown inside $elemMatch": lambda s: _on("public")(s).find(
        {"n": {"$elemMatch": {"$nosuch": 2}}}
    ),
    "operator unknown in a $match": lambda s: _on("public")(s).aggregate(
        [{"$match": {"n": {"$nosuch": 1}}}]
    ),
    "operator unknown in an update filter": lambda s: (
        _on("public")(s).find({"n": {"$nosuch": 1}}).update_many({"$set": {"n": 2}})
    ),
    "operator unknown in a delete filter": lambda s: (
        _on("public")(s).find({"n": {"$nosuch": 1}}).delete_many()
    ),
    # grants
    "find on an ungranted collection": lambda s: _on("secrets")(s).find({}),
    "count on an ungranted collection": lambda s: _on("secrets")(s).count(),
    "distinct on an ungranted collection": lambda s: _on("secrets")(s).distinct("s"),
    "delete on an ungranted collection": lambda s: (
        _on("secrets")(s).where(col("_id") == 1).delete_one()
    ),
    "create_index on a granted collection": lambda s: _on("public")(s).create_index("n"),
}

# Server-side JavaScript: refused when built, for every caller, bulk_write included.
MONGO_JAVASCRIPT: dict[str, Any] = {
    "bulk filter $where": lambda q: q.bulk_write([DeleteOne({"$where": "true"})]),
    "bulk UpdateMany filter $where": lambda q: q.bulk_write(
        [UpdateMany({"$where": "true"}, {"$set": {"n": 1}})]
    ),
    "bulk ReplaceOne filter $function": lambda q: q.bulk_write(
        [ReplaceOne({"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}, {"n": 1})]
    ),
    "bulk pipeline update $function": lambda q: q.bulk_write(
        [
            UpdateOne(
                {"_id": 1},
                [{"$set": {"n": {"$function": {"body": "x", "args": [], "lang": "js"}}}}],
            )
        ]
    ),
    "bulk pipeline update $accumulator": lambda q: q.bulk_write(
        [UpdateOne({"_id": 1}, [{"$set": {"n": {"$accumulator": {}}}}])]
    ),
    "bulk unknown request": lambda q: q.bulk_write([{"deleteOne": {"filter": {}}}]),
    "update pipeline with an unknown stage": lambda q: q.update_one([{"$out": "x"}]),
    "update pipeline $where": lambda q: q.update_one([{"$set": {"n": {"$where": "1"}}}]),
}


@pytest.fixture(
    params=[
        pytest.param("mock", id="mongomock"),
        pytest.param("real", id="mongodb", marks=pytest.mark.mongodb),
    ]
)
def mongo(request):
    name = f"cmdspec_{uuid.uuid4().hex[:8]}"  # a database of its own, dropped at the end
    if request.param == "real":
        parts = urlsplit(request.getfixturevalue("mongo_url"))
        url = urlunsplit(parts._replace(path=f"/{name}"))
    else:
        url = f"mongodb+mock://localhost/{name}"
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, url)
    q = db.query(DatabaseType.MONGODB)
    for collection, docs in _DOCS.items():
        q.collection(collection).insert_many(docs).execute()
    db.use_access_control(_mongo_acl())
    audit = MemoryAuditSink()
    db.add_hook(AuditLog([audit]))
    yield db, audit
    database = db.connection(DatabaseType.MONGODB).database
    database.client.drop_database(database.name)
    db.close_all()


@pytest.mark.parametrize("name", MONGO_ATTACKS)
def test_mongo_attack_is_refused(mongo, name):
    db, audit = mongo
    before = _mongo_state(db)
    session = db.for_user("ann", attrs={"tenant": TENANT})
    with pytest.raises(PermissionDenied):
        MONGO_ATTACKS[name](session).execute()
    assert [e.outcome for e in audit.events if e.user == "ann"] == ["denied"]
    assert _mongo_state(db) == before


@pytest.mark.parametrize("name", MONGO_ATTACKS)
def test_mongo_attack_is_refused_async(name):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(
            DatabaseType.MONGODB, f"mongodb+mock://localhost/{uuid.uuid4().hex[:8]}"
        )
        try:
            for collection, docs in _DOCS.items():
                q = adb.query(DatabaseType.MONGODB).collection(collection)
                await q.insert_many(docs).execute()
            adb.use_access_control(_mongo_acl())
            audit = MemoryAuditSink()
            adb.add_hook(AuditLog([audit]))
            before = await _async_state(adb)
            session = adb.for_user("ann", attrs={"tenant": TENANT})
            with pytest.raises(PermissionDenied):
                await MONGO_ATTACKS[name](session).execute()
            assert [e.outcome for e in audit.events if e.user == "ann"] == ["denied"]
            assert await _async_state(adb) == before
        finally:
            await adb.close_all()

    asyncio.run(main())


async def _async_state(adb: Any) -> dict[str, Any]:
    q = adb.query(DatabaseType.MONGODB)
    return {name: await q.collection(name).sort("_id").all() for name in (*_DOCS, "stolen")}


@pytest.mark.parametrize("name", MONGO_JAVASCRIPT)
def test_mongo_javascript_and_unknown_requests_are_refused_when_built(mongo, name):
    db, _ = mongo
    for session in (db, db.for_user("ann", attrs={"tenant": TENANT})):
        with pytest.raises(QueryBuildError):
            MONGO_JAVASCRIPT[name](session.query(DatabaseType.MONGODB).collection("public"))


# -- MongoDB: what the grants and the policy allow still works --------------------------------


def test_mongo_reads_and_writes_within_the_policy(mongo):
    db, audit = mongo
    orders = _orders(db.for_user("ann", attrs={"tenant": TENANT}))
    assert [d["_id"] for d in orders.find({}).all()] == [1]
    assert orders.where(col("_id") == 1).update_one({"$set": {"n": 5}}).execute()["modified"] == 1
    same = {"$set": {"tenant_id": 1, "meta": {"tenant_id": 1}}}
    assert orders.where(col("_id") == 1).update_one(same).execute()["matched"] == 1
    assert orders.where(col("_id") == 1).update_one({"$inc": {"n": 1}}).execute()["modified"] == 1
    # the other tenant's document is out of reach: matched by nothing
    assert orders.where(col("_id") == 2).update_one({"$set": {"n": 9}}).execute()["matched"] == 0
    assert orders.where(col("_id") == 2).delete_one().execute() == 0
    assert orders.insert_one({"_id": 3, "tenant_id": 1}).execute() == 3
    assert (
        orders.where(col("_id") == 3).replace_one({"tenant_id": 1, "n": 7}).execute()["modified"]
        == 1
    )
    assert {e.outcome for e in audit.events if e.user == "ann"} == {"ok"}
    assert (
        db.query(DatabaseType.MONGODB).collection("orders").where(col("_id") == 2).first()
        == _DOCS["orders"][1]
    )


def test_mongo_policy_on_an_embedded_field_allows_what_keeps_it(mongo):
    db, audit = mongo
    nested = _on("nested")(db.for_user("ann", attrs={"tenant": TENANT}))
    assert [d["_id"] for d in nested.find({}).all()] == [1]
    one = nested.where(col("_id") == 1)
    assert one.update_one({"$set": {"meta.x": 5}}).execute()["modified"] == 1
    assert one.update_one({"$set": {"meta": {"tenant": 1, "y": 1}}}).execute()["modified"] == 1
    assert nested.insert_one({"_id": 3, "meta": {"tenant": 1}}).execute() == 3
    assert {e.outcome for e in audit.events if e.user == "ann"} == {"ok"}


def test_mongo_bulk_write_within_the_policy_is_restricted_to_the_tenant(mongo):
    db, _ = mongo
    orders = _orders(db.for_user("ann", attrs={"tenant": TENANT}))
    result = orders.bulk_write(
        [InsertOne({"_id": 4, "tenant_id": 1}), DeleteOne({"_id": 2}), DeleteMany({})]
    ).execute()
    assert result["inserted"] == 1
    remaining = db.query(DatabaseType.MONGODB).collection("orders").all()
    assert [d["_id"] for d in remaining] == [2]  # only the tenant's own were deleted


def test_mongo_aggregate_within_the_grants(mongo):
    db, _ = mongo
    public = _on("public")(db.for_user("ann", attrs={"tenant": TENANT}))
    assert public.aggregate([{"$match": {"n": {"$gte": 1}}}, {"$project": {"n": 1}}]).execute() == [
        {"_id": 1, "n": 1}
    ]


# -- the table generated from the server is current -----------------------------------------


def test_the_generated_redis_command_table_is_current(redis_url):
    import importlib.util
    from pathlib import Path

    from dbsystem.backends import _redis_commands

    path = Path(__file__).resolve().parents[2] / "tools" / "gen_redis_commands.py"
    spec = importlib.util.spec_from_file_location("gen_redis_commands", path)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    version, commands, containers = generator.read_commands(redis_url)
    assert version == _redis_commands.REDIS_VERSION, "regenerate: tools/gen_redis_commands.py"
    assert generator.render(redis_url) == Path(_redis_commands.__file__).read_text()
    assert set(commands) == set(_redis_commands.COMMANDS)
    assert containers == set(_redis_commands.CONTAINERS)


def test_every_command_of_the_table_is_classified(redis_url):
    """No command of the generated table falls through: each gets accesses, a refusal or
    (PING, ECHO, TIME) nothing, and none gives a key-less write to a user unchecked."""
    from dbsystem.backends._redis_access import command_accesses
    from dbsystem.backends._redis_commands import COMMANDS

    for name, (_, _, specs) in COMMANDS.items():
        words = name.split("|")
        accesses = command_accesses(words)
        if name in ("ping", "echo", "time"):
            assert accesses == ()
            continue
        assert accesses, name
        if not specs:  # keyless: admin, a keyspace read of "*", a channel or a refusal
            assert all(
                action in ("admin", "refused") or resource == "*" for action, resource in accesses
            ), name


# -- the documented mapping (docs/SECURITY.md, "Redis and MongoDB by their command specs") --

MAPPING = [
    (("GET", "k"), (("select", "k"),)),
    (("SET", "k", "v"), (("update", "k"),)),
    (("SET", "k", "v", "GET"), (("select", "k"), ("update", "k"))),
    (("SET", "k", "GET"), (("update", "k"),)),  # "GET" as the value reads nothing
    (("LPUSH", "k", "v"), (("insert", "k"),)),
    (("SETNX", "k", "v"), (("insert", "k"),)),
    (("ZADD", "k", "1", "m"), (("update", "k"),)),
    (("INCR", "k"), (("select", "k"), ("update", "k"))),
    (("DEL", "a", "b"), (("delete", "a"), ("delete", "b"))),
    (("LPOP", "k"), (("select", "k"), ("delete", "k"))),
    (("RENAME", "a", "b"), (("select", "a"), ("delete", "a"), ("update", "b"))),
    (("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"), (("select", "s"), ("update", "s"))),
    (("PUBLISH", "ch", "m"), (("insert", "ch"),)),
    (("EVAL", "return 1", "1", "k"), (("execute", "*"), ("select", "k"), ("update", "k"))),
    (("INFO",), (("admin", "*"),)),
    (("MEMORY", "USAGE", "k"), (("select", "k"),)),
    (("MOVE", "k", "1"), (("admin", "*"), ("select", "k"), ("update", "k"))),
    (("COPY", "a", "b", "DB", "1"), (("admin", "*"), ("select", "a"), ("update", "b"))),
    (("SCAN", "0", "MATCH", "user:*"), (("select", "user:*"),)),
    (("DBSIZE",), (("select", "*"),)),
    (("PING",), ()),
    (
        ("SORT", "l", "BY", "w:*", "GET", "#", "GET", "o:*->f"),
        (("select", "l"), ("select", "w:*")) + (("select", "o:*->f"),),
    ),
]


@pytest.mark.parametrize(
    ("command", "accesses"), MAPPING, ids=[" ".join(command) for command, _ in MAPPING]
)
def test_redis_command_accesses_follow_the_documented_mapping(command, accesses):
    from dbsystem.backends._redis_access import command_accesses

    assert command_accesses(command) == accesses


@pytest.mark.parametrize(
    ("grant", "resource", "covered"),
    [
        ("user:*", "user:1", True),
        ("user:*", "user:1:*", True),  # a pattern inside the grant's prefix
        ("user:*", "*", False),
        ("user:*", "us*", False),
        ("user:*", "?ser:*", False),
        ("user:?", "user:*", False),  # fnmatch would say yes: "?" matches the "*"
        ("user:*:p", "user:*:p", True),  # the same pattern
        ("*", "admin:*", True),
    ],
)
def test_a_pattern_resource_is_covered_only_by_a_grant_covering_all_it_names(
    grant, resource, covered
):
    acl = AccessControl()
    acl.create_role(Role("r", grants={grant: Permission.SELECT}))
    acl.assign_role("ann", "r")
    assert acl.allowed("ann", "select", resource) is covered
