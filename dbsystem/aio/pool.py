"""``AsyncConnectionPool``: the asyncio twin of ``ConnectionPool``, for one event loop.

The same settings, guarantees and reports, from the same code (``core/_pool_base.py``):
``min_size`` opened up front and kept, ``max_size`` never exceeded, acquire waits at most
``acquire_timeout`` (``PoolTimeout``), idle connections above ``min_size`` closed after
``idle_timeout``, connections replaced after ``max_lifetime``, a connection idle longer
than ``health_check_interval`` pinged before it is lent, ``max_waiting`` callers at most,
refills backing off while the server is down, ``holders()`` naming who holds each lent
connection (its ``label`` or its code), leak warnings after ``leak_threshold``, leases
dropped without being returned reclaimed, and the same ``PoolStats``. This module keeps
only what is asyncio's own: waiting on futures, and awaiting the connector.

Cancellation safety: a task cancelled while it waits for a connection leaves nothing
behind (a connection handed to it in the same instant goes to the next waiter); a task
cancelled while it holds one returns it (the release is shielded), and a task cancelled
in the middle of a statement gets its connection closed rather than reused, since the
statement's state on the wire is unknown.
"""

from __future__ import annotations

import asyncio
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from time import monotonic
from types import TracebackType
from typing import Any, Protocol, TypeVar

from dbsystem._log import get_logger
from dbsystem.core._flow import adrive
from dbsystem.core._pool_base import Lease, PoolBase, PoolEntry, caller, lend

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


class AsyncPooledConnection(Lease[C]):
    """A lease: ``async with pool.acquire() as conn``, or ``await conn.release()``."""

    __slots__ = ()

    _pool: AsyncConnectionPool[C]

    @property
    def pool(self) -> AsyncConnectionPool[C]:
        """The pool this lease came from."""
        return self._pool

    async def release(self) -> None:
        """Return the connection; shielded, so a cancelled caller still returns it."""
        entry = self._take_entry()
        pool = self._pool
        if self._context is not None:  # a user session's lease: its per-user slot back
            pool._user_returned(self._context.user)
        if not pool._release_now(entry):
            await asyncio.shield(pool._release(entry))

    async def __aenter__(self: L) -> L:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        if self._entry is not None:
            await self.release()


