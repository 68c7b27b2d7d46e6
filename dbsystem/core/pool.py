"""A generic, thread-safe connection pool: the step every query takes first.

``ConnectionPool[C]`` pools connections of any type ``C`` made by a ``Connector``. The SQL
backends pool their connection objects through it; the benchmark pools raw psycopg
connections through it to compare it with psycopg_pool on equal terms.

How it behaves (the choices, and why):

* ``acquire`` takes the most recently returned idle connection (LIFO): it is the warmest,
  and it lets the surplus sit idle long enough for ``idle_timeout`` to close it.
* Waiters are served first come, first served: a returned connection is handed straight to
  the oldest waiter, so a thread that returns and re-acquires cannot barge ahead of it. When
  a slot frees up instead (a connection was discarded), the oldest waiter is given the right
  to open a new one, and opens it on its own thread.
* Connections are opened outside the pool lock, so a slow connect never blocks a return.
* Health: a connection idle for longer than ``health_check_interval`` is pinged before it is
  handed out; a dead one is replaced and the caller never sees the error. Returns roll back
  an open transaction and, when the lease may have changed its session, reset it (the
  connector's ``reset``: see docs/SECURITY.md, "Sessions and pool reset"); a connection
  that cannot be reset is dropped.
* A user session's lease (``acquire_as``) counts against the user's cap on leases of the
  pool; a user at the cap waits in a line of their own, so others are still served.
* ``max_lifetime`` (less up to 10% jitter, so connections do not all expire together) is
  enforced on acquire, on return and by the maintenance thread; a connection in use is never
  closed under its borrower.
* A maintenance thread per pool closes idle surplus and expired connections, refills to
  ``min_size``, reclaims leases that were garbage-collected without being returned, and logs
  a leak warning with the borrower's stack for a lease held past ``leak_threshold``.
* After ``os.fork()`` the child forgets every inherited connection without touching it (its
  socket belongs to the parent's session) and opens its own.

The fast path of ``acquire`` + release is one lock round trip each, a ``monotonic()`` call
each and no allocation besides the lease; ``benchmarks/bench_pool.py`` measures it.

What does not depend on threads (settings, counters, ``stats()``, ``holders()``, leak
detection, maintenance decisions, refill backoff, and the opening, checking and replacing
of connections, written as flows) is shared with ``AsyncConnectionPool`` in
``core/_pool_base.py``; this module keeps the locks, the waiting threads and the hot path.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from time import monotonic
from types import TracebackType
from typing import Any, Protocol, TypeVar

from dbsystem._log import get_logger
from dbsystem.core._flow import drive
from dbsystem.core._pool_base import Lease, PoolBase, PoolEntry, caller, lend
from dbsystem.errors import PoolTimeout
from dbsystem.kernel.stats import WAIT_BUCKETS, PoolHolder, PoolStats

__all__ = [
    "WAIT_BUCKETS",
    "ConnectionPool",
    "Connector",
    "PoolHolder",
    "PoolStats",
    "PooledConnection",
]

logger = get_logger("dbsystem.pool")

C = TypeVar("C")
L = TypeVar("L", bound="PooledConnection[Any]")

# Connections inherited across fork() are parked here, never closed: closing them in the
# child would end the parent's server sessions (libpq sends Terminate on close).
_INHERITED: list[object] = []
_POOLS: weakref.WeakSet[ConnectionPool[Any]] = weakref.WeakSet()
_caller = caller


class Connector(Protocol[C]):
    """What a pool needs from a backend: open, check, reset and close one connection."""

    def connect(self) -> C:
        """Open a new connection; raise a dbsystem error if it cannot."""
        ...

    def check(self, conn: C) -> None:
        """Raise if ``conn`` is no longer usable (a ping)."""
        ...

    def reset(self, conn: C) -> None:
        """Make ``conn`` ready for its next borrower (roll back); raise if it cannot."""
        ...

    def close(self, conn: C) -> None:
        """Close ``conn``; must not raise."""
        ...


class _Waiter:
    """A caller waiting in line; released by whoever serves it."""

    __slots__ = ("entry", "error", "lock", "permit")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.entry: PoolEntry | None = None
        self.permit = False
        self.error: BaseException | None = None


class PooledConnection(Lease[C]):
    """A lease on one pooled connection, valid until it is returned.

    Use it as a context manager (the connection goes back to the pool on exit), or call
    ``release()``. After that every use raises ``InterfaceError``: the connection may already
    belong to someone else. Subclasses add the query API (``dbsystem.Connection``).
    """

    __slots__ = ()

    _pool: ConnectionPool[C]

    @property
    def pool(self) -> ConnectionPool[C]:
        """The pool this lease came from."""
        return self._pool

    def release(self) -> None:
        """Return the connection to the pool. A second call raises ``InterfaceError``."""
        self.__exit__(None, None, None)

    def __enter__(self: L) -> L:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        # The release itself, inlined here because it runs once per borrow.
        entry = self._entry
        pool = self._pool
        if entry is None:
            self._take_entry()  # raises: already returned
            return
        self._entry = self._raw = self._frame = None  # Lease._take_entry, inlined
        entry.lease = entry.where = entry.label = None
        if self._context is not None:  # a user session's lease: its per-user slot back
            pool._user_returned(self._context.user)
        if entry.generation != pool._generation:
            _INHERITED.append(entry.conn)  # lent out before a fork; not ours to close
            return
        try:
            pool.connector.reset(entry.conn)
            healthy = True
        except Exception as error:
            healthy = False
            logger.warning(
                "pool %r: discarding a connection returned in a broken state: %s",
                pool.name,
                error,
            )
        now = monotonic()
        entry.last_used = now
        lock = pool._lock
        lock.acquire()
        if healthy and now < entry.expires_at and not pool._closed:
            pool._active -= 1
            if pool._waiters:
                waiter = pool._waiters.popleft()
                waiter.entry = entry
                pool._active += 1
                pool._n_acquired += 1
                lock.release()
                waiter.lock.release()
            else:
                pool._idle.append(entry)
                lock.release()
            return
        pool._discard_locked(entry, healthy=healthy)
        lock.release()
        pool._close_conn(entry.conn)


class ConnectionPool(PoolBase[C]):
    """A thread-safe pool of connections made by ``connector`` (a ``Connector``); see the
    module docstring, and ``PoolBase.__init__`` for the settings. ``lease_class`` must
    derive from ``PooledConnection``.
    """

    _default_lease_class = PooledConnection
    connector: Connector[C]
    _lease_class: type[PooledConnection[C]]
    _lock: threading.Lock
    _waiters: deque[_Waiter]

    def _start(self) -> None:
        # A connect that may take longer than an acquire's time left runs on a helper thread.
        config = getattr(self.connector, "config", None)
        self._connect_limit: float | None = getattr(config, "connect_timeout", None)
        self._lock = threading.Lock()
        self._waiters = deque()
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None

        _POOLS.add(self)
        try:
            drive(self, self._fill_flow(self._min_size, fail_fast=True))
        except BaseException:
            self.close()
            raise
        self._start_maintenance()
        logger.info("pool %r opened: %s", self.name, self._describe)

    # -- public API ------------------------------------------------------------------------

    def acquire(
        self, timeout: float | None = None, *, label: str | None = None
    ) -> PooledConnection[C]:
        """Borrow a connection, waiting up to ``timeout`` (default: the acquire timeout).

        ``label`` names the borrower in ``holders()`` (else its code location is shown).

        Raises ``PoolTimeout`` if none comes free in time, ``PoolExhausted`` if
        ``max_waiting`` callers already wait, ``PoolClosed`` after ``close()``, and the
        backend's ``ConnectionFailed`` if a needed new connection cannot be opened.
        """
        lock = self._lock
        lock.acquire()
        if self._idle:
            entry = self._idle.pop()
            self._active += 1
            self._n_acquired += 1
            self._wait_counts[0] += 1
            lock.release()
            now = monotonic()
        else:
            lock.release()
            start = monotonic()
            entry = self._acquire_slow(self._acquire_timeout if timeout is None else timeout)
            now = monotonic()
            self._count_wait(now - start)
        if now - entry.last_used > self._check_after or now >= entry.expires_at:
            entry = drive(self, self._renew_flow(entry, now))
        lease: PooledConnection[C] = lend(self, entry, now, label, _caller())
        if self._leak_threshold is not None:
            lease._frame = sys._getframe(1)
        return lease

    def acquire_as(
        self, context: Any, timeout: float | None = None, *, label: str | None = None
    ) -> PooledConnection[C]:
        """``acquire`` for a user session (``context``: its ``SessionContext``), within the
        user's cap on leases of this pool (``max_connections`` of the session or of its
        roles, the smallest). A user at the cap waits, up to ``timeout`` in all, for one
        of their own leases to come back, in a line of their own: other users and the
        application are served meanwhile. Raises ``LeaseLimitReached`` naming the user
        and the cap, and what ``acquire`` raises; the lease carries ``context``.
        """
        user = context.user
        cap = self._user_cap(context)
        limit = self._acquire_timeout if timeout is None else timeout
        with self._lock:
            taken = self._user_take_locked(user, cap)
            if not taken:
                waiter = _Waiter()
                self._user_wait_locked(user, waiter)
        if not taken:
            start = monotonic()
            if not waiter.lock.acquire(timeout=max(limit, 0.0)):
                with self._lock:
                    if self._user_abandon_locked(user, waiter):
                        raise self._user_limit_error(user, cap, limit)
                # handed a slot just as the wait timed out: keep it
            limit -= monotonic() - start
        try:
            lease = self.acquire(max(limit, 0.0), label=label)
        except BaseException:
            self._user_returned(user)
            raise
        lease._context = context
        return lease

    def try_acquire(self, *, label: str | None = None) -> PooledConnection[C] | None:
        """A connection if one is idle or may be opened now, else None at once.

        Never waits behind other callers: with every connection lent out (or callers
        already waiting) it returns None, so a health check reports a saturated pool
        instead of queueing. Opening a new connection takes as long as the connect does.
        """
        with self._lock:
            taken = self._try_take_locked()
        if taken is False:
            return None
        if taken is True:
            entry = drive(self, self._open_flow())
            self._count_wait(0.0)
        else:
            entry = taken
        now = monotonic()
        if self._needs_renewal(entry, now):
            entry = drive(self, self._renew_flow(entry, now))
        lease: PooledConnection[C] = lend(self, entry, now, label, _caller())
        if self._leak_threshold is not None:
            lease._frame = sys._getframe(1)
        return lease

    def close(self, timeout: float = 0.0) -> None:
        """Close the pool: waiters get ``PoolClosed`` at once, idle connections close now.

        Connections still lent out close when returned; ``timeout`` waits up to that many
        seconds for them to come back (drain). Later ``acquire`` calls raise ``PoolClosed``.
        """
        with self._lock:
            if self._closed:
                return
            idle = self._close_locked()
            waiters = list(self._waiters)
            self._waiters.clear()
        for waiter in waiters:
            waiter.error = self._closed_error(was=True)
            waiter.lock.release()
        self._stop.set()
        thread = self._maintenance
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        for entry in idle:
            self._close_conn(entry.conn)
        deadline = monotonic() + timeout
        while timeout > 0 and self._active and monotonic() < deadline:
            self._stop.wait(0.005)
        logger.info("pool %r closed", self.name)

    def __enter__(self) -> ConnectionPool[C]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._active}/{self._total} active"
        return f"<ConnectionPool {self.name!r} {state}, max_size={self._max_size}>"

    # -- acquire internals -----------------------------------------------------------------

    def _acquire_slow(self, timeout: float) -> PoolEntry:
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._maintenance is None:
                self._start_maintenance()
            if self._idle:
                return self._take_idle_locked()
            if self._total < self._max_size:
                self._total += 1
                waiter = None
            else:
                if self._max_waiting and len(self._waiters) >= self._max_waiting:
                    raise self._exhausted_error()
                waiter = _Waiter()
                self._waiters.append(waiter)
        if waiter is None:
            return drive(self, self._open_flow(timeout))

        start = monotonic()
        served = waiter.lock.acquire(timeout=max(timeout, 0.0))
        waited = monotonic() - start
        with self._lock:
            if not served and waiter.entry is None and not waiter.permit and not waiter.error:
                self._waiters.remove(waiter)
                raise self._timeout_error_locked(timeout, len(self._waiters))
        if waiter.error is not None:
            raise waiter.error
        if waiter.permit:
            return drive(self, self._open_flow(timeout - waited))
        assert waiter.entry is not None
        return waiter.entry

    # -- the flows' I/O (see PoolBase) -----------------------------------------------------

    def _connect(self, timeout: float | None = None) -> Any:
        """Open a connection. With ``timeout`` (an acquire's remaining time) the connect
        runs on a helper thread and the caller waits no longer than that: a server that
        accepts TCP but never answers (a network blackhole) costs the caller its acquire
        timeout, not the connect timeout. The abandoned connect goes on and its connection
        joins the pool."""
        limit = self._connect_limit
        if timeout is not None and (limit is None or timeout < limit):
            return self._connect_within(timeout)
        return self.connector.connect()

    def _check(self, conn: C) -> None:
        self.connector.check(conn)

    def _close_conn(self, conn: Any) -> None:
        try:
            self.connector.close(conn)
        except Exception:  # the connector promises not to raise; be safe anyway
            logger.debug("pool %r: error while closing a connection", self.name, exc_info=True)

    def _connect_within(self, timeout: float) -> Any:
        outcome: list[Any] = []  # [conn, error] once the connect ended, if still wanted
        ended = threading.Event()
        guard = threading.Lock()
        abandoned = False

        def connect() -> None:
            try:
                conn, error = self.connector.connect(), None
            except BaseException as exc:
                conn, error = None, exc
            with guard:
                if not abandoned:
                    outcome.extend((conn, error))
                    ended.set()
                    return
            if conn is not None:
                drive(self, self._adopt_flow(conn))
            else:
                self._connect_failed()

        threading.Thread(target=connect, name=f"dbsystem-connect-{self.name}", daemon=True).start()
        if not ended.wait(max(timeout, 0.0)):
            with guard:
                abandoned = not ended.is_set()
            if abandoned:
                with self._lock:
                    self._n_timeouts += 1
                raise PoolTimeout(
                    f"pool {self.name!r} ({self._describe}) could not open a connection within "
                    f"{timeout:g} s: the server is slow or unreachable (the connect goes on in "
                    "the background)",
                    backend=self.backend_name,
                )
        conn, error = outcome
        if error is not None:
            raise error
        return conn

    # -- release internals -----------------------------------------------------------------

    def _hand_over_locked(self, entry: PoolEntry) -> None:
        """Give an entry to the oldest waiter, else keep it idle."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.entry = entry
            self._active += 1
            self._n_acquired += 1
            waiter.lock.release()
        else:
            self._idle.append(entry)

    def _wake_user(self, waiter: _Waiter) -> bool:
        waiter.lock.release()  # (a waiter that gave up left the line under the lock)
        return True

    def _grant_permit_locked(self) -> None:
        """A slot came free: let the oldest waiter open a connection in it."""
        if self._waiters and not self._closed and self._total < self._max_size:
            waiter = self._waiters.popleft()
            waiter.permit = True
            self._total += 1
            waiter.lock.release()

    # -- maintenance -----------------------------------------------------------------------

    def _start_maintenance(self) -> None:
        thread = threading.Thread(
            target=_maintenance_loop,
            args=(weakref.ref(self), self._stop, self._maintenance_interval),
            name=f"dbsystem-pool-{self.name}",
            daemon=True,
        )
        self._maintenance = thread
        thread.start()

    def _maintain(self) -> None:
        """One maintenance pass (see ``PoolBase._maintenance_pass``)."""
        drive(self, self._maintain_flow())

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        _INHERITED.extend(entry.conn for entry in self._entries)
        self._entries = set()
        self._idle = deque()
        self._waiters = deque()
        self._forgotten = deque()
        self._generation += 1
        self._total = 0
        self._active = 0
        self._maintenance = None  # threads do not survive fork; restarted on first use


def _maintenance_loop(
    pool_ref: Callable[[], ConnectionPool[Any] | None], stop: threading.Event, interval: float
) -> None:
    # Holds the pool weakly, so a pool dropped without close() can still be collected.
    while not stop.wait(interval):
        pool = pool_ref()
        if pool is None or pool.closed:
            return
        pool._maintain()
        del pool


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
