"""``AsyncConnection``: what ``adb.connection()`` lends out, the async twin of ``Connection``.

Every statement goes through the pool's ``HookChain`` as the same ``Statement`` the
synchronous path builds, so access control, audit and metrics behave the same in async
code. A task cancelled in the middle of a statement marks the connection broken: the pool
closes it instead of lending it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from dbsystem.aio.pool import AsyncPooledConnection
from dbsystem.core._flows import TransactionFlow
from dbsystem.core.connection import _check_params, _check_row_keys, _rollback_failed
from dbsystem.core.execution import statement
from dbsystem.errors import InterfaceError, QueryBuildError
from dbsystem.kernel.hooks import Statement
from dbsystem.kernel.types import ExecuteResult, Params, Row

__all__ = ["AsyncConnection", "AsyncTransaction"]

T = TypeVar("T")


class AsyncConnection(AsyncPooledConnection[Any]):
    """A borrowed async SQL connection: ``async with adb.connection(t) as conn``.

    The same API as ``Connection``, awaited: ``await conn.fetch_all("SELECT ... WHERE id =
    :id", {"id": 1})``; rows are dicts; ``async with conn.transaction():`` (nested:
    savepoints).
    """

    __slots__ = ("_context",)
    _is_async = True

    def __init__(self, pool: Any, entry: Any) -> None:
        super().__init__(pool, entry)
        self._context: Any = None

    @property
    def backend(self) -> Any:
        """The backend of the pool (its dialect, capabilities, URL)."""
        return self._pool.backend

    @property
    def in_transaction(self) -> bool:
        """True inside ``transaction()``."""
        return bool(self.raw.tx_depth > 0)

    async def _guarded(self, raw: Any, call: Awaitable[T]) -> T:
        try:
            return await call
        except asyncio.CancelledError:
            raw.broken = True  # the statement's state on the wire is unknown
            raise

    def _statement(
        self,
        operation: str,
        text: str,
        params: Any,
        action: str | None = None,
        resources: tuple[str, ...] | None = None,
    ) -> Statement:
        pool = self._pool
        return statement(
            pool,
            self._context,
            operation,
            text,
            params,
            dialect=pool.backend.dialect,
            action=action,
            resources=resources,
        )

    async def _hooked(
        self,
        operation: str,
        sql: str,
        params: Any,
        call: Callable[[str, Any], Awaitable[T]],
        action: str | None = None,
        resources: tuple[str, ...] | None = None,
    ) -> T:
        raw = self.raw
        hooks = self._pool.hooks
        if not hooks.hooks:
            try:  # (``_guarded`` inlined: this is the hot path)
                return await call(sql, params)
            except asyncio.CancelledError:
                raw.broken = True
                raise
        statement = self._statement(operation, sql, params, action, resources)
        return await hooks.arun(statement, lambda: self._guarded(raw, call(sql, params)))

    async def execute(self, sql: str, params: Params = None) -> ExecuteResult:
        """Run a statement; return the affected row count."""
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        return await self._hooked("execute", sql, params, self.raw.execute)

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        """Run a query; return every row as a dict."""
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        return await self._hooked("fetch_all", sql, params, self.raw.fetch_all)

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        """Run a query; return its first row as a dict, or None."""
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        return await self._hooked("fetch_one", sql, params, self.raw.fetch_one)

    async def fetch_value(self, sql: str, params: Params = None) -> Any:
        """Run a query; return the first column of its first row, or None."""
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        return await self._hooked("fetch_value", sql, params, self.raw.fetch_value)

    async def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> Any:
        """Run a statement once per parameter mapping; return the total row count."""
        if isinstance(seq_params, (str, bytes, Mapping)):
            raise InterfaceError("executemany takes a sequence of parameter mappings")
        checked = [p if type(p) is dict else _check_params(p) for p in seq_params]
        return await self._hooked("executemany", sql, checked, self.raw.executemany)

    async def insert_many(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert many rows at once (COPY on PostgreSQL), all or nothing; return the count."""
        if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Sequence):
            raise InterfaceError("insert_many takes a sequence of row mappings")
        if not rows:
            return 0
        if not isinstance(rows[0], Mapping):
            raise QueryBuildError(f"row 0 is a {type(rows[0]).__name__}, not a mapping")
        raw = self.raw
        names = list(rows[0])
        raw.quote_identifier(table)
        for name in names:
            raw.quote_identifier(name)
        _check_row_keys(rows, names)
        text = f"INSERT INTO {table} ({', '.join(names)}) VALUES <{len(rows)} rows>"

        async def insert(_sql: str, _params: Any) -> int:
            savepoint = await raw.begin()
            try:
                count: int = await raw.bulk_insert(table, names, rows)
            except BaseException:
                await raw.rollback(savepoint)
                raise
            await raw.commit(savepoint)
            return count

        return await self._hooked("insert_many", text, None, insert, "insert", (table,))

    async def _run_built(
        self,
        operation: str,
        sql: str,
        params: Mapping[str, Any] | None,
        action: str | None,
        resources: tuple[str, ...] | None,
    ) -> Any:
        """Run a builder's statement (the query builders call this)."""
        raw = self.raw
        call = raw.fetch_all if operation == "fetch_all" else raw.execute
        return await self._hooked(operation, sql, params, call, action, resources)

    def transaction(self, isolation: str | None = None, readonly: bool = False) -> AsyncTransaction:
        """``async with conn.transaction():`` commit on a clean exit, roll back on an
        exception; nested blocks are savepoints."""
        return AsyncTransaction(self, isolation, readonly)

    async def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the connection no longer works."""
        await self._pool.connector.check(self.raw)


class AsyncTransaction:
    """The async context manager ``AsyncConnection.transaction()`` returns: the async
    driver of the shared ``TransactionFlow`` (``core._flows``)."""

    __slots__ = ("_conn", "_flow")

    def __init__(self, conn: AsyncConnection, isolation: str | None, readonly: bool) -> None:
        self._conn = conn
        self._flow = TransactionFlow(conn.raw, isolation, readonly)

    async def _step(self, operation: str, text: str, call: Callable[[], Awaitable[T]]) -> T:
        conn = self._conn
        hooks = conn._pool.hooks
        raw = conn.raw
        if not hooks.hooks:
            return await conn._guarded(raw, call())
        statement = conn._statement(operation, text, None, "transaction", ())
        return await hooks.arun(statement, lambda: conn._guarded(raw, call()))

    async def __aenter__(self) -> AsyncTransaction:
        step = self._flow.begin()
        self._flow.begun(await self._step(*step))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        step = self._flow.end(failed=exc_type is not None)
        if step is None:
            return
        if exc_type is None:
            await self._step(*step)
            return
        try:
            await self._step(*step)
        except Exception:
            # The original error matters more; the pool discards a connection it cannot reset.
            _rollback_failed(exc_type)
