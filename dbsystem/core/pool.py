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
  an open transaction; a connection that cannot be reset is dropped.
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
"""

from __future__ import annotations

import os
import random
import sys
import threading
import traceback
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from time import monotonic
from types import CodeType, FrameType, TracebackType
from typing import Any, Generic, Protocol, TypeVar

from dbsystem._log import get_logger, multiline
from dbsystem.errors import InterfaceError, PoolClosed, PoolExhausted, PoolTimeout
from dbsystem.kernel.hooks import HookChain
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
# Leases are made with object.__new__ and four stores: no __init__ frame on the hot path.
_new_object = object.__new__
_POOLS: weakref.WeakSet[ConnectionPool[Any]] = weakref.WeakSet()

_BACKOFF_FIRST, _BACKOFF_CAP = 0.1, 10.0  # seconds between refill attempts while down
_SUSPECT = float("-inf")  # an idle entry's last_used when it must be pinged before use

# Code inside the dbsystem package, skipped when naming the code that holds a connection.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_internal_code: dict[CodeType, bool] = {}


def _caller() -> tuple[CodeType, int] | None:
    """The code and line of the first frame outside dbsystem that led to this acquire.

    Kept as (code, line), not as the frame: a frame would keep its locals alive, among them
    perhaps the lease itself, which then could never be reclaimed when dropped unreturned.
    """
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        internal = _internal_code.get(code)
        if internal is None:
            internal = _internal_code[code] = code.co_filename.startswith(_PACKAGE_DIR)
        if not internal:
            return code, frame.f_lineno
        frame = frame.f_back
    return None


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


class _Entry:
    """The pool's record of one connection."""

    __slots__ = (
        "borrowed_at",
        "conn",
        "created_at",
        "expires_at",
        "generation",
        "last_used",
        "label",
        "lease",
        "leak_reported",
        "where",
    )

    def __init__(self, conn: Any, now: float, expires_at: float, generation: int) -> None:
        self.conn = conn
        self.created_at = now
        self.last_used = now
        self.expires_at = expires_at
        self.generation = generation
        self.borrowed_at = 0.0
        # Weak, so that a lease dropped without release() can still be collected.
        self.lease: weakref.ref[PooledConnection[Any]] | None = None
        self.leak_reported = False
        self.label: str | None = None
        self.where: tuple[CodeType, int] | None = None


class _Waiter:
    """A caller waiting in line; released by whoever serves it."""

    __slots__ = ("entry", "error", "lock", "permit")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.entry: _Entry | None = None
        self.permit = False
        self.error: BaseException | None = None


