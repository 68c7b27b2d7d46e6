"""``AsyncConnectionPool`` driven by a fake connector: the guarantees ``ConnectionPool`` gives
(tests/unit/test_pool.py), on asyncio: sizes and settings errors, waiting and timeouts,
health, lifetime, refills, ``holders()``, labels, ``try_acquire``, leak warnings and
reclaimed leases."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from dbsystem.aio.pool import AsyncConnectionPool
from dbsystem.core.pool import ConnectionPool
from dbsystem.errors import (
    ConfigurationError,
    ConnectionFailed,
    InterfaceError,
    PoolClosed,
    PoolExhausted,
    PoolTimeout,
)
from tests.fakes import FakeAsyncConnector, FakeConnector

pytestmark = pytest.mark.timeout(30)


def run(coro):
    return asyncio.run(coro)


async def make_pool(connector: FakeAsyncConnector | None = None, **kwargs) -> AsyncConnectionPool:
    kwargs.setdefault("name", "test")
    kwargs.setdefault("acquire_timeout", 2.0)
    pool = AsyncConnectionPool(connector or FakeAsyncConnector(), **kwargs)
    await pool.open()
    return pool


async def wait_until(predicate, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_size": 3, "max_size": 2}, r"min_size \(3\) must not exceed max_size \(2\)"),
        ({"max_size": 0}, r"max_size \(0\) must be at least 1"),
        ({"min_size": -1}, "min_size"),
        ({"acquire_timeout": 0}, "acquire_timeout"),
    ],
)
def test_both_pools_refuse_bad_settings_with_the_same_error(settings, message):
    with pytest.raises(ConfigurationError, match=message) as sync_error:
        ConnectionPool(FakeConnector(), name="bad", **settings)
    with pytest.raises(ConfigurationError, match=message) as async_error:
        AsyncConnectionPool(FakeAsyncConnector(), name="bad", **settings)
    assert str(sync_error.value) == str(async_error.value)


def test_min_size_opens_up_front_and_a_failing_first_connect_raises():
    async def main():
        connector = FakeAsyncConnector()
        async with AsyncConnectionPool(connector, name="t", min_size=3, max_size=5) as pool:
            stats = pool.stats()
            assert (stats.total, stats.idle, stats.active, stats.created) == (3, 3, 0, 3)
        assert connector.open_count == 0  # closed on leaving the block
        broken = FakeAsyncConnector()
        broken.sync.fail = True
        pool = AsyncConnectionPool(broken, name="t", min_size=2)
        with pytest.raises(ConnectionFailed, match="server unavailable"):
            await pool.open()
        assert pool.closed

    run(main())


def test_grows_to_max_size_then_times_out_naming_pool_and_sizes():
    async def main():
        pool = await make_pool(min_size=0, max_size=2, acquire_timeout=0.1)
        held = [await pool.acquire(), await pool.acquire()]
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"'test'.*within 0.1 s: 2 of max_size 2 in use"):
            await pool.acquire()
        assert 0.08 <= time.monotonic() - started < 1.0
        for lease in held:
            await lease.release()
        stats = pool.stats()
        assert (stats.total, stats.active, stats.timeouts, stats.waiting) == (2, 0, 1, 0)
        await pool.close()

    run(main())


def test_waiters_are_served_in_order_and_max_waiting_refuses_at_once():
    async def main():
        pool = await make_pool(min_size=1, max_size=1, max_waiting=2)
        lease = await pool.acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            async with await pool.acquire() as conn:
                order.append(i)
                await asyncio.sleep(0.001)
                assert conn.raw is not None

        tasks = [asyncio.create_task(waiter(i)) for i in range(2)]
        await wait_until(lambda: pool.stats().waiting == 2)
        with pytest.raises(PoolExhausted, match="max_waiting=2"):
            await pool.acquire()
        await lease.release()
        await asyncio.gather(*tasks)
        assert order == [0, 1]
        await pool.close()

    run(main())


def test_health_check_lifetime_and_returns():
    async def main():
        connector = FakeAsyncConnector()
        pool = await make_pool(connector, min_size=1, max_size=1, health_check_interval=0.01)
        lease = await pool.acquire()
        first = lease.raw
        await lease.release()
        first.broken = True  # the server dropped it while idle
        await asyncio.sleep(0.02)
        async with await pool.acquire() as lease:
            assert lease.raw is not first and first.closed  # replaced silently
            lease.raw.in_tx = True  # returned dirty: rolled back
        assert connector.sync.rollbacks == 1
        lease = await pool.acquire()
        lease.raw.broken = True  # returned broken: dropped
        await lease.release()
        stats = pool.stats()
        assert (stats.discarded, stats.total) == (2, 0)
        with pytest.raises(InterfaceError, match="already returned"):
            await lease.release()
        with pytest.raises(InterfaceError, match="used after it was returned"):
            _ = lease.raw
        await pool.close()

        pool = await make_pool(connector, min_size=2, max_size=2, max_lifetime=0.05)
        lease = await pool.acquire()
        old = lease.raw
        await asyncio.sleep(0.08)
        assert not old.closed  # never closed under its borrower
        await lease.release()
        assert old.closed  # expired: closed on its return
        await wait_until(lambda: pool.stats().total == 2)  # min_size refilled
        await pool.close()

    run(main())


def test_idle_timeout_closes_surplus_but_keeps_min_size():
    async def main():
        connector = FakeAsyncConnector()
        pool = await make_pool(
            connector, min_size=1, max_size=4, idle_timeout=0.05, maintenance_interval=0.01
        )
        leases = [await pool.acquire() for _ in range(4)]
        for lease in leases:
            await lease.release()
        assert pool.stats().total == 4
        await wait_until(lambda: pool.stats().total == 1)
        assert connector.open_count == 1
        await pool.close()

    run(main())


def test_refills_back_off_while_the_server_is_down_and_report_once():
    async def main():
        connector = FakeAsyncConnector()
        pool = await make_pool(
            connector, min_size=1, max_size=1, maintenance_interval=0.01, reconnect_timeout=0.05
        )
        reported = []
        pool.reconnect_failed = reported.append
        lease = await pool.acquire()
        connector.sync.fail = True
        lease.raw.broken = True
        await lease.release()  # dropped: maintenance must refill min_size
        await wait_until(lambda: reported == [pool], timeout=3.0)
        errors = pool.stats().connect_errors
        assert 2 <= errors < 20  # backing off, not hammering the server
        connector.sync.fail = False
        await wait_until(lambda: pool.stats().total == 1, timeout=3.0)
        await pool.close()

    run(main())


def test_holders_name_the_label_or_the_callers_code_longest_held_first():
    async def main():
        pool = await make_pool(min_size=0, max_size=3)
        first = await pool.acquire(label="nightly-report")
        await asyncio.sleep(0.02)
        second = await pool.acquire()  # no label: the code location names it
        holders = pool.holders()
        assert [h.label for h in holders] == ["nightly-report", None]
        assert holders[0].held_for > holders[1].held_for >= 0
        assert "test_async_pool.py" in holders[1].location
        assert "in main" in holders[1].location
        await first.release()
        assert [h.label for h in pool.holders()] == [None]
        await second.release()
        assert pool.holders() == []
        await pool.close()

    run(main())


def test_try_acquire_never_waits():
    async def main():
        pool = await make_pool(min_size=1, max_size=2)
        first = await pool.try_acquire(label="probe")
        assert first is not None and pool.holders()[0].label == "probe"
        second = await pool.try_acquire()  # opens the second connection
        assert second is not None and pool.stats().created == 2
        started = time.monotonic()
        assert await pool.try_acquire() is None  # all lent: None at once
        assert time.monotonic() - started < 0.05
        waiter = asyncio.create_task(pool.acquire())
        await wait_until(lambda: pool.stats().waiting == 1)
        await first.release()  # handed to the waiter, not to a try_acquire
        assert await pool.try_acquire() is None
        await (await waiter).release()
        await second.release()
        stats = pool.stats()
        assert stats.acquired == sum(stats.wait_counts) == 3
        await pool.close()
        with pytest.raises(PoolClosed):
            await pool.try_acquire()

    run(main())


def test_leak_warning_names_the_borrowers_code(caplog):
    async def main():
        pool = await make_pool(min_size=1, max_size=1, leak_threshold=0.05)
        with caplog.at_level(logging.WARNING, logger="dbsystem.pool"):
            lease = await pool.acquire(label="slow job")
            await wait_until(lambda: "held for" in caplog.text)
            await lease.release()
        assert pool.stats().leaks == 1
        assert "label slow job" in caplog.text
        assert "test_leak_warning_names_the_borrowers_code" in caplog.text  # the stack
        await pool.close()

    run(main())


def test_a_lease_dropped_without_release_is_reclaimed(caplog):
    async def main():
        connector = FakeAsyncConnector()
        pool = await make_pool(connector, min_size=0, max_size=1, maintenance_interval=0.01)
        with caplog.at_level(logging.WARNING, logger="dbsystem.pool"):
            await pool.acquire()  # dropped on the floor
            gc.collect()
            await wait_until(lambda: "garbage-collected" in caplog.text)
        stats = pool.stats()
        assert (stats.leaks, stats.total, stats.active) == (1, 0, 0)
        assert connector.open_count == 0
        async with await pool.acquire(timeout=1):
            pass
        await pool.close()

    run(main())


def test_close_wakes_waiters_and_drains():
    async def main():
        pool = await make_pool(min_size=1, max_size=1)
        lease = await pool.acquire()
        waiter = asyncio.create_task(pool.acquire())
        await wait_until(lambda: pool.stats().waiting == 1)
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(lease.release()))
        started = time.monotonic()
        await pool.close(timeout=2.0)
        assert 0.04 < time.monotonic() - started < 1.0
        with pytest.raises(PoolClosed, match="was closed"):
            await waiter
        assert pool.stats().active == 0
        with pytest.raises(PoolClosed, match="is closed"):
            await pool.acquire()

    run(main())


def test_a_cancelled_waiter_leaves_nothing_behind():
    async def main():
        pool = await make_pool(min_size=1, max_size=1)
        lease = await pool.acquire()
        waiter = asyncio.create_task(pool.acquire())
        await wait_until(lambda: pool.stats().waiting == 1)
        await lease.release()  # handed to the waiter ...
        waiter.cancel()  # ... cancelled in the same instant: passed on, not lost
        with pytest.raises(asyncio.CancelledError):
            await waiter
        stats = pool.stats()
        assert (stats.active, stats.idle, stats.total, stats.waiting) == (0, 1, 1, 0)
        assert stats.acquired == sum(stats.wait_counts)
        async with await pool.acquire(timeout=0.5):
            pass
        await pool.close()

    run(main())
