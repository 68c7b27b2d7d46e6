"""Redis on ``redis.asyncio``: the async twin of ``RedisConnection``.

Commands are classified and checked by the same code as the synchronous connection
(``describe_commands``) and run through the same hooks; errors are translated the same
way. The client has a connection pool of its own, with the pool's settings, made on first
use in the running event loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from dbsystem.backends.base import driver_refused
from dbsystem.backends.redis import _error, _text, describe_commands, describe_scan
from dbsystem.errors import InterfaceError, NotSupportedError

__all__ = ["AsyncRedisConnection", "async_redis_client"]


def async_redis_client(pool: Any) -> Any:
    """A ``redis.asyncio`` client on the server and settings of a sync Redis ``DriverPool``."""
    backend = pool.connector
    if getattr(backend, "cluster", False):
        raise NotSupportedError(
            "Redis Cluster pools have no asyncio client in this release: use the sync "
            "DatabaseManager's pool (from a coroutine, through asyncio.to_thread)",
            backend=backend.label,
        )
    shared = backend.pool
    kwargs = dict(shared.connection_kwargs)
    if backend.mock:
        import fakeredis

        return fakeredis.FakeAsyncRedis(
            server=kwargs["server"], decode_responses=kwargs.get("decode_responses", False)
        )
    ssl = "ssl_cert_reqs" in kwargs or "ssl_ca_certs" in kwargs
    connection_class = aioredis.SSLConnection if ssl else aioredis.Connection
    async_pool = aioredis.BlockingConnectionPool(
        connection_class=connection_class,
        max_connections=shared.max_connections,
        timeout=shared.timeout,
        **kwargs,
    )
    return aioredis.Redis(connection_pool=async_pool)


class AsyncRedisConnection:
    """``async with adb.connection(DatabaseType.REDIS) as redis``: ``await redis.execute(...)``."""

    def __init__(self, pool: Any, client: Any) -> None:
        self._pool = pool
        self._client = client
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
        return await self._run(
            "command", [args], lambda: self._client.execute_command(*args, **options)
        )

    async def _commands(
        self, commands: Sequence[tuple[Sequence[Any], dict[str, Any]]], *, transaction: bool
    ) -> list[Any]:
        async def call() -> list[Any]:
            pipe = self._client.pipeline(transaction=transaction)
            for args, options in commands:
                pipe.execute_command(*args, **options)
            return list(await pipe.execute())

        result: list[Any] = await self._run("pipeline", [args for args, _ in commands], call)
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