class PooledConnection(Generic[C]):
    """A lease on one pooled connection, valid until it is returned.

    Use it as a context manager (the connection goes back to the pool on exit), or call
    ``release()``. After that every use raises ``InterfaceError``: the connection may already
    belong to someone else. Subclasses add the query API (``dbsystem.Connection``).
    """

    __slots__ = ("__weakref__", "_context", "_entry", "_frame", "_pool", "_raw")

    def __init__(self, pool: ConnectionPool[C], entry: _Entry) -> None:
        self._pool = pool
        self._entry: _Entry | None = entry
        self._raw: C | None = entry.conn
        self._frame: FrameType | None = None
        self._context: Any = None

    @property
    def raw(self) -> C:
        """The underlying connection. Do not keep it past ``release()``."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        return raw

    @property
    def released(self) -> bool:
        """True once the lease was returned to the pool."""
        return self._entry is None

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
            raise InterfaceError(
                f"connection was already returned to pool {pool.name!r}",
                backend=pool.backend_name,
            )
        self._entry = None
        self._raw = None
        self._frame = None
        entry.lease = None
        entry.where = None
        entry.label = None
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
        pool._active -= 1
        if healthy and now < entry.expires_at and not pool._closed:
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
        pool._entries.discard(entry)
        pool._total -= 1
        if healthy:
            pool._n_closed += 1
        else:
            pool._n_discarded += 1
            # The server may have dropped its other sessions too (a restart, a failover):
            # every idle connection is pinged before it is lent again.
            for idle in pool._idle:
                idle.last_used = _SUSPECT
        pool._grant_permit_locked()
        lock.release()
        pool._close_conn(entry.conn)

    def __del__(self) -> None:
        # Dropped without release(): hand the entry to the maintenance thread. Never take
        # the pool lock here: the GC may run while this very thread holds it.
        entry = self._entry
        if entry is not None:
            self._entry = None
            self._raw = None
            self._pool._forgotten.append(entry)

    def _released_error(self) -> InterfaceError:
        return InterfaceError(
            f"connection used after it was returned to pool {self._pool.name!r}",
            backend=self._pool.backend_name,
        )

    def __repr__(self) -> str:
        state = "released" if self._entry is None else "active"
        return f"<{type(self).__name__} pool={self._pool.name!r} {state}>"


class ConnectionPool(Generic[C]):
    """A thread-safe pool of connections made by ``connector``; see the module docstring.

    ``lease_class`` is the type ``acquire`` returns; it must derive from ``PooledConnection``.
    """

    def __init__(
        self,
        connector: Connector[C],
        *,
        name: str = "pool",
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        idle_timeout: float | None = 600.0,
        max_lifetime: float | None = 3600.0,
        health_check_interval: float | None = 1.0,
        leak_threshold: float | None = None,
        max_waiting: int = 0,
        reconnect_timeout: float | None = 300.0,
        maintenance_interval: float | None = None,
        lease_class: type[PooledConnection[C]] = PooledConnection,
        backend_name: str | None = None,
        hooks: HookChain | None = None,
        describe: str | None = None,
    ) -> None:
        if max_size < 1 or min_size < 0 or min_size > max_size:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1 (pool {name!r})")
        if acquire_timeout <= 0:
            raise ValueError(f"acquire_timeout must be positive (pool {name!r})")
        self.name = name
        self.backend_name = backend_name
        self.connector = connector
        self.hooks = hooks if hooks is not None else HookChain()
        self._describe = describe or name
        # A connect that may take longer than an acquire's time left runs on a helper thread.
        config = getattr(connector, "config", None)
        self._connect_limit: float | None = getattr(config, "connect_timeout", None)
        self._lease_class = lease_class
        self._min_size = min_size
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._idle_timeout = idle_timeout
        self._max_lifetime = max_lifetime
        self._check_after = float("inf") if health_check_interval is None else health_check_interval
        self._leak_threshold = leak_threshold
        self._max_waiting = max_waiting
        self._maintenance_interval = maintenance_interval or _maintenance_interval(
            idle_timeout, max_lifetime, leak_threshold
        )
        # Refilling min_size while the server is down: attempts back off (with jitter) from
        # _BACKOFF_FIRST to _BACKOFF_CAP; after reconnect_timeout of failures,
        # reconnect_failed(pool) is called once. Any new connection resets both.
        self.reconnect_timeout = reconnect_timeout
        self.reconnect_failed: Callable[[ConnectionPool[Any]], object] | None = None
        """Called once (from the maintenance thread) when refilling has failed for
        ``reconnect_timeout`` seconds; set it to alert. Also logged at ERROR."""
        self._backoff = 0.0
        self._next_refill = 0.0
        self._failing_since: float | None = None
        self._reconnect_reported = False

        self._lock = threading.Lock()
        self._idle: deque[_Entry] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._entries: set[_Entry] = set()
        self._forgotten: deque[_Entry] = deque()
        self._generation = 0
        self._closed = False
        self._total = 0
        self._active = 0
        self._n_acquired = 0
        self._n_timeouts = 0
        self._n_created = 0
        self._n_closed = 0
        self._n_discarded = 0
        self._n_connect_errors = 0
        self._n_leaks = 0
        self._wait_total = 0.0
        self._wait_max = 0.0
        self._wait_counts = [0] * (len(WAIT_BUCKETS) + 1)
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None

        _POOLS.add(self)
        try:
            self._fill(min_size, fail_fast=True)
        except BaseException:
            self.close()
            raise
        self._start_maintenance()
        logger.info("pool %r opened: %s", name, self._describe)

    # -- public API ------------------------------------------------------------------------

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
            entry = self._renew(entry, now)
        entry.borrowed_at = now
        entry.label = label
        entry.where = _caller()
        lease = _new_object(self._lease_class)
        lease._pool = self
        lease._entry = entry
        lease._raw = entry.conn
        lease._frame = None
        lease._context = None
        if self._leak_threshold is not None:
            lease._frame = sys._getframe(1)
            entry.leak_reported = False
            entry.lease = weakref.ref(lease)
        return lease

    def try_acquire(self, *, label: str | None = None) -> PooledConnection[C] | None:
        """A connection if one is idle or may be opened now, else None at once.

        Never waits behind other callers: with every connection lent out (or callers
        already waiting) it returns None, so a health check reports a saturated pool
        instead of queueing. Opening a new connection takes as long as the connect does.
        """
        lock = self._lock
        lock.acquire()
        if self._closed:
            lock.release()
            raise PoolClosed(f"pool {self.name!r} is closed", backend=self.backend_name)
        if self._waiters:
            lock.release()
            return None
        if self._idle:
            entry = self._idle.pop()
            self._active += 1
            self._n_acquired += 1
            self._wait_counts[0] += 1
            lock.release()
        elif self._total < self._max_size:
            self._total += 1
            lock.release()
            entry = self._open_reserved()
            self._count_wait(0.0)
        else:
            lock.release()
            return None
        now = monotonic()
        if now - entry.last_used > self._check_after or now >= entry.expires_at:
            entry = self._renew(entry, now)
        # The tail of acquire(), which keeps its own copy inline: it is the hot path.
        entry.borrowed_at = now
        entry.label = label
        entry.where = _caller()
        lease = _new_object(self._lease_class)
        lease._pool, lease._entry, lease._raw = self, entry, entry.conn
        lease._frame = lease._context = None
        if self._leak_threshold is not None:
            lease._frame = sys._getframe(1)
            entry.leak_reported = False
            entry.lease = weakref.ref(lease)
        return lease

    def stats(self) -> PoolStats:
        """A consistent snapshot of sizes and counters."""
        with self._lock:
            acquired = self._n_acquired
            return PoolStats(
                name=self.name,
                min_size=self._min_size,
                max_size=self._max_size,
                total=self._total,
                active=self._active,
                idle=len(self._idle),
                waiting=len(self._waiters),
                acquired=acquired,
                timeouts=self._n_timeouts,
                created=self._n_created,
                closed=self._n_closed,
                discarded=self._n_discarded,
                connect_errors=self._n_connect_errors,
                leaks=self._n_leaks,
                wait_mean=self._wait_total / acquired if acquired else 0.0,
                wait_max=self._wait_max,
                wait_counts=tuple(self._wait_counts),
                wait_total=self._wait_total,
            )

    def holders(self) -> list[PoolHolder]:
        """Every lent-out connection: its label or code location, and how long it is held.

        Longest held first: when the pool is exhausted, the top of this list is the culprit.
        """
        now = monotonic()
        with self._lock:
            held = [
                (entry.borrowed_at, entry.label, entry.where)
                for entry in self._entries
                if entry.where is not None or entry.label is not None
            ]
        out = [
            PoolHolder(held_for=now - since, label=label, location=_location(where))
            for since, label, where in held
        ]
        out.sort(key=lambda holder: holder.held_for, reverse=True)
        return out

    def _count_wait(self, waited: float) -> None:
        with self._lock:
            self._wait_counts[bisect_left(WAIT_BUCKETS, waited)] += 1

    def close(self, timeout: float = 0.0) -> None:
        """Close the pool: waiters get ``PoolClosed`` at once, idle connections close now.

        Connections still lent out close when returned; ``timeout`` waits up to that many
        seconds for them to come back (drain). Later ``acquire`` calls raise ``PoolClosed``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            for entry in idle:
                self._entries.discard(entry)
            self._total -= len(idle)
            self._n_closed += len(idle)
            waiters = list(self._waiters)
            self._waiters.clear()
        for waiter in waiters:
            waiter.error = PoolClosed(f"pool {self.name!r} was closed", backend=self.backend_name)
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

    def _acquire_slow(self, timeout: float) -> _Entry:
        with self._lock:
            if self._closed:
                raise PoolClosed(f"pool {self.name!r} is closed", backend=self.backend_name)
            if self._maintenance is None:
                self._start_maintenance()
            if self._idle:
                entry = self._idle.pop()
                self._active += 1
                self._n_acquired += 1
                return entry
            if self._total < self._max_size:
                self._total += 1
                waiter = None
            else:
                if self._max_waiting and len(self._waiters) >= self._max_waiting:
                    raise PoolExhausted(
                        f"pool {self.name!r}: {len(self._waiters)} callers already waiting "
                        f"(max_waiting={self._max_waiting}); all {self._max_size} connections "
                        "in use",
                        backend=self.backend_name,
                    )
                waiter = _Waiter()
                self._waiters.append(waiter)
        if waiter is None:
            return self._open_reserved(timeout)

        start = monotonic()
        served = waiter.lock.acquire(timeout=max(timeout, 0.0))
        waited = monotonic() - start
        with self._lock:
            if not served and waiter.entry is None and not waiter.permit and not waiter.error:
                self._waiters.remove(waiter)
                self._n_timeouts += 1
                active, total, waiting = self._active, self._total, len(self._waiters)
                raise PoolTimeout(
                    f"pool {self.name!r} ({self._describe}) could not provide a connection "
                    f"within {timeout:g} s: {active} of max_size {self._max_size} in use, "
                    f"{total} open, {waiting} other callers waiting",
                    backend=self.backend_name,
                )
            self._wait_total += waited
            if waited > self._wait_max:
                self._wait_max = waited
        if waiter.error is not None:
            raise waiter.error
        if waiter.permit:
            return self._open_reserved(timeout - waited)
        assert waiter.entry is not None
        return waiter.entry

    def _open_reserved(self, timeout: float | None = None) -> _Entry:
        """Open a connection in a slot already counted in ``_total``, and lend it.

        With ``timeout`` (an acquire's remaining time) the connect runs on a helper thread
        and the caller waits no longer than that: a server that accepts TCP but never
        answers (a network blackhole) costs the caller its acquire timeout, not the
        connect timeout. The abandoned connect goes on and its connection joins the pool.
        """
        limit = self._connect_limit
        try:
            if timeout is not None and (limit is None or timeout < limit):
                conn = self._connect_within(timeout)
            else:
                conn = self.connector.connect()
        except PoolTimeout:
            raise  # the helper thread keeps the slot until its connect ends
        except BaseException:
            self._connect_failed()
            raise
        entry = self._new_entry(conn)
        with self._lock:
            if self._closed:
                self._total -= 1
                closed = True
            else:
                closed = False
                self._entries.add(entry)
                self._n_created += 1
                self._active += 1
                self._n_acquired += 1
        if closed:
            self._close_conn(conn)
            raise PoolClosed(f"pool {self.name!r} was closed", backend=self.backend_name)
        return entry

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
                self._adopt(conn)
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

    def _connect_failed(self) -> None:
        """A connect in a reserved slot failed: count it and free the slot for a waiter."""
        with self._lock:
            self._total -= 1
            self._n_connect_errors += 1
            self._grant_permit_locked()

    def _adopt(self, conn: Any) -> bool:
        """A new connection nobody is waiting on by name: to the first waiter, or idle.
        False (and the connection closed) if the pool was closed meanwhile."""
        entry = self._new_entry(conn)
        with self._lock:
            if self._closed:
                self._total -= 1
                closed = True
            else:
                closed = False
                self._entries.add(entry)
                self._n_created += 1
                if self._waiters:
                    waiter = self._waiters.popleft()
                    waiter.entry = entry
                    self._active += 1
                    self._n_acquired += 1
                    waiter.lock.release()
                else:
                    self._idle.append(entry)
        if closed:
            self._close_conn(conn)
        return not closed

    def _renew(self, entry: _Entry, now: float) -> _Entry:
        """Ping an entry idle too long, or replace an expired one; the slot stays lent."""
        if now < entry.expires_at:
            try:
                self.connector.check(entry.conn)
            except Exception as exc:
                logger.warning(
                    "pool %r: discarding a connection that failed its health check: %s",
                    self.name,
                    exc,
                )
                with self._lock:
                    self._n_discarded += 1
            else:
                entry.last_used = now
                return entry
        else:
            with self._lock:
                self._n_closed += 1
        with self._lock:
            self._entries.discard(entry)
        self._close_conn(entry.conn)
        try:
            conn = self.connector.connect()
        except BaseException:
            with self._lock:
                self._total -= 1
                self._active -= 1
                self._n_connect_errors += 1
                self._grant_permit_locked()
            raise
        fresh = self._new_entry(conn)
        with self._lock:
            self._entries.add(fresh)
            self._n_created += 1
        return fresh

    def _new_entry(self, conn: Any) -> _Entry:
        now = monotonic()
        if self._failing_since is not None:  # the server answers again
            self._failing_since, self._backoff, self._next_refill = None, 0.0, 0.0
            self._reconnect_reported = False
        lifetime = self._max_lifetime
        expires = now + lifetime * random.uniform(0.9, 1.0) if lifetime else float("inf")
        return _Entry(conn, now, expires, self._generation)

    # -- release internals -----------------------------------------------------------------

    def _grant_permit_locked(self) -> None:
        """A slot came free: let the oldest waiter open a connection in it."""
        if self._waiters and not self._closed and self._total < self._max_size:
            waiter = self._waiters.popleft()
            waiter.permit = True
            self._total += 1
            waiter.lock.release()

    def _close_conn(self, conn: Any) -> None:
        try:
            self.connector.close(conn)
        except Exception:  # the connector promises not to raise; be safe anyway
            logger.debug("pool %r: error while closing a connection", self.name, exc_info=True)

    # -- maintenance -----------------------------------------------------------------------

    def _fill(self, count: int, *, fail_fast: bool) -> bool:
        """Open up to ``count`` connections into the idle set (or to waiters); False if a
        connect failed."""
        for _ in range(count):
            with self._lock:
                if self._closed or self._total >= self._max_size:
                    return True
                self._total += 1
            try:
                conn = self.connector.connect()
            except BaseException as exc:
                self._connect_failed()
                if fail_fast:
                    raise
                logger.warning("pool %r: could not open a connection: %s", self.name, exc)
                return False
            if not self._adopt(conn):
                return True
        return True

    def _refill(self, missing: int, now: float) -> None:
        """Bring the pool back to ``min_size``, backing off while connects fail."""
        if now < self._next_refill:
            return
        if self._fill(missing, fail_fast=False):
            return
        if self._failing_since is None:
            self._failing_since = now
        self._backoff = min(max(self._backoff * 2, _BACKOFF_FIRST), _BACKOFF_CAP)
        self._next_refill = monotonic() + self._backoff * random.uniform(0.9, 1.1)
        timeout = self.reconnect_timeout
        if (
            timeout is not None
            and not self._reconnect_reported
            and monotonic() - self._failing_since >= timeout
        ):
            self._reconnect_reported = True
            logger.error(
                "pool %r: no connection could be opened for %.0f s; still retrying",
                self.name,
                monotonic() - self._failing_since,
            )
            callback = self.reconnect_failed
            if callback is not None:
                try:
                    callback(self)
                except Exception:
                    logger.exception("pool %r: reconnect_failed callback failed", self.name)

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
        """One maintenance pass; see the module docstring."""
        now = monotonic()
        to_close: list[_Entry] = []
        leaks: list[tuple[_Entry, PooledConnection[C]]] = []
        reclaimed = 0
        with self._lock:
            if self._closed:
                return
            while self._forgotten:
                entry = self._forgotten.popleft()
                self._entries.discard(entry)
                self._total -= 1
                self._active -= 1
                self._n_leaks += 1
                to_close.append(entry)
                reclaimed += 1
                self._grant_permit_locked()
            keep: deque[_Entry] = deque()
            surplus = self._total - self._min_size
            for entry in self._idle:  # oldest first
                if now >= entry.expires_at:
                    to_close.append(entry)
                elif (
                    self._idle_timeout is not None
                    and surplus > 0
                    and now - entry.last_used > self._idle_timeout
                ):
                    to_close.append(entry)
                    surplus -= 1
                else:
                    keep.append(entry)
            closing = len(self._idle) - len(keep)
            if closing:
                self._idle = keep
                self._total -= closing
                self._n_closed += closing
                for entry in to_close:
                    self._entries.discard(entry)
            if self._leak_threshold is not None:
                for entry in self._entries:
                    lease = entry.lease() if entry.lease is not None else None
                    if (
                        lease is not None
                        and not entry.leak_reported
                        and now - entry.borrowed_at > self._leak_threshold
                    ):
                        entry.leak_reported = True
                        self._n_leaks += 1
                        leaks.append((entry, lease))
            missing = self._min_size - self._total
        for entry in to_close:
            self._close_conn(entry.conn)
        if reclaimed:
            logger.warning(
                "pool %r: %d connection(s) garbage-collected without being returned; closed "
                "(use 'with' or call release())",
                self.name,
                reclaimed,
            )
        for entry, lease in leaks:
            frame = lease._frame
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
            logger.warning(
                "pool %r: connection held for %.3f s (leak_threshold=%g s), label %s; "
                "acquired at:\n%s",
                self.name,
                now - entry.borrowed_at,
                self._leak_threshold,
                entry.label,
                multiline(stack),
            )
        if missing > 0:
            self._refill(missing, now)

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


def _location(where: tuple[CodeType, int] | None) -> str:
    if where is None:
        return "?"
    code, line = where
    return f"{code.co_filename}:{line} in {code.co_name}"


def _maintenance_interval(*limits: float | None) -> float:
    candidates = [limit / 4 for limit in limits if limit]
    return max(0.01, min([1.0, *candidates]))


def _maintenance_loop(
    pool_ref: Callable[[], ConnectionPool[Any] | None], stop: threading.Event, interval: float
) -> None:
    # Holds the pool weakly, so a pool dropped without close() can still be collected.
    while not stop.wait(interval):
        pool = pool_ref()
        if pool is None or pool.closed:
            return
        try:
            pool._maintain()
        except Exception:
            logger.exception("pool %r: maintenance pass failed", pool.name)
        del pool


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
