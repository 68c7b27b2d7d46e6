"""``AsyncConnectionPool``: the asyncio twin of ``ConnectionPool``, for one event loop.

The same settings and guarantees: ``min_size`` opened up front and kept, ``max_size``
never exceeded, acquire waits at most ``acquire_timeout`` (``PoolTimeout``), idle
connections above ``min_size`` closed after ``idle_timeout``, connections replaced after
``max_lifetime``, a connection idle longer than ``health_check_interval`` pinged before it
is lent, ``max_waiting`` callers at most, and the same ``PoolStats``.

Cancellation safety: a task cancelled while it waits for a connection leaves nothing
behind (a connection handed to it in the same instant goes to the next waiter); a task
cancelled while it holds one returns it (the release is shielded), and a task cancelled
in the middle of a statement gets its connection closed rather than reused, since the
statement's state on the wire is unknown.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any, Generic, Protocol, TypeVar

from dbsystem._log import get_logger
from dbsystem.errors import InterfaceError, PoolClosed, PoolExhausted, PoolTimeout
from dbsystem.kernel.hooks import HookChain
from dbsystem.kernel.stats import WAIT_BUCKETS, PoolStats

__all__ = ["AsyncConnectionPool", "AsyncConnector", "AsyncPooledConnection"]

logger = get_logger("dbsystem.pool")

C = TypeVar("C")
L = TypeVar("L", bound="AsyncPooledConnection[Any]")


class AsyncConnector(Protocol[C]):
    """Opens, checks, resets and closes one kind of async connection."""

    async def connect(self) -> C: ...

    async def check(self, conn: C) -> None: ...

    async def reset(self, conn: C) -> None: ...

    async def close(self, conn: C) -> None: ...

    def is_clean(self, conn: C) -> bool:
        """True if ``conn`` can be lent again without ``reset`` (no transaction, no stream):
        its release then completes without awaiting anything."""
        ...


class _Entry:
    __slots__ = ("conn", "created", "expires_at", "last_used")

    def __init__(self, conn: Any, now: float, expires_at: float) -> None:
        self.conn = conn
        self.created = now
        self.expires_at = expires_at
        self.last_used = now


class AsyncPooledConnection(Generic[C]):
    """A lease: ``async with pool.acquire() as conn``, or ``await conn.release()``."""

    __slots__ = ("_entry", "_pool", "_raw")

    def __init__(self, pool: AsyncConnectionPool[C], entry: _Entry) -> None:
        self._pool = pool
        self._entry: _Entry | None = entry
        self._raw: C | None = entry.conn

    @property
    def raw(self) -> C:
        """The backend connection; ``InterfaceError`` once returned."""
        raw = self._raw
        if raw is None:
            raise InterfaceError(
                f"connection used after it was returned to pool {self._pool.name!r}",
                backend=self._pool.backend_name,
            )
        return raw

    @property
    def released(self) -> bool:
        """True once the connection went back to the pool."""
        return self._entry is None

    async def release(self) -> None:
        """Return the connection; shielded, so a cancelled caller still returns it."""
        entry = self._entry
        if entry is None:
            raise InterfaceError(
                f"connection was already returned to pool {self._pool.name!r}",
                backend=self._pool.backend_name,
            )
        self._entry = None
        self._raw = None
        pool = self._pool
        if not pool._release_now(entry):
            await asyncio.shield(pool._release(entry))

    async def __aenter__(self: L) -> L:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._entry is not None:
            await self.release()


class AsyncConnectionPool(Generic[C]):
    """A pool of async connections (see the module docstring)."""

    def __init__(
        self,
        connector: AsyncConnector[C],
        *,
        name: str,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        idle_timeout: float | None = 600.0,
        max_lifetime: float | None = 3600.0,
        health_check_interval: float | None = 1.0,
        max_waiting: int = 0,
        backend_name: str | None = None,
        hooks: HookChain | None = None,
        lease_class: type[AsyncPooledConnection[C]] = AsyncPooledConnection,
        backend: Any = None,
        is_broken: Callable[[C], bool] = lambda conn: bool(getattr(conn, "broken", False)),
    ) -> None:
        if min_size > max_size:
            raise InterfaceError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
        self.connector = connector
        self.backend = backend
        """The backend the connections belong to (its dialect, URL), if any."""
        self.name = name
        self.backend_name = backend_name or name
        self.hooks = hooks if hooks is not None else HookChain()
        self._min_size, self._max_size = min_size, max_size
        self._acquire_timeout = acquire_timeout
        self._idle_timeout, self._max_lifetime = idle_timeout, max_lifetime
        self._health_check_interval = health_check_interval
        self._max_waiting = max_waiting
        self._lease_class = lease_class
        self._is_broken = is_broken
        self._is_clean: Callable[[C], bool] = getattr(connector, "is_clean", lambda conn: False)
        self._idle: deque[_Entry] = deque()
        # A waiter's future gets an entry, or None: a freed slot, open a connection in it.
        self._waiters: deque[asyncio.Future[_Entry | None]] = deque()
        self._total = 0  # open or being opened
        self._active = 0
        self._closed = False
        self._maintenance: asyncio.Task[None] | None = None
        self._n_acquired = self._n_timeouts = self._n_created = self._n_closed = 0
        self._n_discarded = self._n_connect_errors = 0
        self._wait_total = self._wait_max = 0.0
        self._wait_counts = [0] * (len(WAIT_BUCKETS) + 1)

    # -- life cycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open ``min_size`` connections (the first failure raises) and start maintenance."""
        for _ in range(self._min_size):
            self._total += 1
            try:
                conn = await self.connector.connect()
            except BaseException:
                self._total -= 1
                self._n_connect_errors += 1
                raise
            self._n_created += 1
            self._idle.append(self._new_entry(conn))
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        """Close idle connections now, the lent ones as they come back; waiters fail."""
        if self._closed:
            return
        self._closed = True
        if self._maintenance is not None:
            self._maintenance.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed(f"pool {self.name!r} was closed"))
        idle, self._idle = list(self._idle), deque()
        for entry in idle:
            self._total -= 1
            self._n_closed += 1
            await self._close_conn(entry.conn)

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._closed

    @property
    def min_size(self) -> int:
        """Connections kept open."""
        return self._min_size

    @property
    def max_size(self) -> int:
        """Connections open at most."""
        return self._max_size

    def _new_entry(self, conn: C) -> _Entry:
        now = monotonic()
        lifetime = self._max_lifetime
        expires = now + lifetime * (1 - 0.1 * random.random()) if lifetime else float("inf")
        return _Entry(conn, now, expires)

    # -- acquire and release ---------------------------------------------------------------

    async def acquire(self, timeout: float | None = None) -> AsyncPooledConnection[C]:
        """Borrow a connection, waiting at most ``timeout`` (default ``acquire_timeout``)."""
        if self._closed:
            raise PoolClosed(f"pool {self.name!r} is closed", backend=self.backend_name)
        idle = self._idle
        if idle:  # the fast path: an idle connection, recently used, not expired
            entry = idle[-1]
            now = monotonic()
            interval = self._health_check_interval
            if now < entry.expires_at and (interval is None or now - entry.last_used < interval):
                idle.pop()
                self._active += 1
                self._n_acquired += 1
                self._wait_counts[0] += 1  # waited 0 s
                return self._lease_class(self, entry)
        limit = self._acquire_timeout if timeout is None else timeout
        start = monotonic()
        while True:
            entry = await self._get(limit - (monotonic() - start), limit)
            now = monotonic()
            if now >= entry.expires_at:
                await self._discard(entry, closed=True)
                continue
            interval = self._health_check_interval
            if interval is not None and now - entry.last_used >= interval:
                try:
                    await self.connector.check(entry.conn)
                except Exception as exc:
                    logger.warning(
                        "pool %r: discarding a connection that failed its health check: %s",
                        self.name,
                        exc,
                    )
                    await self._discard(entry, closed=False)
                    continue
            waited = monotonic() - start
            self._count_wait(waited)
            self._active += 1
            self._n_acquired += 1
            return self._lease_class(self, entry)

    def _count_wait(self, waited: float) -> None:
        self._wait_total += waited
        if waited > self._wait_max:
            self._wait_max = waited
        for index, bound in enumerate(WAIT_BUCKETS):
            if waited <= bound:
                self._wait_counts[index] += 1
                return
        self._wait_counts[-1] += 1

    async def _get(self, timeout: float, limit: float) -> _Entry:
        if self._idle:
            return self._idle.pop()
        if self._total < self._max_size:
            self._total += 1
            return await self._open_reserved()
        if self._max_waiting and len(self._waiters) >= self._max_waiting:
            raise PoolExhausted(
                f"pool {self.name!r}: {len(self._waiters)} callers already waiting "
                f"(max_waiting={self._max_waiting})",
                backend=self.backend_name,
            )
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Entry | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(max(timeout, 0.0), self._expire, waiter, limit)
        try:
            got = await waiter
        except BaseException:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            # Served in the same instant we were cancelled (or timed out): pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                served = waiter.result()
                if served is None:
                    self._total -= 1
                    self._grant_permit()
                else:
                    self._hand_over(served)
            raise
        timer.cancel()
        if got is None:  # a freed slot
            return await self._open_reserved()
        return got

    def _expire(self, waiter: asyncio.Future[_Entry | None], timeout: float) -> None:
        if waiter.done():
            return
        self._n_timeouts += 1
        waiter.set_exception(
            PoolTimeout(
                f"pool {self.name!r} could not provide a connection within {timeout:g} s: "
                f"{self._active} of max_size {self._max_size} in use, "
                f"{len(self._waiters) - 1} other callers waiting",
                backend=self.backend_name,
            )
        )

    async def _open_reserved(self) -> _Entry:
        try:
            conn = await self.connector.connect()
        except BaseException:
            self._total -= 1
            self._n_connect_errors += 1
            self._grant_permit()
            raise
        self._n_created += 1
        entry = self._new_entry(conn)
        if self._closed:
            self._total -= 1
            await self._close_conn(conn)
            raise PoolClosed(f"pool {self.name!r} was closed", backend=self.backend_name)
        return entry

    def _hand_over(self, entry: _Entry) -> None:
        """Give an entry to the first waiter still waiting, else keep it idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(entry)
                return
        self._idle.append(entry)

    def _grant_permit(self) -> None:
        """A slot was freed: let the first waiter open a connection in it."""
        while self._waiters and self._total < self._max_size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._total += 1
                waiter.set_result(None)
                return

    def _release_now(self, entry: _Entry) -> bool:
        """Release without awaiting, when nothing needs resetting; False: use ``_release``."""
        conn = entry.conn
        if self._closed or self._is_broken(conn) or not self._is_clean(conn):
            return False
        now = monotonic()
        if now >= entry.expires_at:
            return False
        self._active -= 1
        entry.last_used = now
        self._hand_over(entry)
        return True

    async def _release(self, entry: _Entry) -> None:
        self._active -= 1
        conn = entry.conn
        healthy = not self._is_broken(conn)
        if healthy and not self._closed:
            try:
                await self.connector.reset(conn)
            except Exception as exc:
                healthy = False
                logger.warning(
                    "pool %r: discarding a connection returned in a broken state: %s",
                    self.name,
                    exc,
                )
        now = monotonic()
        if healthy and now < entry.expires_at and not self._closed:
            entry.last_used = now
            self._hand_over(entry)
            return
        await self._discard(entry, closed=healthy)

    async def _discard(self, entry: _Entry, *, closed: bool) -> None:
        self._total -= 1
        if closed:
            self._n_closed += 1
        else:
            self._n_discarded += 1
        self._grant_permit()
        await self._close_conn(entry.conn)

    async def _close_conn(self, conn: C) -> None:
        try:
            await self.connector.close(conn)
        except Exception:
            logger.debug("pool %r: error while closing a connection", self.name, exc_info=True)

    # -- maintenance -----------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Every half second: close idle connections past their time, refill ``min_size``."""
        while not self._closed:
            await asyncio.sleep(0.5)
            now = monotonic()
            keep: deque[_Entry] = deque()
            expired: list[_Entry] = []
            spare = len(self._idle) + self._active - self._min_size
            for entry in self._idle:
                too_old = now >= entry.expires_at
                unused = (
                    self._idle_timeout is not None
                    and now - entry.last_used >= self._idle_timeout
                    and spare > 0
                )
                if too_old or unused:
                    expired.append(entry)
                    spare -= 1
                else:
                    keep.append(entry)
            self._idle = keep
            for entry in expired:
                await self._discard(entry, closed=True)
            while self._total < self._min_size and not self._closed and not self._waiters:
                self._total += 1
                try:
                    conn = await self.connector.connect()
                except Exception as exc:
                    self._total -= 1
                    self._n_connect_errors += 1
                    logger.warning("pool %r: could not open a connection: %s", self.name, exc)
                    break
                self._n_created += 1
                self._hand_over(self._new_entry(conn))

    # -- statistics ------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """A snapshot of the pool's state and counters."""
        acquired = self._n_acquired
        return PoolStats(
            name=self.name,
            min_size=self._min_size,
            max_size=self._max_size,
            total=self._total,
            active=self._active,
            idle=len(self._idle),
            waiting=sum(1 for w in self._waiters if not w.done()),
            acquired=acquired,
            timeouts=self._n_timeouts,
            created=self._n_created,
            closed=self._n_closed,
            discarded=self._n_discarded,
            connect_errors=self._n_connect_errors,
            leaks=0,
            wait_mean=self._wait_total / acquired if acquired else 0.0,
            wait_max=self._wait_max,
            wait_counts=tuple(self._wait_counts),
            wait_total=self._wait_total,
        )

    def __repr__(self) -> str:
        return f"<AsyncConnectionPool {self.name!r} {self._active}/{self._max_size} in use>"
