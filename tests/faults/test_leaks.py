"""L4, short: after a warm-up, thousands of operations leave memory, descriptors, threads and
server sessions flat (each backend, sync and async)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import tracemalloc
import uuid
from collections.abc import Callable

import pytest

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, PoolConfig

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

WARM, OPS = 1_000, 5_000


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _footprint() -> tuple[int, int, int]:
    gc.collect()
    return _rss_kib(), _fds(), threading.active_count()


def _check_flat(run: Callable[[int], None]) -> dict[str, float]:
    """Run ``run(count)`` and measure, in two phases: RSS, descriptors and threads without
    tracemalloc (whose own tables grow RSS), then Python allocations with it."""
    run(WARM)
    rss, fds, threads = _footprint()
    run(OPS)
    rss_after, fds_after, threads_after = _footprint()
    tracemalloc.start()
    try:
        run(WARM // 2)
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        run(OPS)
        gc.collect()
        traced = sum(
            stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(snapshot, "filename")
        )
    finally:
        tracemalloc.stop()
    growth = {
        "rss_mib": (rss_after - rss) / 1024,
        "traced_mib": traced / 2**20,
        "fds": fds_after - fds,
        "threads": threads_after - threads,
    }
    assert growth["rss_mib"] < 5, growth
    assert growth["traced_mib"] < 1, growth
    assert growth["fds"] == 0, growth
    assert growth["threads"] == 0, growth
    return growth


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_sync_operations_leave_nothing_behind(kind, request, tmp_path):
    types = {
        "sqlite": DatabaseType.SQLITE,
        "postgres": DatabaseType.POSTGRES,
        "mysql": DatabaseType.MYSQL,
        "redis": DatabaseType.REDIS,
    }
    url = (
        f"sqlite:///{tmp_path}/l4.db"
        if kind == "sqlite"
        else request.getfixturevalue(f"{kind}_url")
    )
    db = DatabaseManager()
    db.create_pool(types[kind], PoolConfig(url=url, min_size=2, max_size=4))
    key = f"l4_{uuid.uuid4().hex[:8]}"
    if kind == "redis":

        def op(i: int) -> None:
            with db.connection(DatabaseType.REDIS) as conn:
                conn.execute("SET", key, str(i))
                conn.execute("GET", key)

    else:
        db.execute(f"CREATE TABLE {key} (id INTEGER PRIMARY KEY, v VARCHAR(20))")

        def op(i: int) -> None:
            db.execute(f"INSERT INTO {key} VALUES (:i, 'x')", {"i": i})
            db.fetch_one(f"SELECT v FROM {key} WHERE id = :i", {"i": i})
            db.query().select("v").from_(key).where("id", "=", i).first()

    counter = iter(range(10**9))

    def run(count: int) -> None:
        for _ in range(count):
            op(next(counter))

    sessions = db.get_pool(types[kind]).stats().total
    _check_flat(run)
    assert db.get_pool(types[kind]).stats().total <= max(sessions, 2)
    if kind == "redis":
        with db.connection(DatabaseType.REDIS) as conn:
            conn.execute("DEL", key)
    else:
        db.execute(f"DROP TABLE {key}")
    db.close_all()


def test_async_operations_leave_nothing_behind(postgres_url):
    loop = asyncio.new_event_loop()
    adb = AsyncDatabaseManager()
    loop.run_until_complete(
        adb.create_pool(DatabaseType.POSTGRES, PoolConfig(url=postgres_url, max_size=4))
    )

    async def burst(count: int) -> None:
        for start in range(0, count, 50):
            await asyncio.gather(
                *(adb.fetch_value("SELECT :i", {"i": i}) for i in range(start, start + 50))
            )

    try:
        _check_flat(lambda count: loop.run_until_complete(burst(count)))
    finally:
        loop.run_until_complete(adb.close_all())
        loop.close()
