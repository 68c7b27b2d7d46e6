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

import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from dbsystem.backends.base import SQLConnectionBase
from dbsystem.core.hooks import ExecutionHook, Statement
from dbsystem.core.pool import PooledConnection
from dbsystem.core.types import ExecuteResult, Params, Row
from dbsystem.errors import InterfaceError

if TYPE_CHECKING:
    from dbsystem.backends.base import Backend

__all__ = ["Connection", "StatementLogger", "Transaction"]

T = TypeVar("T")

sql_logger = logging.getLogger("dbsystem.sql")


def _check_params(params: Any) -> Mapping[str, Any]:
    if isinstance(params, Mapping):
        return params
    raise InterfaceError(
        f"parameters must be a mapping of names to values (for :name placeholders), "
        f"not {type(params).__name__}"
    )


class Connection(PooledConnection[SQLConnectionBase]):
    """A borrowed SQL connection. Return it by leaving the ``with`` block (or ``release()``).

    Parameters are bound by name: ``conn.fetch_all("SELECT * FROM t WHERE id = :id",
    {"id": 1})`` on every SQL backend. Rows are dicts.
    """

    __slots__ = ()

    @property
    def backend(self) -> Backend:
        """The backend this connection belongs to (its dialect, capabilities, URL)."""
        return self._pool.connector  # type: ignore[return-value]

    @property
    def in_transaction(self) -> bool:
        """True inside ``transaction()``."""
        return self.raw.tx_depth > 0

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

    def transaction(self, isolation: str | None = None, readonly: bool = False) -> Transaction:
        """A context manager: commit on clean exit, roll back on exception; nests as savepoints.

        ``isolation`` (outermost level only): ``"read committed"``, ``"repeatable read"``,
        ``"serializable"``... ``readonly=True`` makes the database refuse writes.
        """
        return Transaction(self, isolation, readonly)

    def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the connection no longer works."""
        self.raw.ping()

    def _hooked(self, operation: str, sql: str, params: Any, call: Callable[[str, Any], T]) -> T:
        pool = self._pool
        backend: Backend = pool.connector  # type: ignore[assignment]
        statement = Statement(
            backend=pool.backend_name or backend.name,
            dialect=backend.dialect,
            pool=pool.name,
            operation=operation,
            text=sql,
            params=params,
        )
        return pool.hooks.run(statement, lambda: call(sql, params))

    def _transaction_step(self, operation: str, text: str, call: Callable[[], T]) -> T:
        pool = self._pool
        if not pool.hooks.hooks:
            return call()
        backend: Backend = pool.connector  # type: ignore[assignment]
        statement = Statement(
            backend=pool.backend_name or backend.name,
            dialect=backend.dialect,
            pool=pool.name,
            operation=operation,
            text=text,
            action="transaction",
            resources=(),
        )
        return pool.hooks.run(statement, call)


class Transaction:
    """The context manager ``Connection.transaction()`` returns."""

    __slots__ = ("_conn", "_isolation", "_readonly", "_savepoint", "_active")

    def __init__(self, conn: Connection, isolation: str | None, readonly: bool) -> None:
        self._conn = conn
        self._isolation = isolation
        self._readonly = readonly
        self._savepoint: str | None = None
        self._active = False

    def __enter__(self) -> Transaction:
        if self._active:
            raise InterfaceError("this transaction block is already open")
        raw = self._conn.raw
        text = "BEGIN" if raw.tx_depth == 0 else f"SAVEPOINT dbsystem_sp_{raw.tx_depth}"
        self._savepoint = self._conn._transaction_step(
            "begin", text, lambda: raw.begin(self._isolation, self._readonly)
        )
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False
        raw = self._conn.raw
        savepoint = self._savepoint
        if exc_type is None:
            text = "COMMIT" if savepoint is None else f"RELEASE SAVEPOINT {savepoint}"
            self._conn._transaction_step("commit", text, lambda: raw.commit(savepoint))
            return
        text = "ROLLBACK" if savepoint is None else f"ROLLBACK TO SAVEPOINT {savepoint}"
        try:
            self._conn._transaction_step("rollback", text, lambda: raw.rollback(savepoint))
        except Exception:
            # The original error matters more; the pool discards a connection it cannot reset.
            logging.getLogger("dbsystem").warning(
                "rollback after %s failed", exc_type.__name__, exc_info=True
            )


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
