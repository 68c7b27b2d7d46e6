"""The statement methods shared by the backends whose drivers take ``%(name)s`` parameters.

psycopg and pymysql differ in how they connect, ping, report transaction state and name
their errors, but running a statement is the same: rewrite ``:name`` placeholders
(``_params.to_pyformat``, cached; a list after ``IN`` made portable by
``_params.expand_lists``), check every name has a value, and execute on one of the
connection's two reusable cursors: a plain one for statements, one that makes dict rows
with the driver's own row machinery for queries. Subclasses supply the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping, Sequence
from typing import Any, ClassVar

from dbsystem.backends._params import expand_lists, is_stacked, to_pyformat
from dbsystem.backends._session import PLAIN, changes_session
from dbsystem.backends._translate import translate
from dbsystem.backends.base import StandardSQLConnection
from dbsystem.errors import ConnectionFailed, DBSystemError, ProgrammingError
from dbsystem.kernel.types import ExecuteResult, Row

__all__ = ["PyformatConnection", "PyformatStatements"]


class PyformatStatements(ABC):
    """What running a statement on a ``%(name)s`` driver needs besides the I/O, for the
    blocking connections below and the asyncio PostgreSQL one (``aio/_postgres.py``):
    the text to execute, and the dbsystem error for a driver's exception."""

    backend_name: ClassVar[str]
    dialect: ClassVar[str]
    broken: bool
    _show_params: bool
    _secrets: tuple[str, ...]

    @abstractmethod
    def _connection_lost(self, exc: BaseException) -> bool:
        """True if ``exc`` means the connection is gone (the pool must drop it)."""

    def _message(self, exc: BaseException) -> str | None:
        """The error text to show, when the driver's own ``str()`` is not it."""
        return None

    def _override(self, exc: BaseException) -> type[DBSystemError] | None:
        """The error class for ``exc`` when its PEP 249 class is not the one to raise: a
        lost connection is ``ConnectionFailed`` (and marks this one broken)."""
        if self._connection_lost(exc):
            self.broken = True
            return ConnectionFailed
        return None

    def _error(self, exc: BaseException, sql: str | None, params: Any) -> DBSystemError:
        return translate(
            exc,
            backend=self.backend_name,
            statement=sql,
            params=params,
            show_params=self._show_params,
            secrets=self._secrets,
            override=self._override(exc),
            message=self._message(exc),
        )

    def _query(self, sql: str, params: Mapping[str, Any], cached: bool = True) -> str:
        # A statement with an expanded list is one of a kind per length: not cached.
        rewrite = to_pyformat if cached else to_pyformat.__wrapped__
        query, names = rewrite(sql, self.dialect)
        for name in names:
            if name not in params:
                raise ProgrammingError(
                    f"no value for parameter :{name}",
                    backend=self.backend_name,
                    statement=sql,
                )
        return query

    def _prepared(
        self, sql: str, params: Mapping[str, Any] | None
    ) -> tuple[str, Mapping[str, Any] | None]:
        """The text and parameters to execute for ``sql``: placeholders rewritten, a list
        after ``IN`` expanded (``_params.expand_lists``), every name checked to have a value.

        Without parameters, stacked statements are refused: psycopg would then use
        PostgreSQL's simple protocol, which runs them all (and returns the first result
        only); one statement per call is also how injected SQL is kept out.
        """
        if params is not None:
            if params:
                expanded, params = expand_lists(sql, params, self.dialect)
                if expanded is not sql:
                    return self._query(expanded, params, False), params
            return self._query(sql, params), params
        if ";" in sql and is_stacked(sql, self.dialect):
            raise ProgrammingError(
                "several statements in one call are refused: run them one at a time",
                backend=self.backend_name,
                statement=sql,
            )
        return sql, None


class PyformatConnection(PyformatStatements, StandardSQLConnection):
    """A driver connection taking ``%(name)s`` parameters, with one reusable cursor."""

    driver_errors: ClassVar[tuple[type[BaseException], ...]]

    def __init__(self, conn: Any, show_params: bool, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._conn = conn
        self._cur = conn.cursor()
        self._dict_cur = self._make_dict_cursor(conn)
        self._show_params = show_params
        self._secrets = secrets

    # -- subclass hooks --------------------------------------------------------------------

    @abstractmethod
    def _make_dict_cursor(self, conn: Any) -> Any:
        """A cursor of ``conn`` whose rows are dicts."""

    @abstractmethod
    def _has_rows(self, cursor: Any) -> bool:
        """True if the last statement on ``cursor`` produced a result set."""

    def _lastrowid(self, cursor: Any) -> int | None:
        return None

    # -- helpers ---------------------------------------------------------------------------

    def _run(self, sql: str) -> None:
        try:
            self._cur.execute(sql)
        except self.driver_errors as exc:
            raise self._error(exc, sql, None) from exc

    def _send(self, cur: Any, sql: str, params: Mapping[str, Any] | None) -> None:
        """Execute ``sql`` on ``cur`` (see ``_prepared``)."""
        # SQLConnectionBase.note, inlined (a set lookup for a known text)
        if not self.dirty and sql not in PLAIN and changes_session(sql):
            self.dirty = True
        query, params = self._prepared(sql, params)
        cur.execute(query, params)

    def _stream_from(
        self, cur: Any, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        """Run ``sql`` on ``cur`` (a server-side cursor) and yield its rows, ``batch_size``
        at a time; closing ``cur`` is the caller's."""
        try:
            self._send(cur, sql, params)
            while batch := cur.fetchmany(batch_size):
                yield from batch
        except self.driver_errors as exc:
            raise self._error(exc, sql, params) from exc

    # -- statements ------------------------------------------------------------------------

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> ExecuteResult:
        cur = self._cur
        try:
            self._send(cur, sql, params)
        except self.driver_errors as exc:
            raise self._error(exc, sql, params) from exc
        return ExecuteResult(cur.rowcount, self._lastrowid(cur))

    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> ExecuteResult:
        if not seq_params:
            return ExecuteResult(0, None)
        self.note(sql)
        query = to_pyformat(sql, self.dialect)[0]
        for params in seq_params:
            self._query(sql, params)
        cur = self._cur
        try:
            cur.executemany(query, seq_params)
        except self.driver_errors as exc:
            raise self._error(exc, sql, None) from exc
        return ExecuteResult(cur.rowcount, None)

    def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        cur = self._dict_cur
        try:
            self._send(cur, sql, params)
            rows = cur.fetchall() if self._has_rows(cur) else []
        except self.driver_errors as exc:
            raise self._error(exc, sql, params) from exc
        return rows if type(rows) is list else list(rows)  # pymysql answers () when empty

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        cur = self._dict_cur
        try:
            self._send(cur, sql, params)
            # Both drivers buffer the result: nothing is left to drain after fetchone().
            row: Row | None = cur.fetchone() if self._has_rows(cur) else None
        except self.driver_errors as exc:
            raise self._error(exc, sql, params) from exc
        return row

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self._conn.close()
        except self.driver_errors:
            pass