class AsyncConnectionPool(PoolBase[C]):
    """A pool of async connections made by ``connector`` (an ``AsyncConnector``); see the
    module docstring, and ``PoolBase.__init__`` for the settings, the same as
    ``ConnectionPool``'s. ``await pool.open()`` (or ``async with pool``) opens ``min_size``
    connections and starts the maintenance task.

    The connector may also have ``is_broken(conn)`` (default: the connection's ``broken``
    attribute) and ``is_clean(conn)`` (see ``AsyncConnector``), and a ``backend``.
    """

    _default_lease_class = AsyncPooledConnection
    connector: AsyncConnector[C]
    _lease_class: type[AsyncPooledConnection[C]]
    _waiters: deque[asyncio.Future[PoolEntry | None]]

    def _start(self) -> None:
        connector = self.connector
        self.backend_name = self.backend_name or self.name
        self.backend: Any = getattr(connector, "backend", None)
        """The backend the connections belong to (its dialect, URL), if the connector says."""
        self._is_broken: Callable[[C], bool] = getattr(connector, "is_broken", _marked_broken)
        self._is_clean: Callable[[C], bool] = getattr(connector, "is_clean", lambda conn: False)
        # Every caller runs on the one event loop: state changes between awaits are atomic.
        self._lock = nullcontext()
        # A waiter's future gets an entry, or None: a freed slot, open a connection in it.
        self._waiters = deque()
        self._maintenance: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open ``min_size`` connections (the first failure raises) and start maintenance."""
        try:
            await adrive(self, self._fill_flow(self._min_size, fail_fast=True))
        except BaseException:
            await self.close()
            raise
        self._maintenance = asyncio.get_running_loop().create_task(
            _maintenance_task(weakref.ref(self), self._maintenance_interval),
            name=f"dbsystem-pool-{self.name}",
        )
        logger.info("pool %r opened: %s", self.name, self._describe)

    async def close(self, timeout: float = 0.0) -> None:
        """Close the pool: waiters get ``PoolClosed`` at once, idle connections close now.

        Connections still lent out close when returned; ``timeout`` waits up to that many
        seconds for them to come back (drain). Later ``acquire`` calls raise ``PoolClosed``.
        """
        if self._closed:
            return
        idle = self._close_locked()
        if self._maintenance is not None:
            self._maintenance.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self._closed_error(was=True))
        for entry in idle:
            await self._close_conn(entry.conn)
        deadline = monotonic() + timeout
        while timeout > 0 and self._active and monotonic() < deadline:
            await asyncio.sleep(0.005)
        logger.info("pool %r closed", self.name)

    async def __aenter__(self) -> AsyncConnectionPool[C]:
        if self._maintenance is None and not self._closed:
            await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- acquire and release ---------------------------------------------------------------

    async def acquire(
        self, timeout: float | None = None, *, label: str | None = None
    ) -> AsyncPooledConnection[C]:
        """Borrow a connection, waiting at most ``timeout`` (default ``acquire_timeout``).

        ``label`` names the borrower in ``holders()`` (else its code location is shown).
        Raises ``PoolTimeout``, ``PoolExhausted``, ``PoolClosed`` and the backend's
        ``ConnectionFailed`` as ``ConnectionPool.acquire`` does.
        """
        if self._closed:
            raise self._closed_error()
        idle = self._idle
        if idle:  # the fast path (``_take_idle_locked``, inlined; the lock is a no-op here)
            entry = idle.pop()
            self._active += 1
            self._n_acquired += 1
            self._wait_counts[0] += 1  # waited 0 s
            now = monotonic()
        else:
            start = monotonic()
            entry = await self._get(self._acquire_timeout if timeout is None else timeout)
            now = monotonic()
            self._count_wait(now - start)
        if now - entry.last_used > self._check_after or now >= entry.expires_at:
            entry = await adrive(self, self._renew_flow(entry, now))
        lease: AsyncPooledConnection[C] = lend(self, entry, now, label, caller())
        if self._leak_threshold is not None:  # the awaiting coroutines' stack, while there
            lease._frame = traceback.extract_stack()
        return lease

    async def acquire_as(
        self, context: Any, timeout: float | None = None, *, label: str | None = None
    ) -> AsyncPooledConnection[C]:
        """``acquire`` for a user session within the user's cap on leases of this pool,
        as ``ConnectionPool.acquire_as``: a user at the cap waits in a line of their own,
        up to ``timeout`` in all, then gets ``LeaseLimitReached``."""
        user = context.user
        cap = self._user_cap(context)
        limit = self._acquire_timeout if timeout is None else timeout
        if not self._user_take_locked(user, cap):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._user_wait_locked(user, waiter)
            start = monotonic()
            try:
                await asyncio.wait_for(asyncio.shield(waiter), max(limit, 0.0))
            except BaseException as exc:
                if self._user_abandon_locked(user, waiter):
                    waiter.cancel()
                    if isinstance(exc, TimeoutError):
                        raise self._user_limit_error(user, cap, limit) from None
                    raise
                # handed a slot in the same instant: give it on, unless we can use it
                if not isinstance(exc, TimeoutError):
                    self._user_returned(user)
                    raise
            limit -= monotonic() - start
        try:
            lease = await self.acquire(max(limit, 0.0), label=label)
        except BaseException:
            self._user_returned(user)
            raise
        lease._context = context
        return lease

    def _wake_user(self, waiter: asyncio.Future[None]) -> bool:
        if waiter.done():
            return False
        waiter.set_result(None)
        return True

    async def try_acquire(self, *, label: str | None = None) -> AsyncPooledConnection[C] | None:
        """A connection if one is idle or may be opened now, else None at once.

        Never waits behind other callers: with every connection lent out (or callers
        already waiting) it returns None, so a health check reports a saturated pool
        instead of queueing. Opening a new connection takes as long as the connect does.
        """
        taken = self._try_take_locked()
        if taken is False:
            return None
        if taken is True:
            entry = await adrive(self, self._open_flow())
            self._count_wait(0.0)
        else:
            entry = taken
        now = monotonic()
        if self._needs_renewal(entry, now):
            entry = await adrive(self, self._renew_flow(entry, now))
        lease: AsyncPooledConnection[C] = lend(self, entry, now, label, caller())
        if self._leak_threshold is not None:
            lease._frame = traceback.extract_stack()
        return lease

    async def _get(self, timeout: float) -> PoolEntry:
        """An entry, lent (counted in ``_active``): idle, newly opened, or handed over."""
        if self._idle:
            return self._take_idle_locked()
        if self._total < self._max_size:
            self._total += 1
            return await adrive(self, self._open_flow())
        if self._max_waiting and len(self._waiters) >= self._max_waiting:
            raise self._exhausted_error()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[PoolEntry | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(max(timeout, 0.0), self._expire, waiter, timeout)
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
                    self._grant_permit_locked()
                else:
                    self._active -= 1
                    self._n_acquired -= 1
                    self._hand_over_locked(served)
            raise
        timer.cancel()
        if got is None:  # a freed slot
            return await adrive(self, self._open_flow())
        return got

    def _expire(self, waiter: asyncio.Future[PoolEntry | None], timeout: float) -> None:
        if not waiter.done():
            others = sum(1 for w in self._waiters if w is not waiter and not w.done())
            waiter.set_exception(self._timeout_error_locked(timeout, others))

    def _n_waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def _hand_over_locked(self, entry: PoolEntry) -> None:
        """Give an entry to the first waiter still waiting, else keep it idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._active += 1
                self._n_acquired += 1
                waiter.set_result(entry)
                return
        self._idle.append(entry)

    def _grant_permit_locked(self) -> None:
        """A slot was freed: let the first waiter open a connection in it."""
        while self._waiters and not self._closed and self._total < self._max_size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._total += 1
                waiter.set_result(None)
                return

    def _release_now(self, entry: PoolEntry) -> bool:
        """Release without awaiting, when nothing needs resetting; False: use ``_release``."""
        conn = entry.conn
        if self._closed or self._is_broken(conn) or not self._is_clean(conn):
            return False
        now = monotonic()
        if now >= entry.expires_at:
            return False
        entry.last_used = now
        self._active -= 1
        self._hand_over_locked(entry)
        return True

    async def _release(self, entry: PoolEntry) -> None:
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
        entry.last_used = now
        if healthy and now < entry.expires_at and not self._closed:
            self._active -= 1
            self._hand_over_locked(entry)
            return
        self._discard_locked(entry, healthy=healthy)
        await self._close_conn(conn)

    # -- the flows' I/O (see PoolBase) -----------------------------------------------------

    async def _connect(self, timeout: float | None = None) -> C:
        conn: C = await self.connector.connect()
        return conn

    async def _check(self, conn: C) -> None:
        await self.connector.check(conn)

    async def _close_conn(self, conn: C) -> None:
        try:
            await self.connector.close(conn)
        except Exception:
            logger.debug("pool %r: error while closing a connection", self.name, exc_info=True)

    def __repr__(self) -> str:
        return f"<AsyncConnectionPool {self.name!r} {self._active}/{self._max_size} in use>"


def _marked_broken(conn: Any) -> bool:
    return bool(getattr(conn, "broken", False))


async def _maintenance_task(
    pool_ref: Callable[[], AsyncConnectionPool[Any] | None], interval: float
) -> None:
    # Holds the pool weakly, so a pool dropped without close() can still be collected.
    while True:
        await asyncio.sleep(interval)
        pool = pool_ref()
        if pool is None or pool.closed:
            return
        await adrive(pool, pool._maintain_flow())
        del pool
