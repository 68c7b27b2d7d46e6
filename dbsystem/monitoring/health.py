"""Health of every pool of a manager: up, degraded or down, with latency and last error.

``HealthMonitor(db).start()`` pings every pool of ``db`` every ``interval`` seconds on a
background thread and keeps the results; ``db.health()`` then answers at once from them
(a readiness probe must not wait on the database it reports on). A check never queues
behind the application: a pool with every connection lent out, or callers waiting, is
``degraded`` (saturated) without a ping. A ping slower than ``degraded_latency`` is
``degraded`` too; a failed one is ``down``, and its error is kept as ``last_error`` after
the backend recovers. Pings are not counted as queries by the ``PerformanceMonitor``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dbsystem._log import get_logger
from dbsystem.core._flow import Flow, adrive, drive
from dbsystem.errors import ConfigurationError
from dbsystem.kernel.types import DatabaseType
from dbsystem.monitoring._local import health_check
from dbsystem.monitoring._periodic import Periodic

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = [
    "BackendHealth",
    "HealthMonitor",
    "HealthStatus",
    "amanager_health",
    "manager_health",
    "pool_label",
]

logger = get_logger("dbsystem.health")


class HealthStatus(StrEnum):
    """A backend's state as the last check saw it."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """The last check of one pool."""

    pool: str
    """The pool's label: its database type (``postgres``), or ``redis/cache`` for a named
    pool."""
    backend: str
    """The backend's name, as in metrics and errors (``postgresql``, ``redis``...)."""
    status: HealthStatus
    latency: float | None
    """Seconds the last ping took (None if there was no ping)."""
    detail: str
    """Why the status is what it is, in words."""
    checked_at: float
    """Unix time of the check."""
    last_error: str | None = None
    """The latest failure (``ErrorClass: message``, secrets scrubbed), kept after recovery."""
    last_error_at: float | None = None

    @property
    def ok(self) -> bool:
        """True unless down (degraded still serves)."""
        return self.status is not HealthStatus.DOWN


def pool_label(db_type: DatabaseType, name: str | None) -> str:
    """The label a pool has in health results and alerts: ``mysql``, ``mysql/reports``."""
    return db_type.value if name is None else f"{db_type.value}/{name}"


