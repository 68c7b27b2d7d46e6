"""Automatic pipelining of async Redis (``PoolConfig.pipelining``): commands that tasks issue
in one event-loop iteration go out in one write, one pipeline per identity, and each task
still gets its own answer, its own error, its own check and its own audit record."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from dbsystem import AsyncDatabaseManager, DatabaseType, PermissionDenied, PoolConfig
from dbsystem.errors import ProgrammingError
from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.security import AccessControl, AuditLog, MemoryAuditSink, Role

pytestmark = pytest.mark.timeout(60)


class _Spy:
    """Counts the pipelines the driver client is asked for, and their sizes."""

    def __init__(self, client: Any) -> None:
        self.sizes: list[int] = []
        original = client.pipeline

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = original(*args, **kwargs)
            execute = pipe.execute

            async def counted(*a: Any, **k: Any) -> Any:
                self.sizes.append(len(pipe.command_stack))
                return await execute(*a, **k)

            pipe.execute = counted
            return pipe

        client.pipeline = pipeline


class _Seen(ExecutionHook):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def after_execute(self, statement: Statement) -> None:
        self.texts.append(statement.text)


async def _manager(url: str, **settings: Any) -> tuple[AsyncDatabaseManager, _Spy]:
    adb = AsyncDatabaseManager()
    await adb.create_pool(DatabaseType.REDIS, PoolConfig(url=url, max_size=8, **settings))
    async with adb.connection(DatabaseType.REDIS) as redis:
        await redis.execute("PING")
        spy = _Spy(redis._client)
    return adb, spy


@pytest.fixture(params=["server", "mock"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "mock":
        return "redis+mock://"
    return str(request.getfixturevalue("redis_url"))


def test_commands_of_one_iteration_go_in_one_write(url: str) -> None:
    async def main() -> None:
        adb, spy = await _manager(url)
        key = f"ap:{uuid.uuid4().hex[:8]}"

        async def bump() -> Any:
            async with adb.connection(DatabaseType.REDIS) as redis:
                return await redis.execute("INCR", key)

        answers = await asyncio.gather(*(bump() for _ in range(50)))
        assert sorted(answers) == list(range(1, 51))  # each task got its own answer
        assert spy.sizes == [50]  # in one pipeline
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("DEL", key)
        await adb.close_all()

    asyncio.run(main())


def test_pipelining_off_sends_each_command_alone(url: str) -> None:
    async def main() -> None:
        adb, spy = await _manager(url, pipelining=False)
        key = f"ap:{uuid.uuid4().hex[:8]}"

        async def bump() -> Any:
            async with adb.connection(DatabaseType.REDIS) as redis:
                return await redis.execute("INCR", key)

        answers = await asyncio.gather(*(bump() for _ in range(20)))
        assert sorted(answers) == list(range(1, 21))
        assert spy.sizes == []
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("DEL", key)
        await adb.close_all()

    asyncio.run(main())


def test_the_url_turns_pipelining_off() -> None:
    assert PoolConfig(url="redis://127.0.0.1:6379/0?pipelining=false").pipelining is False
    assert PoolConfig(url="redis://127.0.0.1:6379/0").pipelining is True


def test_one_failing_command_fails_only_its_own_task(url: str) -> None:
    async def main() -> None:
        adb, spy = await _manager(url)
        key = f"ap:{uuid.uuid4().hex[:8]}"
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("SET", key, "text")
            results = await asyncio.gather(
                redis.execute("GET", key),
                redis.execute("INCR", key),  # not an integer
                redis.execute("APPEND", key, "!"),
                return_exceptions=True,
            )
            assert results[0] == "text"
            assert isinstance(results[1], ProgrammingError)
            assert results[2] == 5
            assert await redis.execute("GET", key) == "text!"
            await redis.execute("DEL", key)
        assert spy.sizes[0] == 3
        await adb.close_all()

    asyncio.run(main())


def test_a_blocking_command_does_not_hold_up_the_others(url: str) -> None:
    async def main() -> None:
        adb, spy = await _manager(url)
        key = f"ap:{uuid.uuid4().hex[:8]}"
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("SET", key, "v")
            started = time.monotonic()
            blocked = asyncio.ensure_future(redis.execute("BLPOP", key + ":list", 1))
            got = await redis.execute("GET", key)
            waited = time.monotonic() - started
            assert got == "v"
            assert waited < 0.5  # not queued behind BLPOP's one-second wait
            assert await blocked is None
            await redis.execute("DEL", key)
        await adb.close_all()

    asyncio.run(main())


def test_identities_are_never_mixed_and_every_command_is_checked(redis_url: str) -> None:
    async def main() -> None:
        adb, spy = await _manager(redis_url)
        acl = AccessControl()
        acl.create_role(Role("cache", grants={"apc:*": "SELECT"}))
        acl.assign_role("ann", "cache")
        adb.use_access_control(acl)
        audit = MemoryAuditSink()
        adb.add_hook(AuditLog([audit]))
        seen = _Seen()
        adb.add_hook(seen)
        key = f"apc:{uuid.uuid4().hex[:8]}"
        secret = f"aps:{uuid.uuid4().hex[:8]}"
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("SET", key, "open")
            await redis.execute("SET", secret, "hidden")
        spy.sizes.clear()
        seen.texts.clear()
        ann = adb.for_user("ann")

        async def as_ann(k: str) -> Any:
            async with ann.connection(DatabaseType.REDIS) as redis:
                return await redis.execute("GET", k)

        async def as_app(k: str) -> Any:
            async with adb.connection(DatabaseType.REDIS) as redis:
                return await redis.execute("GET", k)

        results = await asyncio.gather(
            as_ann(key), as_ann(secret), as_ann(key), as_app(secret), as_app(key),
            return_exceptions=True,
        )  # fmt: skip
        assert results[0] == "open"
        assert isinstance(results[1], PermissionDenied)
        assert results[2] == "open"
        assert results[3] == "hidden"
        assert results[4] == "open"
        assert sorted(spy.sizes) == [2, 2]  # ann's two allowed GETs; the application's two
        assert len(seen.texts) == 5  # every command reached the hooks, the refused one too
        outcomes = sorted((e.user, e.outcome) for e in audit.events if e.user == "ann")
        assert outcomes == [("ann", "denied"), ("ann", "ok"), ("ann", "ok")]
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("DEL", key, secret)
        await adb.close_all()

    asyncio.run(main())


def test_a_cancelled_task_does_not_disturb_the_others(redis_url: str) -> None:
    async def main() -> None:
        adb, spy = await _manager(redis_url)
        key = f"ap:{uuid.uuid4().hex[:8]}"
        async with adb.connection(DatabaseType.REDIS) as redis:
            await redis.execute("SET", key, "v")
            first = asyncio.ensure_future(redis.execute("GET", key))
            doomed = asyncio.ensure_future(redis.execute("GET", key))
            last = asyncio.ensure_future(redis.execute("GET", key))
            await asyncio.sleep(0)
            doomed.cancel()
            assert await first == "v"
            assert await last == "v"
            with pytest.raises(asyncio.CancelledError):
                await doomed
            assert await redis.execute("GET", key) == "v"  # the connection is still in step
            await redis.execute("DEL", key)
        await adb.close_all()

    asyncio.run(main())
