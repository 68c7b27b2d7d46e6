"""What Redis and MongoDB share: their drivers pool connections themselves.

The manager holds a ``DriverPool`` for them where it holds a ``ConnectionPool`` for SQL: the
same ``acquire``/``stats``/``close``/``hooks`` surface, lending light handles that run each
operation on a connection the driver borrows from its own pool for just that operation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from dbsystem.kernel.hooks import HookChain
from dbsystem.kernel.stats import PoolLimits, PoolStats

__all__ = ["DriverHandle", "DriverPool"]

H = TypeVar("H", bound="DriverHandle")


class DriverHandle:
    """A handle lent by a ``DriverPool``: usable in ``with`` like a SQL connection, though
    there is nothing to give back (the driver returns its connection after each call)."""

    def __enter__(self: H) -> H:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def release(self) -> None:
        """Nothing to return; kept for symmetry with SQL connections."""


class DriverPool(PoolLimits, ABC, Generic[H]):
    """The manager's pool object for a backend whose driver pools for itself."""

    def __init__(self, backend: Any, *, name: str, hooks: HookChain) -> None:
        self.connector = backend
        self.name = name
        self.hooks = hooks
        self.backend_name: str = backend.label
        self._closed = False
        self._min_size: int = backend.config.min_size
        self._max_size: int = backend.config.max_size

    def acquire(self, timeout: float | None = None, *, label: str | None = None) -> H:
        """A handle running operations through the driver's pool.

        The driver lends its connections per command, so there is no holder to label.
        """
        if self._closed:
            raise self._closed_error()
        return self._handle()

    def try_acquire(self, *, label: str | None = None) -> H | None:
        """A handle, or None at once when every driver connection is in use."""
        stats = self.stats()
        if stats.active >= stats.max_size:
            return None
        return self.acquire(label=label)

    @abstractmethod
    def stats(self) -> PoolStats:
        """A snapshot of the driver pool's counters."""

    @abstractmethod
    def _handle(self) -> H:
        """A new handle of this driver's kind."""

    def close(self, timeout: float = 0.0) -> None:
        """Close the driver's connections; later use raises ``PoolClosed``."""
        self._closed = True
        self.connector.dispose()

    def _stats(
        self,
        *,
        total: int,
        active: int,
        waiting: int,
        acquired: int,
        timeouts: int,
        created: int,
        closed: int,
        wait_total: float,
        wait_max: float,
    ) -> PoolStats:
        return PoolStats(
            name=self.name,
            min_size=self._min_size,
            max_size=self._max_size,
            total=total,
            active=active,
            idle=max(0, total - active),
            waiting=waiting,
            acquired=acquired,
            timeouts=timeouts,
            created=created,
            closed=closed,
            discarded=0,
            connect_errors=0,
            leaks=0,
            wait_mean=wait_total / acquired if acquired else 0.0,
            wait_max=wait_max,
        )