class HealthMonitor:
    """Pings every pool of a manager at an interval; see the module docstring."""

    def __init__(
        self, db: DatabaseManager, *, interval: float = 5.0, degraded_latency: float = 0.5
    ) -> None:
        if interval <= 0:
            raise ConfigurationError(f"HealthMonitor: interval must be positive (got {interval!r})")
        self.db = db
        self.interval = interval
        self.degraded_latency = degraded_latency
        self._results: dict[str, BackendHealth] = {}
        self._lock = threading.Lock()
        self._worker = Periodic(
            "dbsystem-health",
            self.check,
            lambda: self.interval,
            logger=logger,
            what="health check",
            join_timeout=10.0,
        )

    @property
    def running(self) -> bool:
        """True while the background thread runs."""
        return self._worker.running

    def start(self) -> HealthMonitor:
        """Check every pool now, then every ``interval`` seconds in the background."""
        if self.running:
            return self
        self.check()
        self._worker.start()
        self.db._health_monitor = self
        return self

    def stop(self) -> None:
        """Stop the background checks."""
        self._worker.stop()
        if self.db._health_monitor is self:
            self.db._health_monitor = None

    def __enter__(self) -> HealthMonitor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def statuses(self) -> dict[str, BackendHealth]:
        """The latest result of every pool (never waits on a pool)."""
        with self._lock:
            return dict(self._results)

    def check(self) -> dict[str, BackendHealth]:
        """Check every pool now; return (and keep) the results."""
        results = {}
        for (db_type, name), pool in self.db.pools().items():
            label = pool_label(db_type, name)
            with self._lock:
                previous = self._results.get(label)
            backend = pool.backend_name or db_type.value
            result = self._check_pool(label, backend, pool, previous)
            results[label] = result
            if previous is None or previous.status is not result.status:
                log = logger.warning if result.status is not HealthStatus.UP else logger.info
                log("pool %s is %s: %s", label, result.status.value, result.detail)
        with self._lock:
            self._results = results
        return dict(results)

    def _check_pool(
        self, label: str, backend: str, pool: Any, previous: BackendHealth | None
    ) -> BackendHealth:
        return drive(_BLOCKING, self._check_flow(label, backend, pool, previous))

    async def _acheck_pool(
        self, label: str, backend: str, pool: Any, previous: BackendHealth | None
    ) -> BackendHealth:
        """``_check_pool`` for an asyncio pool: the same flow, its I/O awaited."""
        return await adrive(_AWAITED, self._check_flow(label, backend, pool, previous))

    def _check_flow(
        self, label: str, backend: str, pool: Any, previous: BackendHealth | None
    ) -> Flow[BackendHealth]:
        """One pool's check, written once (``core._flow``): borrow a connection only if
        one is free (never queue), ping it, judge."""
        health_check.checking = True
        try:
            stats = pool.stats()
            latency = None
            lease = yield ("lease", pool)
            if lease is not None:
                start = time.perf_counter()
                yield ("ping", lease)
                latency = time.perf_counter() - start
        except Exception as exc:
            return _down(label, backend, exc)
        finally:
            health_check.checking = False
        return self._judge(label, backend, stats, latency, previous)

    def _judge(
        self,
        label: str,
        backend: str,
        stats: Any,
        latency: float | None,
        previous: BackendHealth | None,
    ) -> BackendHealth:
        """The verdict on a pool that answered (``latency``) or had no connection to spare."""
        if latency is None:
            status = HealthStatus.DEGRADED
            detail = (
                f"saturated: {stats.active} of {stats.max_size} connections in use, "
                f"{stats.waiting} callers waiting"
            )
        elif latency >= self.degraded_latency:
            status, detail = HealthStatus.DEGRADED, f"slow: ping took {latency * 1000:.0f} ms"
        else:
            status, detail = HealthStatus.UP, f"ping {latency * 1000:.1f} ms"
        result = BackendHealth(label, backend, status, latency, detail, time.time())
        if previous is None:
            return result
        return replace(result, last_error=previous.last_error, last_error_at=previous.last_error_at)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<HealthMonitor {state} interval={self.interval:g}s>"


def manager_health(db: DatabaseManager, *, check: bool = False) -> dict[str, BackendHealth]:
    """Each pool's health, keyed ``"postgres"``, ``"redis/cache"``... (``db.health()``).

    With a health monitor running its latest results are returned at once; otherwise, or
    with ``check=True``, every pool is checked now.
    """
    monitor = db._health_monitor
    if monitor is None or check or not monitor.running:
        return dict(HealthMonitor(db).check())
    return dict(monitor.statuses())


class _Blocking:
    """The I/O of a health check, blocking (a ``ConnectionPool``, a driver pool)."""

    def lease(self, pool: Any) -> Any:
        return pool.try_acquire(label="health check")

    def ping(self, lease: Any) -> None:
        with lease:
            lease.ping()


class _Awaited:
    """The I/O of a health check, awaited (an ``AsyncConnectionPool``)."""

    async def lease(self, pool: Any) -> Any:
        return await pool.try_acquire(label="health check")

    async def ping(self, lease: Any) -> None:
        async with lease:
            await lease.ping()


_BLOCKING, _AWAITED = _Blocking(), _Awaited()


def _down(label: str, backend: str, exc: Exception) -> BackendHealth:
    now = time.time()
    error = f"{type(exc).__name__}: {exc}"
    return BackendHealth(label, backend, HealthStatus.DOWN, None, error, now, error, now)


async def amanager_health(adb: Any) -> dict[str, BackendHealth]:
    """Each pool's health for an ``AsyncDatabaseManager`` (``await adb.health()``): its
    asyncio pools checked awaited, its Redis and MongoDB pools on a worker thread."""
    import asyncio

    checker = HealthMonitor(adb.sync)
    results = await asyncio.to_thread(checker.check)
    for (db_type, name), pool in adb._pools.items():
        label = pool_label(db_type, name)
        backend = pool.backend_name or db_type.value
        results[label] = await checker._acheck_pool(label, backend, pool, None)
    return dict(sorted(results.items()))
