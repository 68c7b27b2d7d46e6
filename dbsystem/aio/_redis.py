"""Redis on ``redis.asyncio``: the async twin of ``RedisConnection``.

Commands are classified and checked by the same code as the synchronous connection
(``describe_commands``) and run through the same hooks; errors are translated the same
way. The client has a connection pool of its own, with the pool's settings, made on first
use in the running event loop.

Automatic pipelining (``PoolConfig.pipelining``, on by default), as ioredis'
``enableAutoPipelining``: single commands that tasks issue in the same event-loop
iteration, each after its own check, are sent in one write (one pipeline per identity:
the application, or one user session; never mixed) and each task gets its own answer or
its own error. Commands that hold or change a connection's state (blocking reads,
WATCH/MULTI, pub/sub, AUTH, SELECT, CLIENT...) keep a connection of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from dbsystem.backends.base import driver_refused
from dbsystem.backends.redis import (
    _SESSION_CHANGED,
    _SESSION_COMMANDS,
    _error,
    _text,
    changes_session,
    describe_commands,
    describe_scan,
    reset_commands,
)
from dbsystem.errors import InterfaceError, NotSupportedError

__all__ = ["AsyncRedisConnection", "AutoPipeline", "async_redis_client", "autopipeline"]


def async_redis_client(pool: Any) -> Any:
    """A ``redis.asyncio`` client on the server and settings of a sync Redis ``DriverPool``."""
    backend = pool.connector
    if getattr(backend, "cluster", False):
        raise NotSupportedError(
            "Redis Cluster pools have no asyncio client in this release: use the sync "
            "DatabaseManager's pool (from a coroutine, through asyncio.to_thread)",
            backend=backend.label,
        )
    if getattr(backend, "sentinel", False):
        return backend.async_client()
    shared = backend.pool
    kwargs = dict(shared.connection_kwargs)
    if backend.mock:
        import fakeredis

        return fakeredis.FakeAsyncRedis(
            server=kwargs["server"], decode_responses=kwargs.get("decode_responses", False)
        )
    ssl = "ssl_cert_reqs" in kwargs or "ssl_ca_certs" in kwargs
    connection_class = aioredis.SSLConnection if ssl else aioredis.Connection
    async_pool = _ResettingPool(
        connection_class=connection_class,
        max_connections=shared.max_connections,
        timeout=shared.timeout,
        **kwargs,
    )
    return aioredis.Redis(connection_pool=async_pool)


class _ResettingPool(aioredis.BlockingConnectionPool):
    """redis.asyncio's blocking pool, resetting a connection whose session a command
    changed before lending it again (as the sync ``_CountingPool`` does)."""

    async def release(self, connection: Any) -> None:
        if _SESSION_CHANGED.get():
            await _reset_connection(connection)
        await super().release(connection)


async def _reset_connection(connection: Any) -> None:
    commands = reset_commands(connection)
    if commands is None:
        await connection.disconnect()
        return
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        for _ in commands:
            await connection.read_response()
    except Exception:  # whatever went wrong, a closed connection reopens clean
        await connection.disconnect()


def _resetting(call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def marked() -> Any:
        token = _SESSION_CHANGED.set(True)
        try:
            return await call()
        finally:
            _SESSION_CHANGED.reset(token)

    return marked


# Commands that block, or hold or change their connection's state: never pipelined.
_DEDICATED = frozenset(
    {
        "AUTH", "BLMOVE", "BLMPOP", "BLPOP", "BRPOP", "BRPOPLPUSH", "BZMPOP", "BZPOPMAX",
        "BZPOPMIN", "CLIENT", "DISCARD", "EXEC", "HELLO", "MONITOR", "MULTI", "PSUBSCRIBE",
        "PUNSUBSCRIBE", "QUIT", "READONLY", "READWRITE", "RESET", "SELECT", "SSUBSCRIBE",
        "SUBSCRIBE", "SUNSUBSCRIBE", "UNSUBSCRIBE", "UNWATCH", "WAIT", "WAITAOF", "WATCH",
        "XREAD", "XREADGROUP",
    }
)  # fmt: skip

_Queued = tuple[object, Sequence[Any], dict[str, Any], "asyncio.Future[Any]"]


def autopipeline(pool: Any, client: Any) -> AutoPipeline | None:
    """The ``AutoPipeline`` for ``client``, or None when the pool turns pipelining off."""
    return AutoPipeline(client) if pool.connector.config.pipelining else None


def _text_word(word: Any) -> str:
    return word.decode() if isinstance(word, bytes) else str(word)


class AutoPipeline:
    """One client's automatic pipelining: commands queued in one loop iteration go out
    together when the loop comes round, one pipeline per identity."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queue: list[_Queued] = []
        self._sending: set[asyncio.Task[None]] = set()  # (kept referenced until done)

    def submit(self, identity: object, args: Sequence[Any], options: dict[str, Any]) -> Any:
        """A future for the answer to ``args``, sent with the others of this iteration."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((identity, args, options, future))
        return future

    def _flush(self) -> None:
        queued, self._queue = self._queue, []
        batches: dict[int, list[_Queued]] = {}
        for item in queued:  # (the queue holds each identity, so its id is its own)
            batches.setdefault(id(item[0]), []).append(item)
        for batch in batches.values():
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Queued]) -> None:
        try:
            if len(batch) == 1:
                _, args, options, _future = batch[0]
                results: list[Any] = [await self._client.execute_command(*args, **options)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for _, args, options, _future in batch:
                    pipe.execute_command(*args, **options)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the write or the connection failed: every caller hears it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # (its task was cancelled meanwhile)
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class AsyncRedisConnection:
    """``async with adb.connection(DatabaseType.REDIS) as redis``: ``await redis.execute(...)``."""

    def __init__(self, pool: Any, client: Any, pipeline: AutoPipeline | None = None) -> None:
        self._pool = pool
        self._client = client
        self._autopipeline = pipeline
        self._context: Any = None
        self.released = False

    @property
    def client(self) -> Any:
        """The ``redis.asyncio`` client underneath, for what dbsystem does not wrap (refused
        on a connection lent to a user session: what runs on it skips the checks)."""
        if self._context is not None:
            raise driver_refused(self._context, "the Redis client", self._pool.backend_name)
        return self._client

    async def _run(
        self, operation: str, commands: Sequence[Sequence[Any]], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        pool = self._pool
        try:
            describe = lambda: describe_commands(commands)  # noqa: E731 - only when hooked
            return await pool.arun(self._context, operation, describe, call)
        except redis_errors.RedisError as exc:
            raise _error(exc, pool.backend_name, _text(commands), pool.connector.secrets) from exc

    async def execute(self, *args: Any) -> Any:
        """Run one command: ``await redis.execute("HSET", "user:1", "name", "ada")``."""
        if not args:
            raise InterfaceError("execute() needs a command")
        return await self._command(args, {})

    async def pipeline(
        self, commands: Sequence[Sequence[Any]], *, transaction: bool = False
    ) -> list[Any]:
        """Several commands in one round trip (``transaction=True``: MULTI/EXEC)."""
        return await self._commands([(tuple(c), {}) for c in commands], transaction=transaction)

    async def _command(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        # (``options`` are redis-py's response options, such as ``withscores``.)
        word = _text_word(args[0]).upper()
        marks = word in _SESSION_COMMANDS and changes_session([args])  # (a set test first)
        batcher = self._autopipeline
        if batcher is not None and word not in _DEDICATED and not marks:
            context = self._context
            return await self._run(
                "command", [args], lambda: batcher.submit(context, args, options)
            )
        call = lambda: self._client.execute_command(*args, **options)  # noqa: E731
        return await self._run("command", [args], _resetting(call) if marks else call)

    async def _commands(
        self, commands: Sequence[tuple[Sequence[Any], dict[str, Any]]], *, transaction: bool
    ) -> list[Any]:
        async def call() -> list[Any]:
            pipe = self._client.pipeline(transaction=transaction)
            for args, options in commands:
                pipe.execute_command(*args, **options)
            return list(await pipe.execute())

        words = [args for args, _ in commands]
        run = _resetting(call) if changes_session(words) else call
        result: list[Any] = await self._run("pipeline", words, run)
        return result

    def scan(self, match: str | None = None, count: int | None = None) -> AsyncIterator[str]:
        """``async for key in redis.scan(match="user:*")``: SCAN (never KEYS), lazily."""
        keys = self._scan(match, count, describe_scan(match).text)
        observed: AsyncIterator[str] = self._pool.run_stream(
            self._context, "scan", lambda: describe_scan(match), keys
        )
        return observed

    async def _scan(
        self, match: str | None, count: int | None, text: str
    ) -> AsyncGenerator[str, None]:
        pool = self._pool
        try:
            async for key in self._client.scan_iter(match=match, count=count):
                yield key
        except redis_errors.RedisError as exc:
            raise _error(exc, pool.backend_name, text, pool.connector.secrets) from exc

    async def publish(self, channel: str, message: Any) -> int:
        """PUBLISH; returns how many subscribers received it."""
        count: int = await self.execute("PUBLISH", channel, message)
        return count

    async def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the server does not answer."""
        await self.execute("PING")

    async def release(self) -> None:
        """Nothing is held between commands; kept so that every connection releases alike."""
        self.released = True
