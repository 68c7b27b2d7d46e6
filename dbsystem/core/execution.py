"""The one path of a statement: where a ``Statement`` is built and the hooks are run.

Every statement of every kind reaches the hooks from here or from the engine's connection
classes (``dbsystem.core.connection``, ``dbsystem.aio.connection``), which build theirs
with ``statement()`` below. Backends never see hooks: a Redis or MongoDB handle (lent by a
``DriverPool``, below) hands each operation to its pool as a ``Description`` of what it
touches and a call that does it; the pool builds the ``Statement`` and runs the hooks,
only when a hook is installed (the hot path tests one tuple and calls).

``DriverPool`` is what the manager holds for a backend whose driver pools for itself
(Redis, MongoDB): the same ``acquire``/``stats``/``close``/``hooks`` surface as the SQL
``ConnectionPool``, lending light handles that the backend makes (``backend.handle``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar, cast

from dbsystem.kernel.hooks import Description, HookChain, Statement
from dbsystem.kernel.stats import PoolLimits, PoolStats

__all__ = ["DriverPool", "refuse_for", "refuse_sql", "statement"]

T = TypeVar("T")
S = TypeVar("S", bound=Iterator[Any] | AsyncGenerator[Any, None])  # a stream of rows or keys


def statement(
    pool: Any,
    context: Any,
    operation: str,
    text: str,
    params: Any = None,
    *,
    dialect: str,
    backend: str | None = None,
    action: str | None = None,
    resources: tuple[str, ...] | None = None,
    accesses: tuple[tuple[str, str], ...] | None = None,
) -> Statement:
    """The ``Statement`` the hooks see: the one place one is built, for every kind.

    ``pool`` gives the backend's label and the pool's name; ``context`` is the user
    session's (None: the application's). ``action``/``resources`` None: raw SQL, classified
    lazily when a hook asks. ``backend`` overrides the pool's backend label.
    """
    label = backend or pool.backend_name  # (positional: this runs once per hooked statement)
    return Statement(
        label, dialect, pool.name, operation, text, params, action, resources, context, accesses
    )


def refuse_sql(
    conn: Any,
    operation: str,
    text: str,
    action: str | None,
    resources: tuple[str, ...] | None,
    error: BaseException,
) -> NoReturn:
    """Raise ``error`` for a SQL statement refused before it ran (a row policy's refusal),
    through the hooks of ``conn``'s pool (a sync or an async connection), so that the audit
    log records it as denied and the metrics count it, as for a missing grant."""
    hooks: HookChain = conn._pool.hooks
    if hooks.hooks:
        hooks.refuse(conn._statement(operation, text, None, action, resources), error)
    raise error


def refuse_for(
    conn: Any, context: Any, operation: str, text: str, action: str, error: BaseException
) -> NoReturn:
    """Raise ``error`` for ``operation`` refused to ``context`` (a session's, or None: the
    application's) on ``conn``, a lease that carries someone else (a block of another
    user): reported through the hooks as that caller's refused statement, so the audit log
    records who tried."""
    pool = conn._pool
    hooks: HookChain = pool.hooks
    if hooks.hooks:
        backend = conn.backend
        refused = statement(
            pool,
            context,
            operation,
            text,
            dialect=backend.dialect,
            backend=pool.backend_name or backend.name,
            action=action,
            resources=(),
        )
        hooks.refuse(refused, error)
    raise error


class DriverPool(PoolLimits):
    """The manager's pool object for a backend whose driver pools for itself."""

    def __init__(self, backend: Any, *, name: str, hooks: HookChain) -> None:
        self.connector = backend
        self.name = name
        self.hooks = hooks
        self.backend_name: str = backend.label
        self._closed = False
        self._min_size: int = backend.config.min_size
        self._max_size: int = backend.config.max_size
        backend.open(self._min_size)  # a wrong URL fails at create_pool

    def acquire(self, timeout: float | None = None, *, label: str | None = None) -> Any:
        """A handle running operations through the driver's pool.

        The driver lends its connections per command, so there is no holder to label.
        """
        if self._closed:
            raise self._closed_error()
        return self.connector.handle(self)

    def acquire_as(
        self, context: Any, timeout: float | None = None, *, label: str | None = None
    ) -> Any:
        """A handle whose operations carry ``context`` (a user session's). The driver
        holds a connection only for each command, so there is no lease to cap."""
        handle = self.acquire(timeout, label=label)
        handle._context = context
        return handle

    def try_acquire(self, *, label: str | None = None) -> Any:
        """A handle, or None at once when every driver connection is in use."""
        stats = self.stats()
        if stats.active >= stats.max_size:
            return None
        return self.acquire(label=label)

    def stats(self) -> PoolStats:
        """A snapshot of the driver pool's counters, as the SQL pools report them."""
        counters: dict[str, Any] = self.connector.pool_counters()
        acquired = counters["acquired"]
        total = counters["total"]
        return PoolStats(
            name=self.name,
            min_size=self._min_size,
            max_size=self._max_size,
            total=total,
            active=counters["active"],
            idle=max(0, total - counters["active"]),
            waiting=counters.get("waiting", 0),
            acquired=acquired,
            timeouts=counters["timeouts"],
            created=counters["created"],
            closed=counters.get("closed", max(0, counters["created"] - total)),
            discarded=0,
            connect_errors=0,
            leaks=0,
            wait_mean=counters["wait_total"] / acquired if acquired else 0.0,
            wait_max=counters["wait_max"],
        )

    def close(self, timeout: float = 0.0) -> None:
        """Close the driver's connections; later use raises ``PoolClosed``."""
        self._closed = True
        self.connector.dispose()

    # -- the one path for driver operations ---------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _statement(self, context: Any, operation: str, described: Description) -> Statement:
        return statement(
            self,
            context,
            operation,
            described.text,
            dialect=self.connector.dialect,
            action=described.action,
            resources=described.resources,
            accesses=described.accesses,
        )

    def run(
        self,
        context: Any,
        operation: str,
        describe: Callable[[], Description],
        call: Callable[[], T],
    ) -> T:
        """``call()`` as ``operation`` through the hooks (``describe`` only when any)."""
        self._check_open()
        hooks = self.hooks
        if not hooks.hooks:
            return call()
        return hooks.run(self._statement(context, operation, describe()), call)

    async def arun(
        self,
        context: Any,
        operation: str,
        describe: Callable[[], Description],
        call: Callable[[], Awaitable[T]],
    ) -> T:
        """``run`` for a coroutine (the asyncio handles)."""
        self._check_open()
        hooks = self.hooks
        if not hooks.hooks:
            return await call()
        return await hooks.arun(self._statement(context, operation, describe()), call)

    def run_stream(
        self,
        context: Any,
        operation: str,
        describe: Callable[[], Description],
        items: S,
    ) -> S:
        """``items`` as ``operation`` through the hooks, timed until exhausted: an iterator,
        or an async one (the asyncio handles' SCAN), observed as what it is."""
        self._check_open()
        hooks = self.hooks
        if not hooks.hooks:
            return items
        statement = self._statement(context, operation, describe())
        if isinstance(items, AsyncGenerator):
            observed: Any = hooks.arun_stream(statement, items)
        else:
            observed = hooks.run_stream(statement, cast(Iterator[Any], items))
        return cast(S, observed)

    def refuse(
        self,
        context: Any,
        operation: str,
        describe: Callable[[], Description],
        error: BaseException,
    ) -> NoReturn:
        """Raise ``error`` for an operation refused before it ran (a row policy), through
        the hooks, so that the audit log records it as denied."""
        if self.hooks.hooks:
            self.hooks.refuse(self._statement(context, operation, describe()), error)
        raise error
