"""Read replicas for the async manager: ``ReplicaSet``'s choice, awaited.

The policy, the lag limit, the fall-back to the primary and read-your-writes are
``dbsystem.core.replicas.ReplicaSet``'s; what differs is only the I/O. A replica's lag is
measured on its own async pool when the cached figure is older than half a second, before
the choice is made, and a read runs on an ``AsyncConnection``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dbsystem.core.execution import lend
from dbsystem.core.replicas import _LAG_EVERY, _LAG_SQL, ReplicaSet, _lag_of
from dbsystem.errors import ConnectionFailed, DBSystemError, PoolTimeout
from dbsystem.kernel.hooks import classify_sql

__all__ = ["AsyncReplicaSet"]

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
                async with self.db.connection(self.db_type, name=replica) as conn:
                    lend(conn, context)
                    result = await call(conn)
            except (ConnectionFailed, PoolTimeout) as exc:
                self._failed(replica, exc)
            else:
                self._served(replica, started)
                return result
        async with self.db.connection(self.db_type, name=self.primary) as conn:
            lend(conn, context)
            return await call(conn)
