"""Synchronous code over an ``AsyncDatabaseManager``: what ``adb.run_sync(fn)`` hands to ``fn``.

``fn`` runs on a worker thread and gets a ``SyncBridge``, which has the part of the
``DatabaseManager`` API the ORM, migrations and builders use (``connection``,
``transaction``, ``bound_connection``, ``query``, ``backend``, ``mode``, ``create_tables``,
``drop_tables``). Each statement is sent to the event loop, which runs it on the async
pool: the ORM's logic is the one synchronous implementation, its I/O is asyncio's, and the
loop is never blocked.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from dbsystem.core._calls import bound_connection, bound_transaction
from dbsystem.kernel.types import DatabaseType
from dbsystem.orm.schema import SchemaMixin
from dbsystem.query._mixin import QueryMixin

if TYPE_CHECKING:
    from dbsystem.aio.manager import AsyncDatabaseManager

__all__ = ["SyncBridge"]

T = TypeVar("T")

# The connections of the bridge's open transaction() blocks, per (bridge, type, name).
_BOUND: ContextVar[dict[tuple[int, DatabaseType, str | None], Any]] = ContextVar(
    "dbsystem_bridge_bound",
    default={},  # noqa: B039 - never mutated, replaced
)


class SyncBridge(QueryMixin, SchemaMixin):
    """A synchronous manager over an async one (see the module docstring)."""

    def __init__(self, manager: Any, loop: asyncio.AbstractEventLoop, context: Any) -> None:
        self._manager = manager  # an AsyncDatabaseManager or AsyncUserSession
        # The async manager underneath (a session's own, or the manager itself).
        self._async: AsyncDatabaseManager = getattr(manager, "_manager", manager)
        self._loop = loop
        self._context = context

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def mode(self) -> DatabaseType | None:
        return self._async.mode

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        return self._async.backend(db_type, name)

    def _resolve_type(self, db_type: DatabaseType | None) -> DatabaseType:
        return db_type or self._async._default_type()

    @contextmanager
    def connection(
        self,
        db_type: DatabaseType | None = None,
        *,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Any]:
        acquire = self._manager.connection(db_type, name=name, timeout=timeout)
        lease = self._wait(acquire._get())
        try:
            yield _SyncConnection(self, lease)
        finally:
            if not lease.released:
                self._wait(lease.release())

    @contextmanager
    def transaction(
        self,
        db_type: DatabaseType | None = None,
        *,
        name: str | None = None,
        isolation: str | None = None,
        readonly: bool = False,
    ) -> Iterator[Any]:
        resolved = self._resolve_type(db_type)
        with bound_transaction(self, _BOUND, resolved, name, isolation, readonly) as conn:
            yield conn

    def bound_connection(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        return bound_connection(_BOUND, self, db_type or self._async.mode, name)


class _SyncConnection:
    """An ``AsyncConnection`` used from the worker thread: each coroutine a method returns
    is run on the loop and waited for; attributes pass through."""

    _is_async = False  # the builders take the synchronous path, through _run_built below

    def __init__(self, bridge: SyncBridge, lease: Any) -> None:
        self._bridge = bridge
        self._lease = lease

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._lease, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            # A coroutine, from an async method or a plain one (``_run_built``): waited for.
            result = attribute(*args, **kwargs)
            if inspect.iscoroutine(result):
                return self._bridge._wait(result)
            return result

        return call

    def transaction(self, isolation: str | None = None, readonly: bool = False) -> Any:
        return _SyncTransaction(self._bridge, self._lease.transaction(isolation, readonly))


class _SyncTransaction:
    def __init__(self, bridge: SyncBridge, transaction: Any) -> None:
        self._bridge = bridge
        self._transaction = transaction

    def __enter__(self) -> _SyncTransaction:
        self._bridge._wait(self._transaction.__aenter__())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bridge._wait(self._transaction.__aexit__(*exc_info))
