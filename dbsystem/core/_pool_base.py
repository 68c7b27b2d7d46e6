"""What the thread pool (``core/pool.py``) and the asyncio pool (``aio/pool.py``) share.

Everything here is I/O-free: the settings check, the record of each connection
(``PoolEntry``), the counters behind ``stats()``, ``holders()``, leak detection, which idle
connections maintenance closes, the backoff of refills while the server is down, the
errors both pools raise, and the lease both lend (``Lease``). Where the logic needs I/O
(open, ping, close a connection) it is written once as a flow (``dbsystem.core._flow``)
that yields ``("_connect",)``, ``("_check", conn)`` or ``("_close_conn", conn)``: the
thread pool runs it with ``drive`` and blocking calls, the asyncio pool with ``adrive``.
Each pool keeps only how its callers wait (locks and threads, or futures) and its hot path.

Shared state is read and changed under ``self._lock``: a ``threading.Lock`` in the thread
pool, a null context in the asyncio pool, whose callers all run on one event loop. Methods
named ``*_locked`` expect the caller to hold it. (psycopg_pool splits its pools the same
way: ``base.py`` under ``pool.py`` and ``pool_async.py``.)
"""

from __future__ import annotations

import os
import random
import sys
import traceback
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from time import monotonic
from types import CodeType, FrameType
from typing import Any, Generic, TypeVar

from dbsystem._log import get_logger, multiline
from dbsystem.backends.base import driver_refused
from dbsystem.core._flow import Flow
from dbsystem.errors import (
    ConfigurationError,
    InterfaceError,
    LeaseLimitReached,
    PoolExhausted,
    PoolTimeout,
)
from dbsystem.kernel.hooks import HookChain
from dbsystem.kernel.stats import WAIT_BUCKETS, PoolHolder, PoolLimits, PoolStats

__all__ = [
    "Lease",
    "PoolBase",
    "PoolEntry",
    "caller",
    "check_pool_settings",
    "lend",
]

logger = get_logger("dbsystem.pool")

C = TypeVar("C")

_BACKOFF_FIRST, _BACKOFF_CAP = 0.1, 10.0  # seconds between refill attempts while down
SUSPECT = float("-inf")  # an idle entry's last_used when it must be pinged before use

# Code inside the dbsystem package, skipped when naming the code that holds a connection.
# Keyed by file name: a str caches its hash, a code object computes its own at every lookup.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_internal_file: dict[str, bool] = {}
_new_object = object.__new__


def caller() -> tuple[CodeType, int] | None:
    """The code and line of the first frame outside dbsystem that led to this acquire.

    Kept as (code, line), not as the frame: a frame would keep its locals alive, among them
    perhaps the lease itself, which then could never be reclaimed when dropped unreturned.
    A coroutine's frames chain through the awaits, so this names an async caller as well.
    """
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        internal = _internal_file.get(filename)
        if internal is None:
            internal = _internal_file[filename] = filename.startswith(_PACKAGE_DIR)
        if not internal:
            return code, frame.f_lineno
        frame = frame.f_back
    return None


def _location(where: tuple[CodeType, int] | None) -> str:
    if where is None:
        return "?"
    code, line = where
    return f"{code.co_filename}:{line} in {code.co_name}"


def _stack_text(acquired_at: Any) -> str:
    """The stack a lease was acquired from: a frame (thread pool) or a ``StackSummary``
    (asyncio pool: a suspended coroutine's frame no longer links to its awaiters)."""
    if acquired_at is None:
        return "?"
    if isinstance(acquired_at, FrameType):
        return "".join(traceback.format_stack(acquired_at))
    return "".join(traceback.format_list(acquired_at))


def _maintenance_interval(*limits: float | None) -> float:
    """How often maintenance runs: a quarter of the shortest limit it enforces, 10 ms to 1 s."""
    candidates = [limit / 4 for limit in limits if limit]
    return max(0.01, min([1.0, *candidates]))


