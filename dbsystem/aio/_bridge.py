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
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from dbsystem.core._calls import BoundTransactions
from dbsystem.errors import NotSupportedError
from dbsystem.kernel.protocols import BackendInfo, ConnectionOptions
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


class SyncBridge(BoundTransactions[Any], QueryMixin, SchemaMixin):
    _bound = _BOUND  # the bridge's blocks, apart from a sync manager's

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

    @property
    def user_session(self) -> bool:
        """True when the bridge runs code for a user session (``AsyncUserSession.run_sync``)."""
        return self._context is not None

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The backend behind a pool; for a user session only its ``BackendInfo``."""
        backend = self._async.backend(db_type, name)
        return BackendInfo.of(backend) if self._context is not None else backend

    def query(self, db_type: DatabaseType | None = None, *, name: str | None = None) -> Any:
        """The SQL builders, run on the async pools; Redis and MongoDB builders are the
        async manager's own (``await adb.query(...)...execute()``)."""
        resolved = self._resolve_type(db_type)
        kind = self._async.backend(resolved, name).kind
        if kind != "sql":
            raise NotSupportedError(
                f"run {resolved.value} builders with the async manager: "
                f"await adb.query(DatabaseType.{resolved.name}) ... .execute()"
            )
        return QueryMixin.query(self, resolved, name=name)

    def _resolve_type(self, db_type: DatabaseType | None) -> DatabaseType:
        return db_type or self._async._default_type()

    @contextmanager
    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> Iterator[Any]:
        """A connection of the async pools, used from this thread (see ``connection()``)."""
        acquire = self._manager.connection(db_type, **options)
        lease = self._wait(acquire._get())
        try:
            yield _SyncConnection(self, lease)
        finally:
            if not lease.released:
                self._wait(lease.release())

    def _default_for_bound(self) -> DatabaseType | None:
        return self._async.mode

    def _bound_owner(self) -> Any:
        return self

    def _bound_context(self) -> Any:
        return self._context


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
