"""Redis under Sentinel (one master, one replica, three sentinels, all real): the pool
finds the master by name, reads from replicas when asked, and follows a ``SENTINEL
FAILOVER`` and a killed master without a restart; every caller error is typed."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from dbsystem import ConfigurationError, DatabaseManager, DatabaseType, DBSystemError
from dbsystem.aio import AsyncDatabaseManager
from tests.ha.cluster import REDIS_PORTS, wait_for

pytestmark = [pytest.mark.ha, pytest.mark.slow, pytest.mark.timeout(180)]
REDIS = DatabaseType.REDIS
FIGURES: dict[str, float] = {}


def _port(db: DatabaseManager) -> int:
    with db.connection(REDIS) as redis:
        return int(redis.execute("CONFIG", "GET", "port")["port"])


@pytest.fixture
def db(sentinel_cluster):
    manager = DatabaseManager()
    manager.create_pool(REDIS, sentinel_cluster.url())
    yield manager
    manager.close_all()


def test_the_pool_finds_the_master_by_name(sentinel_cluster, db):
    assert _port(db) == sentinel_cluster.master_port()


def test_read_from_replicas_reads_on_a_replica(sentinel_cluster):
    manager = DatabaseManager()
    manager.create_pool(REDIS, sentinel_cluster.url("read_from=replicas"))
    try:
        with manager.connection(REDIS) as redis:
            role = redis.execute("ROLE")[0]
    finally:
        manager.close_all()
    assert role == "slave"


def test_a_bad_read_from_is_refused(sentinel_cluster):
    with pytest.raises(ConfigurationError, match="read_from"):
        DatabaseManager().create_pool(REDIS, sentinel_cluster.url("read_from=nearest"))


def _under_load(db: DatabaseManager, event, settle) -> tuple[float, list[BaseException], float]:
    """Writers SET keys while ``event()`` runs; returns the longest gap between two
    successful writes, the errors, and how long until ``settle()`` held."""
    stop = threading.Event()
    successes: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                with db.connection(REDIS) as redis:
                    redis.execute("SET", f"ha:{number}:{n}", "1")
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                time.sleep(0.05)
            else:
                with lock:
                    successes.append(time.monotonic())
            n += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # some writes before the event, for the gap's start
        started = time.monotonic()
        event()
        wait_for(settle, 40, "the pool on the new master")
        settled = time.monotonic() - started
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    times = sorted(successes)
    gap = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
    return gap, errors, settled


def test_a_sentinel_failover_is_followed(sentinel_cluster, db):
    old = sentinel_cluster.master_port()
    new = next(p for p in REDIS_PORTS if p != old)
    gap, errors, settled = _under_load(db, sentinel_cluster.failover, lambda: _port(db) == new)
    FIGURES["SENTINEL FAILOVER: longest gap (s)"] = gap
    FIGURES["SENTINEL FAILOVER: caller errors"] = len(errors)
    FIGURES["SENTINEL FAILOVER: pool on the new master after (s)"] = settled
    print(FIGURES)  # noqa: T201
    assert [e for e in errors if not isinstance(e, DBSystemError)] == []
    sentinel_cluster.wait_ready(new)


def test_a_killed_master_is_followed(sentinel_cluster, db):
    old = sentinel_cluster.master_port()
    new = next(p for p in REDIS_PORTS if p != old)
    gap, errors, settled = _under_load(
        db, lambda: sentinel_cluster.kill(old), lambda: _port(db) == new
    )
    FIGURES["killed master: longest gap (s)"] = gap
    FIGURES["killed master: caller errors"] = len(errors)
    FIGURES["killed master: pool on the new master after (s)"] = settled
    print(FIGURES)  # noqa: T201
    assert [e for e in errors if not isinstance(e, DBSystemError)] == []
    sentinel_cluster.restart(old, new)  # back as a replica, for the other tests
    sentinel_cluster.wait_ready(new)


def test_the_async_pool_follows_a_failover(sentinel_cluster):
    async def scenario() -> tuple[int, int]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(REDIS, sentinel_cluster.url())
        try:
            async with adb.connection(REDIS) as redis:
                before = int((await redis.execute("CONFIG", "GET", "port"))["port"])
            await asyncio.to_thread(sentinel_cluster.failover)
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with adb.connection(REDIS) as redis:
                        await redis.execute("SET", "ha:async", "1")
                        after = int((await redis.execute("CONFIG", "GET", "port"))["port"])
                    if after != before:
                        return before, after
                except DBSystemError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("the async pool stayed on the old master")
                await asyncio.sleep(0.1)
        finally:
            await adb.close_all()

    before, after = asyncio.run(scenario())
    assert after != before
    sentinel_cluster.wait_ready(after)