def check_pool_settings(name: str, min_size: int, max_size: int, acquire_timeout: float) -> None:
    """Refuse impossible pool sizes and timeouts with ``ConfigurationError`` (as
    ``PoolConfig`` does), whichever pool is being made."""
    if max_size < 1:
        raise ConfigurationError(f"pool {name!r}: max_size ({max_size}) must be at least 1")
    if min_size < 0:
        raise ConfigurationError(f"pool {name!r}: min_size ({min_size}) must not be negative")
    if min_size > max_size:
        raise ConfigurationError(
            f"pool {name!r}: min_size ({min_size}) must not exceed max_size ({max_size})"
        )
    if acquire_timeout <= 0:
        raise ConfigurationError(
            f"pool {name!r}: acquire_timeout ({acquire_timeout}) must be positive"
        )


class PoolEntry:
    """A pool's record of one connection."""

    __slots__ = (
        "borrowed_at",
        "conn",
        "created_at",
        "expires_at",
        "generation",
        "label",
        "last_used",
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
        self.lease: weakref.ref[Any] | None = None
        self.leak_reported = False
        self.label: str | None = None
        self.where: tuple[CodeType, int] | None = None


class Lease(Generic[C]):
    """A lease on one pooled connection, valid until it is returned (both pools' base).

    After the return every use raises ``InterfaceError``: the connection may already
    belong to someone else. A lease dropped without being returned is reclaimed by the
    pool's maintenance (``__del__`` hands its entry over; it never takes the pool's lock,
    since the garbage collector may run while this very thread holds it).

    Made by ``lend`` (no constructor: one call less on every acquire).
    """

    __slots__ = ("__weakref__", "_context", "_entry", "_frame", "_pool", "_raw")

    _pool: Any  # the ConnectionPool or AsyncConnectionPool it came from
    _entry: PoolEntry | None
    _raw: C | None
    _frame: Any  # where it was acquired, kept while leak_threshold is set
    _context: Any  # the user session's context, if any

    @property
    def raw(self) -> C:
        """The underlying connection. Do not keep it past the return.

        Refused on a connection lent to a user session: what runs on it skips the checks.
        """
        if self._context is not None:
            raise driver_refused(self._context, "its driver connection", self._pool.backend_name)
        return self._lease_raw()

    def _lease_raw(self) -> C:
        """The underlying connection, for the engine's own use (a user's lease too)."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        return raw

    @property
    def released(self) -> bool:
        """True once the lease was returned to the pool."""
        return self._entry is None

    def _take_entry(self) -> PoolEntry:
        """End the lease (the first step of a return); a second return raises."""
        entry = self._entry
        if entry is None:
            raise InterfaceError(
                f"connection was already returned to pool {self._pool.name!r}",
                backend=self._pool.backend_name,
            )
        self._entry = self._raw = self._frame = None
        entry.lease = entry.where = entry.label = None
        return entry

    def __del__(self) -> None:
        entry = self._entry
        if entry is not None:
            self._entry = None
            self._raw = None
            self._pool._forgotten.append(entry)
            if self._context is not None:  # its user's slot, given back by maintenance
                self._pool._forgotten_users.append(self._context.user)

    def _released_error(self) -> InterfaceError:
        return InterfaceError(
            f"connection used after it was returned to pool {self._pool.name!r}",
            backend=self._pool.backend_name,
        )

    def __repr__(self) -> str:
        state = "released" if self._entry is None else "active"
        return f"<{type(self).__name__} pool={self._pool.name!r} {state}>"


def lend(pool: PoolBase[C], entry: PoolEntry, now: float, label: str | None, where: Any) -> Any:
    """A new lease on ``entry`` (of ``pool._lease_class``), recording who holds it:
    ``label``, and ``where``, the ``caller()`` of the acquiring method. With leak detection
    on, the acquiring method also stores in ``lease._frame`` the stack to report.

    Both pools lend through here, on the hot path: the lease is made without a constructor
    call, its slots stored directly."""
    entry.borrowed_at = now
    entry.label = label
    entry.where = where
    lease = _new_object(pool._lease_class)
    lease._pool = pool
    lease._entry = entry
    lease._raw = entry.conn
    lease._frame = None
    lease._context = None
    if pool._leak_threshold is not None:
        entry.leak_reported = False
        entry.lease = weakref.ref(lease)
    return lease


class PoolBase(PoolLimits, Generic[C]):
    """The settings, counters and decisions both pools share; see the module docstring.

    A subclass sets ``_lock`` and ``_waiters`` and provides ``_hand_over_locked`` (give an
    entry to the first waiter, else keep it idle), ``_grant_permit_locked`` (let the first
    waiter open a connection in a freed slot), and the flows' I/O: ``_connect()``,
    ``_check(conn)`` and ``_close_conn(conn)`` (which never raises).
    """

    _lock: AbstractContextManager[Any]
    _waiters: deque[Any]

    _default_lease_class: type[Lease[Any]]  # what acquire() lends unless told otherwise
    # Hand a freed per-user slot to a waiter (``acquire_as``); False if it stopped waiting.
    _wake_user: Callable[[Any], bool]

    def __init__(
        self,
        connector: Any,
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
        lease_class: type[Lease[C]] | None = None,
        backend_name: str | None = None,
        hooks: HookChain | None = None,
        describe: str | None = None,
    ) -> None:
        """Both pools take these settings (one definition, so they cannot drift).

        ``connector`` opens, checks, resets and closes connections; ``name`` names the pool
        in logs and errors, ``backend_name`` the backend in errors and statements, and
        ``describe`` (default: the name) the pool in timeout messages; ``hooks`` is the
        chain every statement passes through. ``lease_class`` is the type ``acquire``
        lends (default: the pool's own lease class). The limits are ``PoolConfig``'s;
        impossible ones raise ``ConfigurationError``. The pool is ready when the
        constructor returns (the thread pool has opened ``min_size`` connections); the
        asyncio pool opens them in ``await pool.open()``.
        """
        check_pool_settings(name, min_size, max_size, acquire_timeout)
        self.name = name
        self.backend_name = backend_name
        self.connector = connector
        self.hooks = hooks if hooks is not None else HookChain()
        self._describe = describe or name
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
        self.reconnect_failed: Callable[[Any], object] | None = None
        """Called once (from maintenance) when refilling has failed for
        ``reconnect_timeout`` seconds; set it to alert. Also logged at ERROR."""
        self._backoff = 0.0
        self._next_refill = 0.0
        self._failing_since: float | None = None
        self._reconnect_reported = False

        self._idle: deque[PoolEntry] = deque()
        self._entries: set[PoolEntry] = set()
        self._forgotten: deque[PoolEntry] = deque()  # leases collected unreturned
        # Per-user lease caps (``acquire_as``): leases each user holds, and who waits for
        # one of their own to come back (FIFO per user; never in the pool's own line).
        self._user_held: dict[str, int] = {}
        self._user_waiters: dict[str, deque[Any]] = {}
        self._forgotten_users: deque[str] = deque()  # users of leases collected unreturned
        self._generation = 0
        self._closed = False
        self._total = 0  # open, or being opened
        self._active = 0  # lent out
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
        self._lease_class: type[Lease[C]] = lease_class or self._default_lease_class
        self._start()

    # -- what the subclass provides --------------------------------------------------------

    def _start(self) -> None:
        """Set up the pool's own parts, at the end of ``__init__``."""
        raise NotImplementedError

    def _hand_over_locked(self, entry: PoolEntry) -> None:
        raise NotImplementedError

    def _grant_permit_locked(self) -> None:
        raise NotImplementedError

    def _n_waiting(self) -> int:
        return len(self._waiters)

    # -- per-user lease caps (acquire_as) --------------------------------------------------

    def _user_cap(self, context: Any) -> int | None:
        """How many leases of this pool ``context``'s user may hold: the smallest of the
        session's own ``max_connections`` and the hooks' ``lease_limit`` (its roles')."""
        cap: int | None = getattr(context, "max_connections", None)
        limit = self.hooks.lease_limit(context) if self.hooks.hooks else None
        if limit is not None and (cap is None or limit < cap):
            cap = limit
        return cap

    def _user_take_locked(self, user: str, cap: int | None) -> bool:
        """Count a lease for ``user`` if under ``cap`` and none of theirs waits first."""
        held = self._user_held.get(user, 0)
        if (cap is None or held < cap) and not self._user_waiters.get(user):
            self._user_held[user] = held + 1
            return True
        return False

    def _user_wait_locked(self, user: str, waiter: Any) -> None:
        self._user_waiters.setdefault(user, deque()).append(waiter)

    def _user_abandon_locked(self, user: str, waiter: Any) -> bool:
        """``waiter`` gave up: True if it was still in line (now removed), False if a slot
        was handed to it meanwhile (the caller gives it back with ``_user_returned``)."""
        line = self._user_waiters.get(user)
        if line is None or waiter not in line:
            return False
        line.remove(waiter)
        if not line:
            del self._user_waiters[user]
        return True

    def _user_returned(self, user: str) -> None:
        """A lease of ``user`` came back (or its acquire failed): its slot passes to the
        oldest of that user's waiters still waiting, else it is freed."""
        with self._lock:
            line = self._user_waiters.get(user)
            while line:
                waiter = line.popleft()
                if not line:
                    del self._user_waiters[user]
                if self._wake_user(waiter):
                    return
                line = self._user_waiters.get(user)
            held = self._user_held.get(user, 0) - 1
            if held > 0:
                self._user_held[user] = held
            else:
                self._user_held.pop(user, None)

    def _user_limit_error(self, user: str, cap: int | None, timeout: float) -> LeaseLimitReached:
        return LeaseLimitReached(
            f"pool {self.name!r}: user {user!r} holds {self._user_held.get(user, 0)} "
            f"connection(s), its cap (max_connections={cap}), and none of them came back "
            f"within {timeout:g} s; other users and the application are not held up",
            backend=self.backend_name,
        )

    # -- reports ---------------------------------------------------------------------------

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
                waiting=self._n_waiting(),
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
        """Count an acquire that did not take the fast path, by how long it waited."""
        with self._lock:
            self._count_wait_locked(waited)
        for hook in self.hooks._wait:  # (empty unless a hook traces waits)
            hook(self.name, waited)

    def _count_wait_locked(self, waited: float) -> None:
        self._wait_counts[bisect_left(WAIT_BUCKETS, waited)] += 1
        self._wait_total += waited
        if waited > self._wait_max:
            self._wait_max = waited

    # -- errors ----------------------------------------------------------------------------

    def _timeout_error_locked(self, timeout: float, others: int) -> PoolTimeout:
        """Counted and raised when no connection came free within ``timeout``; ``others``
        callers are still waiting."""
        self._n_timeouts += 1
        return PoolTimeout(
            f"pool {self.name!r} ({self._describe}) could not provide a connection "
            f"within {timeout:g} s: {self._active} of max_size {self._max_size} in use, "
            f"{self._total} open, {others} other callers waiting",
            backend=self.backend_name,
        )

    def _exhausted_error(self) -> PoolExhausted:
        return PoolExhausted(
            f"pool {self.name!r}: {len(self._waiters)} callers already waiting "
            f"(max_waiting={self._max_waiting}); all {self._max_size} connections in use",
            backend=self.backend_name,
        )

    # -- entries ---------------------------------------------------------------------------

    def _new_entry(self, conn: Any) -> PoolEntry:
        now = monotonic()
        if self._failing_since is not None:  # the server answers again
            self._failing_since, self._backoff, self._next_refill = None, 0.0, 0.0
            self._reconnect_reported = False
        lifetime = self._max_lifetime
        expires = now + lifetime * random.uniform(0.9, 1.0) if lifetime else float("inf")
        return PoolEntry(conn, now, expires, self._generation)

    def _needs_renewal(self, entry: PoolEntry, now: float) -> bool:
        return now - entry.last_used > self._check_after or now >= entry.expires_at

    def _take_idle_locked(self) -> PoolEntry:
        entry = self._idle.pop()
        self._active += 1
        self._n_acquired += 1
        return entry

    def _try_take_locked(self) -> PoolEntry | bool:
        """For ``try_acquire``: an idle entry (lent), True (a slot is reserved: open a
        connection in it), or False (nothing free now, or callers already waiting)."""
        if self._closed:
            raise self._closed_error()
        if self._n_waiting():
            return False
        if self._idle:
            self._wait_counts[0] += 1
            return self._take_idle_locked()
        if self._total < self._max_size:
            self._total += 1
            return True
        return False

    def _register_locked(self, entry: PoolEntry) -> bool:
        """A newly opened connection joins the pool; False if the pool was closed meanwhile
        (its slot is freed, and the caller closes the connection)."""
        if self._closed:
            self._total -= 1
            return False
        self._entries.add(entry)
        self._n_created += 1
        return True

    def _connect_failed(self) -> None:
        """A connect in a reserved slot failed: count it and free the slot for a waiter."""
        with self._lock:
            self._total -= 1
            self._n_connect_errors += 1
            self._grant_permit_locked()

    def _discard_locked(self, entry: PoolEntry, *, healthy: bool, lent: bool = True) -> None:
        """Forget ``entry`` (the caller closes its connection) and free its slot.

        A connection that came back broken suggests the server dropped its other sessions
        too (a restart, a failover): every idle one is pinged before it is lent again.
        """
        if lent:
            self._active -= 1
        self._entries.discard(entry)
        self._total -= 1
        if healthy:
            self._n_closed += 1
        else:
            self._n_discarded += 1
            for idle in self._idle:
                idle.last_used = SUSPECT
        self._grant_permit_locked()

    def _close_locked(self) -> list[PoolEntry]:
        """Mark the pool closed; return its idle entries, to be closed by the caller."""
        self._closed = True
        idle = list(self._idle)
        self._idle.clear()
        for entry in idle:
            self._entries.discard(entry)
        self._total -= len(idle)
        self._n_closed += len(idle)
        return idle

    # -- flows (see dbsystem.core._flow) ---------------------------------------------------

    def _open_flow(self, timeout: float | None = None) -> Flow[PoolEntry]:
        """Open a connection in a slot already counted in ``_total``, and lend it;
        ``timeout``: the acquire's time left, if the connect should not take longer."""
        try:
            conn = yield ("_connect", timeout)
        except PoolTimeout:
            raise  # the thread pool's connect gave up waiting; its helper keeps the slot
        except BaseException:
            self._connect_failed()
            raise
        entry = self._new_entry(conn)
        with self._lock:
            kept = self._register_locked(entry)
            if kept:
                self._active += 1
                self._n_acquired += 1
        if not kept:
            yield ("_close_conn", conn)
            raise self._closed_error(was=True)
        return entry

    def _adopt_flow(self, conn: Any) -> Flow[bool]:
        """A new connection nobody is waiting on by name: to the first waiter, or idle.
        False (and the connection closed) if the pool was closed meanwhile."""
        entry = self._new_entry(conn)
        with self._lock:
            kept = self._register_locked(entry)
            if kept:
                self._hand_over_locked(entry)
        if not kept:
            yield ("_close_conn", conn)
        return kept

    def _fill_flow(self, count: int, *, fail_fast: bool) -> Flow[bool]:
        """Open up to ``count`` connections into the idle set (or to waiters); False if a
        connect failed."""
        for _ in range(count):
            with self._lock:
                if self._closed or self._total >= self._max_size:
                    return True
                self._total += 1
            try:
                conn = yield ("_connect",)
            except BaseException as exc:
                self._connect_failed()
                if fail_fast:
                    raise
                logger.warning("pool %r: could not open a connection: %s", self.name, exc)
                return False
            if not (yield from self._adopt_flow(conn)):
                return True
        return True

    def _renew_flow(self, entry: PoolEntry, now: float) -> Flow[PoolEntry]:
        """Ping an entry idle too long, or replace an expired one; the slot stays lent."""
        if now < entry.expires_at:
            try:
                yield ("_check", entry.conn)
            except Exception as exc:
                logger.warning(
                    "pool %r: discarding a connection that failed its health check: %s",
                    self.name,
                    exc,
                )
                with self._lock:
                    self._n_discarded += 1
            except BaseException:  # interrupted (a cancelled task): give the slot back
                with self._lock:
                    self._discard_locked(entry, healthy=False)
                yield ("_close_conn", entry.conn)
                raise
            else:
                entry.last_used = now
                return entry
        else:
            with self._lock:
                self._n_closed += 1
        with self._lock:
            self._entries.discard(entry)
        yield ("_close_conn", entry.conn)
        try:
            conn = yield ("_connect",)
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

    def _maintain_flow(self) -> Flow[None]:
        """One maintenance pass; its errors are logged, never raised."""
        try:
            yield from self._maintenance_pass()
        except Exception:
            logger.exception("pool %r: maintenance pass failed", self.name)

    def _maintenance_pass(self) -> Flow[None]:
        now = monotonic()
        to_close: list[PoolEntry] = []
        leaks: list[tuple[PoolEntry, Lease[C]]] = []
        reclaimed = 0
        with self._lock:
            if self._closed:
                return
            while self._forgotten:  # leases garbage-collected without being returned
                entry = self._forgotten.popleft()
                self._entries.discard(entry)
                self._total -= 1
                self._active -= 1
                self._n_leaks += 1
                to_close.append(entry)
                reclaimed += 1
                self._grant_permit_locked()
            to_close.extend(self._expire_idle_locked(now))
            if self._leak_threshold is not None:
                leaks = self._find_leaks_locked(now, self._leak_threshold)
            missing = self._min_size - self._total
        while self._forgotten_users:
            self._user_returned(self._forgotten_users.popleft())
        for entry in to_close:
            yield ("_close_conn", entry.conn)
        if reclaimed:
            logger.warning(
                "pool %r: %d connection(s) garbage-collected without being returned; closed "
                "(use 'with' or call release())",
                self.name,
                reclaimed,
            )
        for entry, lease in leaks:
            logger.warning(
                "pool %r: connection held for %.3f s (leak_threshold=%g s), label %s; "
                "acquired at:\n%s",
                self.name,
                now - entry.borrowed_at,
                self._leak_threshold,
                entry.label,
                multiline(_stack_text(lease._frame)),
            )
        if missing > 0 and now >= self._next_refill:
            if not (yield from self._fill_flow(missing, fail_fast=False)):
                self._refill_failed(now)

    def _expire_idle_locked(self, now: float) -> list[PoolEntry]:
        """Take out the idle entries past their lifetime, and those idle longer than
        ``idle_timeout`` above ``min_size`` (oldest first); the caller closes them."""
        keep: deque[PoolEntry] = deque()
        expired: list[PoolEntry] = []
        surplus = self._total - self._min_size
        for entry in self._idle:  # oldest first
            if now >= entry.expires_at:
                expired.append(entry)
            elif (
                self._idle_timeout is not None
                and surplus > 0
                and now - entry.last_used > self._idle_timeout
            ):
                expired.append(entry)
                surplus -= 1
            else:
                keep.append(entry)
        if expired:
            self._idle = keep
            self._total -= len(expired)
            self._n_closed += len(expired)
            for entry in expired:
                self._entries.discard(entry)
        return expired

    def _find_leaks_locked(self, now: float, threshold: float) -> list[tuple[PoolEntry, Lease[C]]]:
        leaks = []
        for entry in self._entries:
            lease = entry.lease() if entry.lease is not None else None
            held_for = now - entry.borrowed_at
            if lease is not None and not entry.leak_reported and held_for > threshold:
                entry.leak_reported = True
                self._n_leaks += 1
                leaks.append((entry, lease))
        return leaks

    def _refill_failed(self, now: float) -> None:
        """Refilling ``min_size`` failed: back off, and report once it has failed for
        ``reconnect_timeout``."""
        if self._failing_since is None:
            self._failing_since = now
        self._backoff = min(max(self._backoff * 2, _BACKOFF_FIRST), _BACKOFF_CAP)
        self._next_refill = monotonic() + self._backoff * random.uniform(0.9, 1.1)
        timeout = self.reconnect_timeout
        if (
            timeout is None
            or self._reconnect_reported
            or monotonic() - self._failing_since < timeout
        ):
            return
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
