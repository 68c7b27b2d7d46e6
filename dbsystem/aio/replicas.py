"""Read replicas for the async manager: ``ReplicaSet``'s choice, awaited.

The policy, the lag limit, the fall-back to the primary and read-your-writes are
``dbsystem.core.replicas.ReplicaSet``'s; what differs is only the I/O. A replica's lag is
measured on its own async pool when the cached figure is older than half a second, before
the choice is made, and a read runs on an ``AsyncConnection``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dbsystem.core.replicas import _LAG_EVERY, _LAG_SQL, ReplicaSet, _lag_of, replica_options
from dbsystem.core.topology import REFRESH_EVERY, PatroniState, Topology, fetch_cluster, logger
from dbsystem.errors import ConnectionFailed, DBSystemError, PoolTimeout
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.hooks import classify_sql
from dbsystem.kernel.types import DatabaseType

__all__ = ["AsyncPatroniWatcher", "AsyncReplicaSet"]

T = TypeVar("T")


class AsyncReplicaSet(ReplicaSet):
    """The replicas of one async primary pool, and the choice among them."""

    db: Any  # an AsyncDatabaseManager: the same calls, awaited

    def _measure_lag(self, replica: str) -> float:
        # Never blocks the event loop: ``_refresh_lags`` has measured before the choice.
        checked = self._lag.get(replica)
        return float("inf") if checked is None else checked[1]

    async def _refresh_lags(self) -> None:
        if self.max_lag is None:
            return
        sql = _LAG_SQL.get(self._dialect)
        now = time.monotonic()
        for replica in self.replicas:
            checked = self._lag.get(replica)
            if checked is not None and now - checked[0] < _LAG_EVERY:
                continue
            lag = 0.0
            if sql is not None:
                try:
                    async with self.db.connection(self.db_type, name=replica, timeout=1.0) as conn:
                        lag = _lag_of(await conn.fetch_one(sql))
                except DBSystemError:
                    lag = float("inf")
            self._lag[replica] = (time.monotonic(), lag)

    async def aread(
        self, sql: str | None, call: Callable[[Any], Awaitable[T]], context: Any = None
    ) -> T:
        """``await call(conn)`` on a replica if ``sql`` only reads (None: a select builder),
        else, or when no replica can serve, on the primary."""
        replica = None
        if (sql is None or classify_sql(sql, self._dialect)[0] == "select") and not self.pinned():
            await self._refresh_lags()
            replica = self.choose()
        if replica is not None:
            started = time.perf_counter()
            try:
                async with self.db._connection_as(context, self.db_type, replica) as conn:
                    result = await call(conn)
            except (ConnectionFailed, PoolTimeout) as exc:
                self._failed(replica, exc)
            else:
                self._served(replica, started)
                return result
        async with self.db._connection_as(context, self.db_type, self.primary) as conn:
            return await call(conn)


class AsyncPatroniReplicaSet(AsyncReplicaSet):
    """An ``AsyncReplicaSet`` whose replicas follow Patroni; a failing read asks the
    watcher for a refresh at once (``PatroniReplicaSet``'s async twin)."""

    watcher: PatroniState

    def _failed(self, replica: str, exc: BaseException) -> None:
        super()._failed(replica, exc)
        self.watcher.refresh_soon()

    async def aread(
        self, sql: str | None, call: Callable[[Any], Awaitable[T]], context: Any = None
    ) -> T:
        try:
            return await super().aread(sql, call, context)
        except (ConnectionFailed, PoolTimeout):
            self.watcher.refresh_soon()
            raise


class AsyncPatroniWatcher(PatroniState):
    """The async manager's watcher: the same plan, read in a worker thread and applied by
    a task of the event loop (replica pools are ``AsyncConnectionPool``s)."""

    def __init__(self, db: Any, db_type: DatabaseType, name: str | None, config: PoolConfig):
        self._setup(db_type, name, config)
        self._db = db
        self._pool = db.get_pool(db_type, name)
        self.replicas: AsyncPatroniReplicaSet = AsyncPatroniReplicaSet(
            db, db_type, name, [], **replica_options(config)
        )
        self.replicas.watcher = self
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first read, then the refresh task."""
        self._wake = asyncio.Event()
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def refresh_soon(self) -> None:
        """Read the cluster again now (a read failed: the topology may have changed)."""
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        wake = self._wake or asyncio.Event()
        while not self._pool._closed:
            try:
                await asyncio.wait_for(wake.wait(), REFRESH_EVERY)
            except TimeoutError:
                pass
            wake.clear()
            if self._pool._closed:
                break
            try:
                await self.refresh()
            except Exception:  # never let the watcher die
                logger.exception("pool %r: Patroni topology refresh failed", self._label)
        await self._close(self._rotation(list(self._pools)))

    async def refresh(self) -> Topology:
        """Read ``/cluster`` (in a worker thread) and bring the read rotation in line."""
        try:
            raw = await asyncio.to_thread(fetch_cluster, self.urls)
        except DBSystemError as exc:
            self._failed_read(exc)
            return self.topology
        to_open, leaving = self._plan(raw)
        for member, pool_name, config in to_open:
            try:
                await self._db.create_pool(self.db_type, config, name=pool_name)
            except DBSystemError as exc:
                logger.warning("pool %r: replica %s not added: %s", pool_name, member, exc)
            else:
                self._opened(member, pool_name)
        await self._close(self._rotation(leaving))
        return self.topology

    async def _close(self, pool_names: list[str]) -> None:
        for pool_name in pool_names:
            try:
                await self._db.close_pool(self.db_type, pool_name)
            except DBSystemError:
                pass  # closed with the others (close_all)
