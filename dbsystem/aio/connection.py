"""``AsyncConnection``: what ``adb.connection()`` lends out, the async twin of ``Connection``.

Every statement goes through the pool's ``HookChain`` as the same ``Statement`` the
synchronous path builds, so access control, audit and metrics behave the same in async
code. What does not wait (argument checks, the ``Statement``, ``insert_many``'s steps and
the search for its failing row, the text of transaction steps) is the synchronous
connection's own code (``core/_connection_base.py``). A task cancelled in the middle of a
statement marks the connection broken: the pool closes it instead of lending it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from dbsystem.aio.pool import AsyncPooledConnection
from dbsystem.core._connection_base import (
    SQLLeaseBase,
    TransactionBase,
    check_batch_size,
    check_params,
    insert_flow,
)
from dbsystem.core._flow import adrive
from dbsystem.errors import InterfaceError
from dbsystem.kernel.types import ExecuteResult, Params, Row

__all__ = ["AsyncConnection", "AsyncTransaction"]

T = TypeVar("T")
_END: Any = object()


class AsyncConnection(AsyncPooledConnection[Any], SQLLeaseBase):
    """A borrowed async SQL connection: ``async with adb.connection(t) as conn``.

    The same API as ``Connection``, awaited: ``await conn.fetch_all("SELECT ... WHERE id =
    :id", {"id": 1})``; rows are dicts; ``async with conn.transaction():`` (nested:
    savepoints); ``async for row in conn.stream(sql)``.
    """

    __slots__ = ()
    _is_async = True

    @property
    def backend(self) -> Any:
        """The backend this connection belongs to (its dialect, capabilities, URL)."""
        return self._pool.backend

    @property
    def driver_connection(self) -> Any:
        """The driver's own connection underneath (psycopg's ``AsyncConnection``; the
        synchronous driver's for backends run on a worker thread); statements run on it
        bypass the hooks."""
        raw = self.raw  # (refused on a user session's lease)
        return getattr(raw, "driver_connection", None)

    @property
    def in_transaction(self) -> bool:
        """True inside ``transaction()``."""
        return bool(self._lease_raw().tx_depth > 0)

    def _mark_broken(self) -> None:
        raw = self._raw  # (None only if the lease was returned meanwhile: nothing to mark)
        if raw is not None:
            raw.broken = True

    async def _guarded(self, raw: Any, call: Awaitable[T]) -> T:
        try:
            return await call
        except asyncio.CancelledError:
            raw.broken = True  # the statement's state on the wire is unknown
            raise

    async def _hooked(
        self,
        operation: str,
        sql: str,
        params: Any,
        call: Callable[[str, Any], Awaitable[T]],
        action: str | None = None,
        resources: tuple[str, ...] | None = None,
    ) -> T:
        hooks = self._pool.hooks
        if not hooks.hooks:
            try:  # (``_guarded`` inlined: this is the hot path)
                return await call(sql, params)
            except asyncio.CancelledError:
                self._mark_broken()
                raise
        raw = self._lease_raw()
        statement = self._statement(operation, sql, params, action, resources)
        return await hooks.arun(statement, lambda: self._guarded(raw, call(sql, params)))

    async def execute(self, sql: str, params: Params = None) -> ExecuteResult:
        """Run a statement; return the affected row count."""
        if params is not None and type(params) is not dict:
            params = check_params(params)
        return await self._hooked("execute", sql, params, self._lease_raw().execute)

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        """Run a query; return every row as a dict."""
        if params is not None and type(params) is not dict:
            params = check_params(params)
        return await self._hooked("fetch_all", sql, params, self._lease_raw().fetch_all)

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        """Run a query; return its first row as a dict, or None."""
        if params is not None and type(params) is not dict:
            params = check_params(params)
        return await self._hooked("fetch_one", sql, params, self._lease_raw().fetch_one)

    async def fetch_value(self, sql: str, params: Params = None) -> Any:
        """Run a query; return the first column of its first row, or None."""
        if params is not None and type(params) is not dict:
            params = check_params(params)
        return await self._hooked("fetch_value", sql, params, self._lease_raw().fetch_value)

    async def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> ExecuteResult:
        """Run a statement once per parameter mapping; return the total row count."""
        if isinstance(seq_params, (str, bytes, Mapping)):
            raise InterfaceError("executemany takes a sequence of parameter mappings")
        checked = [p if type(p) is dict else check_params(p) for p in seq_params]
        return await self._hooked("executemany", sql, checked, self._lease_raw().executemany)

    def stream(
        self, sql: str, params: Params = None, *, batch_size: int = 1000
    ) -> AsyncIterator[Row]:
        """``async for row in conn.stream(sql, params)``: a query's rows without loading
        them all, ``batch_size`` at a time, as ``Connection.stream`` (a server-side cursor
        on PostgreSQL, inside a transaction it opens if none is open).

        Finish the loop, or close the iterator (``contextlib.aclosing``), before running
        another statement on this connection; returning the connection closes it, and a
        stream read after its lease was returned raises ``InterfaceError``.
        """
        raw = self._lease_raw()
        if params is not None and type(params) is not dict:
            params = check_params(params)
        rows = self._checked(raw, raw.open_stream(sql, params, check_batch_size(batch_size)))
        hooks = self._pool.hooks
        if hooks.hooks:
            return hooks.arun_stream(self._statement("stream", sql, params), rows)
        return rows

    async def _checked(
        self, raw: Any, rows: AsyncGenerator[Row, None]
    ) -> AsyncGenerator[Row, None]:
        try:
            while self._stream_alive(raw) and (row := await anext(rows, _END)) is not _END:
                yield cast(Row, row)
        except asyncio.CancelledError:
            raw.broken = True  # a cursor left mid-fetch: the pool closes the connection
            raise
        finally:
            if self._raw is raw:  # stopped early: close the backend's stream now (once
                await rows.aclose()  # the lease is returned, the pool has closed it)

    async def insert_many(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        columns: Sequence[str] | None = None,
    ) -> int:
        """Insert many rows at once, all or nothing; return how many were inserted.

        As ``Connection.insert_many``: COPY on PostgreSQL, ``columns`` to name them (default:
        the first row's keys), and an error naming the first failing row (``row_index``).
        """
        raw = self._lease_raw()
        names = self._insert_columns(raw, table, rows, columns)
        if names is None:
            return 0

        async def insert(_sql: str, _params: Any) -> int:
            return await adrive(raw, insert_flow(raw, table, names, rows))

        text = self._insert_text(table, names, len(rows))
        return await self._hooked("insert_many", text, None, insert, "insert", (table,))

    def transaction(self, isolation: str | None = None, readonly: bool = False) -> AsyncTransaction:
        """``async with conn.transaction():`` commit on a clean exit, roll back on an
        exception; nested blocks are savepoints."""
        return AsyncTransaction(self, isolation, readonly)

    async def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the connection no longer works."""
        await self._pool.connector.check(self._lease_raw())

    async def _transaction_step(
        self, operation: str, text: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        hooks = self._pool.hooks
        raw = self._lease_raw()
        if not hooks.hooks:
            return await self._guarded(raw, call())
        statement = self._statement(operation, text, None, "transaction", ())
        return await hooks.arun(statement, lambda: self._guarded(raw, call()))


class AsyncTransaction(TransactionBase):
    """The async context manager ``AsyncConnection.transaction()`` returns."""

    __slots__ = ()

    async def __aenter__(self) -> AsyncTransaction:
        text, call = self._begin_step()
        self._savepoint = await self._conn._transaction_step("begin", text, call)
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        commit = exc_type is None
        operation, text, call = self._end_step(commit)
        # A broken connection (lost, or a statement cancelled) is not rolled back: the pool
        # drops it.
        if commit or not self._conn._lease_raw().broken:
            await self._conn._transaction_step(operation, text, call)
