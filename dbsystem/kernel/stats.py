"""What a pool reports about itself: ``PoolStats`` snapshots, ``PoolHolder`` records, and
``PoolLimits`` (``closed``, ``min_size``, ``max_size``).

Shared by every pool (the engine's, the async one, the drivers' own pools that Redis and
MongoDB keep) and read by monitoring, so it lives in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbsystem.errors import PoolClosed

__all__ = ["WAIT_BUCKETS", "PoolHolder", "PoolLimits", "PoolStats"]

WAIT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the acquire-wait histogram in ``PoolStats.wait_counts``."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool's state and counters (times in seconds)."""

    name: str
    min_size: int
    max_size: int
    total: int
    """Connections open or being opened."""
    active: int
    """Connections lent out."""
    idle: int
    """Connections ready to be lent."""
    waiting: int
    """Callers waiting for a connection."""
    acquired: int
    """Connections handed out since the pool opened."""
    timeouts: int
    """Acquires that gave up after the acquire timeout."""
    created: int
    """Connections opened."""
    closed: int
    """Connections closed by the pool (idle timeout, lifetime, shrink, pool close)."""
    discarded: int
    """Connections dropped as broken (failed ping, failed reset)."""
    connect_errors: int
    """Attempts to open a connection that failed."""
    leaks: int
    """Leases held past ``leak_threshold`` or garbage-collected without being returned."""
    wait_mean: float
    """Mean time an acquire waited, over all acquires (those served at once count as 0)."""
    wait_max: float
    """Longest time an acquire waited."""
    wait_counts: tuple[int, ...] = ()
    """Acquires per wait-time bucket: one count per bound of ``WAIT_BUCKETS``, then the rest."""
    wait_total: float = 0.0
    """Seconds all acquires waited, together."""


@dataclass(frozen=True, slots=True)
class PoolHolder:
    """A lent-out connection: who holds it, and for how long."""

    held_for: float
    """Seconds since it was acquired."""
    label: str | None
    """The label the borrower gave (``acquire(label=...)``, ``db.connection(label=...)``)."""
    location: str
    """Where it was acquired: ``file:line in function`` of the first caller outside dbsystem."""


class PoolLimits:
    """The read-only surface of every pool the manager holds (``ConnectionPool``,
    ``AsyncConnectionPool``, and the driver pools of Redis and MongoDB)."""

    name: str
    backend_name: str | None
    _closed: bool
    _min_size: int
    _max_size: int

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    @property
    def min_size(self) -> int:
        """Connections kept open while idle."""
        return self._min_size

    @property
    def max_size(self) -> int:
        """The most connections the pool holds."""
        return self._max_size

    def _closed_error(self, *, was: bool = False) -> PoolClosed:
        state = "was" if was else "is"
        return PoolClosed(f"pool {self.name!r} {state} closed", backend=self.backend_name)
