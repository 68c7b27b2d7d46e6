"""The Redis command builder: ``db.query(DatabaseType.REDIS).hset(...).hget(...)``.

A builder is an immutable chain of commands. ``build()`` gives the command words as
strings (one list for one command, a list of lists for several), for logging and audit;
``execute()`` runs one command, or several in one pipeline (``multi()`` makes it MULTI/EXEC,
all or nothing). Values travel as RESP arguments, so no value can become a command.

    q = db.query(DatabaseType.REDIS)
    q.hset("user:1", {"name": "ada", "email": "ada@example.com"}).execute()
    q.hget("user:1", "email").execute()                       # "ada@example.com"
    q.zadd("board", {"ada": 120, "bob": 95}).zrevrank("board", "bob").execute()  # [2, 1]
    q.incr("hits").expire("hits", 60).multi().execute()

On an ``AsyncDatabaseManager`` the builder is an ``AsyncRedisQuery``: the same commands,
built by the same code, whose ``execute()`` returns a coroutine and ``scan()`` an async
iterator (``await adb.query(DatabaseType.REDIS).get("k").execute()``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dbsystem.errors import QueryBuildError
from dbsystem.query._bound import BoundBuilder

if TYPE_CHECKING:
    from dbsystem.backends.redis import RedisConnection
    from dbsystem.core.manager import Engine as DatabaseManager
    from dbsystem.kernel.types import DatabaseType

__all__ = ["AsyncRedisQuery", "RedisQuery"]

Command = tuple[tuple[Any, ...], dict[str, Any]]


def _key(key: Any) -> Any:
    if not isinstance(key, (str, bytes)) or not key:
        raise QueryBuildError(f"a Redis key is a non-empty str or bytes, not {key!r}")
    return key


class RedisQuery(BoundBuilder):
    """An immutable chain of Redis commands bound to a manager's Redis pool
    (``AsyncRedisQuery``: ``execute()`` returns a coroutine)."""

    __slots__ = ("_commands", "_transaction")
    _what = "Redis query"

    def __init__(
        self,
        manager: DatabaseManager | None,
        db_type: DatabaseType | None = None,
        name: str | None = None,
        commands: tuple[Command, ...] = (),
        transaction: bool = False,
    ) -> None:
        super().__init__(manager, db_type, name)
        self._commands = commands
        self._transaction = transaction

    def _add(self, *args: Any, **options: Any) -> RedisQuery:
        return type(self)(
            self._manager,
            self._db_type,
            self._name,
            (*self._commands, (args, options)),
            self._transaction,
        )

    # -- strings and keys ------------------------------------------------------------------

    def get(self, key: str) -> RedisQuery:
        """GET key."""
        return self._add("GET", _key(key))

    def set(
        self,
        key: str,
        value: Any,
        *,
        ex: int | None = None,
        px: int | None = None,
        nx: bool = False,
        xx: bool = False,
    ) -> RedisQuery:
        """``SET key value [EX seconds | PX ms] [NX | XX]``."""
        words: list[Any] = ["SET", _key(key), value]
        if ex is not None:
            words += ["EX", _positive(ex, "ex")]
        if px is not None:
            words += ["PX", _positive(px, "px")]
        if nx and xx:
            raise QueryBuildError("set() takes nx or xx, not both")
        if nx:
            words.append("NX")
        if xx:
            words.append("XX")
        return self._add(*words)

    def delete(self, *keys: str) -> RedisQuery:
        """DEL keys."""
        if not keys:
            raise QueryBuildError("delete() needs at least one key")
        return self._add("DEL", *(_key(k) for k in keys))

    def exists(self, *keys: str) -> RedisQuery:
        """EXISTS keys (how many exist)."""
        return self._add("EXISTS", *(_key(k) for k in keys))

    def expire(self, key: str, seconds: int) -> RedisQuery:
        """EXPIRE key seconds."""
        return self._add("EXPIRE", _key(key), _positive(seconds, "seconds"))

    def ttl(self, key: str) -> RedisQuery:
        """TTL key (-1 no expiry, -2 no key)."""
        return self._add("TTL", _key(key))

    def incr(self, key: str, amount: int = 1) -> RedisQuery:
        """INCRBY key amount."""
        return self._add("INCRBY", _key(key), _int(amount, "amount"))

    def decr(self, key: str, amount: int = 1) -> RedisQuery:
        """DECRBY key amount."""
        return self._add("DECRBY", _key(key), _int(amount, "amount"))

    # -- hashes ----------------------------------------------------------------------------

    def hset(self, key: str, mapping: Mapping[str, Any]) -> RedisQuery:
        """HSET key field value [field value ...]."""
        if not mapping:
            raise QueryBuildError("hset() needs at least one field")
        words: list[Any] = ["HSET", _key(key)]
        for field, value in mapping.items():
            words += [_key(field), value]
        return self._add(*words)

    def hget(self, key: str, field: str) -> RedisQuery:
        """HGET key field."""
        return self._add("HGET", _key(key), _key(field))

    def hgetall(self, key: str) -> RedisQuery:
        """HGETALL key (a dict)."""
        return self._add("HGETALL", _key(key))

    def hdel(self, key: str, *fields: str) -> RedisQuery:
        """HDEL key fields."""
        return self._add("HDEL", _key(key), *(_key(f) for f in fields))

    def hincrby(self, key: str, field: str, amount: int = 1) -> RedisQuery:
        """HINCRBY key field amount."""
        return self._add("HINCRBY", _key(key), _key(field), _int(amount, "amount"))

    # -- lists and sets --------------------------------------------------------------------

    def lpush(self, key: str, *values: Any) -> RedisQuery:
        """LPUSH key values."""
        return self._add("LPUSH", _key(key), *_some(values, "lpush"))

    def rpush(self, key: str, *values: Any) -> RedisQuery:
        """RPUSH key values."""
        return self._add("RPUSH", _key(key), *_some(values, "rpush"))

    def lpop(self, key: str) -> RedisQuery:
        """LPOP key."""
        return self._add("LPOP", _key(key))

    def rpop(self, key: str) -> RedisQuery:
        """RPOP key."""
        return self._add("RPOP", _key(key))

    def lrange(self, key: str, start: int = 0, stop: int = -1) -> RedisQuery:
        """LRANGE key start stop."""
        return self._add("LRANGE", _key(key), _int(start, "start"), _int(stop, "stop"))

    def llen(self, key: str) -> RedisQuery:
        """LLEN key."""
        return self._add("LLEN", _key(key))

    def sadd(self, key: str, *members: Any) -> RedisQuery:
        """SADD key members."""
        return self._add("SADD", _key(key), *_some(members, "sadd"))

    def srem(self, key: str, *members: Any) -> RedisQuery:
        """SREM key members."""
        return self._add("SREM", _key(key), *_some(members, "srem"))

    def smembers(self, key: str) -> RedisQuery:
        """SMEMBERS key (a set)."""
        return self._add("SMEMBERS", _key(key))

    def sismember(self, key: str, member: Any) -> RedisQuery:
        """SISMEMBER key member."""
        return self._add("SISMEMBER", _key(key), member)

    def scard(self, key: str) -> RedisQuery:
        """SCARD key."""
        return self._add("SCARD", _key(key))

    # -- sorted sets -----------------------------------------------------------------------

    def zadd(self, key: str, mapping: Mapping[Any, float]) -> RedisQuery:
        """ZADD key score member [score member ...] from ``{member: score}``."""
        if not mapping:
            raise QueryBuildError("zadd() needs at least one member")
        words: list[Any] = ["ZADD", _key(key)]
        for member, score in mapping.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise QueryBuildError(f"zadd() scores are numbers, not {score!r}")
            words += [score, member]
        return self._add(*words)

    def zincrby(self, key: str, amount: float, member: Any) -> RedisQuery:
        """ZINCRBY key amount member."""
        return self._add("ZINCRBY", _key(key), amount, member)

    def zrange(
        self, key: str, start: int = 0, stop: int = -1, *, withscores: bool = False
    ) -> RedisQuery:
        """ZRANGE key start stop [WITHSCORES] (pairs of (member, score) with scores)."""
        words = ["ZRANGE", _key(key), _int(start, "start"), _int(stop, "stop")]
        if withscores:
            return self._add(*words, "WITHSCORES", withscores=True)
        return self._add(*words)

    def zrevrange(
        self, key: str, start: int = 0, stop: int = -1, *, withscores: bool = False
    ) -> RedisQuery:
        """ZREVRANGE key start stop [WITHSCORES]: a leaderboard, highest first."""
        words = ["ZREVRANGE", _key(key), _int(start, "start"), _int(stop, "stop")]
        if withscores:
            return self._add(*words, "WITHSCORES", withscores=True)
        return self._add(*words)

    def zrank(self, key: str, member: Any) -> RedisQuery:
        """ZRANK key member (0 = lowest score)."""
        return self._add("ZRANK", _key(key), member)

    def zrevrank(self, key: str, member: Any) -> RedisQuery:
        """ZREVRANK key member (0 = highest score: a leaderboard position)."""
        return self._add("ZREVRANK", _key(key), member)

    def zscore(self, key: str, member: Any) -> RedisQuery:
        """ZSCORE key member."""
        return self._add("ZSCORE", _key(key), member)

    def zcard(self, key: str) -> RedisQuery:
        """ZCARD key."""
        return self._add("ZCARD", _key(key))

    def zrem(self, key: str, *members: Any) -> RedisQuery:
        """ZREM key members."""
        return self._add("ZREM", _key(key), *_some(members, "zrem"))

    # -- pub/sub ---------------------------------------------------------------------------

    def publish(self, channel: str, message: Any) -> RedisQuery:
        """PUBLISH channel message."""
        return self._add("PUBLISH", _key(channel), message)

    # -- running ---------------------------------------------------------------------------

    def multi(self) -> RedisQuery:
        """Run the chained commands as one MULTI/EXEC transaction: all or nothing."""
        return type(self)(self._manager, self._db_type, self._name, self._commands, True)

    def build(self) -> list[str] | list[list[str]]:
        """The command words as strings: one list for one command, else a list of lists."""
        if not self._commands:
            raise QueryBuildError("no Redis command to build")
        words = [[_word(arg) for arg in args] for args, _ in self._commands]
        if self._transaction:
            return [["MULTI"], *words, ["EXEC"]]
        return words[0] if len(words) == 1 else words

    def execute(self, conn: RedisConnection | None = None) -> Any:
        """Run: one command's result, or a list of results for several (or ``multi()``).

        On an async manager (``AsyncRedisQuery``): a coroutine to await.
        """
        if not self._commands:
            raise QueryBuildError("no Redis command to execute")
        if self.is_async:
            return self._execute_async(conn)
        return self._run(conn if conn is not None else self._connection())

    def _run(self, conn: Any) -> Any:
        """The commands on ``conn``: their result, or an ``AsyncRedisConnection``'s coroutine."""
        if len(self._commands) == 1 and not self._transaction:
            args, options = self._commands[0]
            return conn._command(args, options)
        return conn._commands(list(self._commands), transaction=self._transaction)

    async def _execute_async(self, conn: Any) -> Any:
        if conn is not None:
            return await self._run(conn)
        async with self._borrow() as borrowed:
            return await self._run(borrowed)

    def scan(self, match: str | None = None, count: int | None = None) -> Iterator[str]:
        """Iterate over matching keys with SCAN (never KEYS), lazily (on an async manager:
        ``async for key in q.scan(...)``)."""
        lease = self._borrow()
        if self.is_async:
            return self._scan_async(lease, match, count)  # type: ignore[return-value]
        connection: RedisConnection = lease
        return connection.scan(match=match, count=count)

    async def _scan_async(
        self, lease: Any, match: str | None, count: int | None
    ) -> AsyncIterator[str]:
        async with lease as conn:
            async for key in conn.scan(match=match, count=count):
                yield key

    def _connection(self) -> RedisConnection:
        conn: RedisConnection = self._borrow()
        return conn

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.build() if self._commands else '(empty)'}>"


class AsyncRedisQuery(RedisQuery):
    """``adb.query(DatabaseType.REDIS)``: ``RedisQuery``'s commands, whose ``execute()``
    returns a coroutine and ``scan()`` an async iterator. Each command runs through the
    pool's hooks (access control, audit) as on the synchronous side."""

    __slots__ = ()
    is_async = True


def _word(arg: Any) -> str:
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "backslashreplace")
    return str(arg)


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise QueryBuildError(f"{what} must be an int, not {value!r}")
    return value


def _positive(value: Any, what: str) -> int:
    if type(value) is not int or value <= 0:
        raise QueryBuildError(f"{what} must be a positive int, not {value!r}")
    return value


def _some(values: tuple[Any, ...], what: str) -> tuple[Any, ...]:
    if not values:
        raise QueryBuildError(f"{what}() needs at least one value")
    return values
