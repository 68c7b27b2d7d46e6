"""``Connection``: what ``db.connection()`` lends out, and the only way statements reach a backend.

A ``Connection`` is a lease from a pool (``PooledConnection``) with the SQL API on top. Each
method checks the lease is still valid, then either calls the backend connection directly
(no hook installed: one tuple test) or passes a ``Statement`` through the pool's hook chain.
That makes it the single place where access control, audit and metrics attach.

Outside ``transaction()`` each statement commits on its own (autocommit). Inside it nothing
commits until the outermost block exits cleanly; an exception rolls that level back, and a
nested block is a savepoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from dbsystem._log import get_logger
from dbsystem.backends.base import SQLConnectionBase
from dbsystem.core._connection_base import (
    SQLLeaseBase,
    TransactionBase,
    check_batch_size,
    check_params,
    check_row_keys,
    insert_flow,
)
from dbsystem.core._flow import drive
from dbsystem.core.pool import PooledConnection
from dbsystem.errors import InterfaceError
from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.kernel.types import ExecuteResult, Params, Row

if TYPE_CHECKING:
    from dbsystem.backends.base import Backend

__all__ = ["Connection", "StatementLogger", "Transaction"]

T = TypeVar("T")

sql_logger = get_logger("dbsystem.sql")


# The names the rest of the package (and the async connection) used before the split.
_check_params = check_params
_check_row_keys = check_row_keys
_END: Any = object()


class Connection(PooledConnection[SQLConnectionBase], SQLLeaseBase):
    """A borrowed SQL connection. Return it by leaving the ``with`` block (or ``release()``).

    Parameters are bound by name: ``conn.fetch_all("SELECT * FROM t WHERE id = :id",
    {"id": 1})`` on every SQL backend. Rows are dicts.
    """

    __slots__ = ()
    _is_async = False  # (AsyncConnection: True; the builders branch on it)

    @property
    def backend(self) -> Backend:
        """The backend this connection belongs to (its dialect, capabilities, URL)."""
        return self._pool.connector  # type: ignore[return-value]

    @property
    def driver_connection(self) -> Any:
        """The driver's own connection underneath (see ``SQLConnectionBase``); statements
        run on it bypass the hooks."""
        return self.raw.driver_connection  # (refused on a user session's lease)

    @property
    def in_transaction(self) -> bool:
        """True inside ``transaction()``."""
        return self._lease_raw().tx_depth > 0

    # execute, fetch_all, fetch_one and fetch_value repeat their few lines on purpose: a
    # shared helper would add a Python call to every statement on the hot path.

    def execute(self, sql: str, params: Params = None) -> ExecuteResult:
        """Run a statement; return the affected row count (an int with ``lastrowid``)."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        if self._pool.hooks.hooks:
            return self._hooked("execute", sql, params, raw.execute)
        return raw.execute(sql, params)

    def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        """Run a query; return every row as a dict."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        if self._pool.hooks.hooks:
            return self._hooked("fetch_all", sql, params, raw.fetch_all)
        return raw.fetch_all(sql, params)

    def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        """Run a query; return its first row as a dict, or None."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        if self._pool.hooks.hooks:
            return self._hooked("fetch_one", sql, params, raw.fetch_one)
        return raw.fetch_one(sql, params)

    def fetch_value(self, sql: str, params: Params = None) -> Any:
        """Run a query; return the first column of its first row, or None."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        if self._pool.hooks.hooks:
            return self._hooked("fetch_value", sql, params, raw.fetch_value)
        return raw.fetch_value(sql, params)

    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> ExecuteResult:
        """Run a statement once per parameter mapping; return the total affected row count."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        if isinstance(seq_params, (str, bytes, Mapping)):
            raise InterfaceError("executemany takes a sequence of parameter mappings")
        seq_params = [p if type(p) is dict else _check_params(p) for p in seq_params]
        if self._pool.hooks.hooks:
            return self._hooked("executemany", sql, seq_params, raw.executemany)
        return raw.executemany(sql, seq_params)

    def stream(self, sql: str, params: Params = None, *, batch_size: int = 1000) -> Iterator[Row]:
        """Iterate over a query's rows without loading them all: ``batch_size`` at a time.

        Uses a server-side cursor (PostgreSQL named cursor inside a transaction it opens if
        none is open; pymysql's unbuffered cursor), so memory stays flat however many rows.
        Finish or close the iterator before running another statement on this connection,
        and before returning it: a stream outliving its lease raises ``InterfaceError``.
        """
        raw = self._raw
        if raw is None:
            raise self._released_error()
        if params is not None and type(params) is not dict:
            params = _check_params(params)
        rows = self._guarded(raw, raw.open_stream(sql, params, check_batch_size(batch_size)))
        pool = self._pool
        if pool.hooks.hooks:
            return pool.hooks.run_stream(self._statement("stream", sql, params), rows)
        return rows

    def _guarded(self, raw: SQLConnectionBase, rows: Iterator[Row]) -> Iterator[Row]:
        while self._stream_alive(raw) and (row := next(rows, _END)) is not _END:
            yield cast(Row, row)

    def insert_many(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        columns: Sequence[str] | None = None,
    ) -> int:
        """Insert many rows at once, all or nothing; return how many were inserted.

        The fastest path each backend has: COPY on PostgreSQL, multi-row INSERT on MySQL,
        ``executemany`` on SQLite. Every row must have the same keys (the columns). If any
        row fails, none is inserted and the error names the first failing row (its index is
        also ``error.row_index``). Inside ``transaction()`` it runs in a savepoint.
        """
        raw = self._lease_raw()
        names = self._insert_columns(raw, table, rows, columns)
        if names is None:
            return 0
        pool = self._pool
        if pool.hooks.hooks:
            text = self._insert_text(table, names, len(rows))
            statement = self._statement("insert_many", text, None, "insert", (table,))
            return pool.hooks.run(
                statement, lambda: drive(raw, insert_flow(raw, table, names, rows))
            )
        return drive(raw, insert_flow(raw, table, names, rows))

    def transaction(self, isolation: str | None = None, readonly: bool = False) -> Transaction:
        """A context manager: commit on clean exit, roll back on exception; nests as savepoints.

        ``isolation`` (outermost level only): ``"read committed"``, ``"repeatable read"``,
        ``"serializable"``... ``readonly=True`` makes the database refuse writes.
        """
        return Transaction(self, isolation, readonly)

    def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the connection no longer works."""
        self._lease_raw().ping()

    def _hooked(
        self,
        operation: str,
        sql: str,
        params: Any,
        call: Callable[[str, Any], T],
        action: str | None = None,
        resources: tuple[str, ...] | None = None,
    ) -> T:
        pool = self._pool
        if not pool.hooks.hooks:
            return call(sql, params)
        statement = self._statement(operation, sql, params, action, resources)
        return pool.hooks.run(statement, lambda: call(sql, params))

    def _transaction_step(self, operation: str, text: str, call: Callable[[], T]) -> T:
        pool = self._pool
        if not pool.hooks.hooks:
            return call()
        statement = self._statement(operation, text, None, action="transaction", resources=())
        return pool.hooks.run(statement, call)


class Transaction(TransactionBase):
    """The context manager ``Connection.transaction()`` returns."""

    __slots__ = ()

    def __enter__(self) -> Transaction:
        text, call = self._begin_step()
        self._savepoint = self._conn._transaction_step("begin", text, call)
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        operation, text, call = self._end_step(exc_type is None)
        if exc_type is None:
            self._conn._transaction_step(operation, text, call)
            return
        try:
            self._conn._transaction_step(operation, text, call)
        except Exception:
            # The original error matters more; the pool discards a connection it cannot reset.
            _rollback_failed(exc_type)


def _rollback_failed(exc_type: type[BaseException]) -> None:
    get_logger("dbsystem").warning("rollback after %s failed", exc_type.__name__, exc_info=True)


class StatementLogger(ExecutionHook):
    """Logs each statement on ``dbsystem.sql`` after it ran, with its duration and row count.

    Installed on a pool configured with ``echo=True`` (at INFO), or when ``dbsystem.sql``
    is enabled for DEBUG as the pool is created (at DEBUG): the level is read once, at pool
    creation, as SQLAlchemy does, so that logging costs nothing when it is off. Parameter
    values appear only with ``log_parameters=True``.
    """

    def __init__(self, level: int, log_parameters: bool) -> None:
        self.level = level
        self.log_parameters = log_parameters

    def after_execute(self, statement: Statement) -> None:
        params = statement.params
        if params is not None and not self.log_parameters:
            params = "[hidden]"
        duration_ms = (statement.duration or 0.0) * 1000
        if statement.error is None:
            sql_logger.log(
                self.level,
                "%s/%s %s %s | %s | %d rows, %.3f ms",
                statement.backend,
                statement.pool,
                statement.operation,
                statement.text,
                params,
                statement.rowcount,
                duration_ms,
            )
        else:
            sql_logger.log(
                self.level,
                "%s/%s %s %s | %s | failed: %s",
                statement.backend,
                statement.pool,
                statement.operation,
                statement.text,
                params,
                type(statement.error).__name__,
            )
