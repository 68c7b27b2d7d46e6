"""PostgreSQL on psycopg's ``AsyncConnection``: the async twin of ``PostgreSQLConnection``.

Takes SQL with ``:name`` parameters, returns dict rows, raises dbsystem errors, and keeps
the transaction depth (savepoints when nested), like ``SQLConnectionBase``.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from dbsystem.backends._pg_hosts import refuse_session_state, role_mismatch
from dbsystem.backends._pyformat import PyformatStatements
from dbsystem.backends._session import PLAIN, changes_session
from dbsystem.backends._translate import translate
from dbsystem.backends.base import (
    SQLConnectionBase,
    commit_unknown,
    next_savepoint,
    normalize_isolation,
)
from dbsystem.backends.postgresql import _ADAPTERS, connection_lost, forget_prepared
from dbsystem.errors import ConnectionFailed, DBSystemError
from dbsystem.kernel.types import ExecuteResult, Row

__all__ = ["AsyncPostgresConnection", "AsyncPostgresConnector"]

_IDLE = int(TransactionStatus.IDLE)
_stream_ids = itertools.count(1)


class AsyncPostgresConnection(PyformatStatements):
    """One ``psycopg.AsyncConnection`` in autocommit mode (the async twin of
    ``PostgreSQLConnection``)."""

    backend_name = "postgresql"
    dialect = "postgresql"
    identifier_quote = '"'

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], show_params: bool, secrets: tuple[str, ...]
    ):
        self._conn = conn
        self._cur = conn.cursor()
        self._dict_cur = conn.cursor(row_factory=dict_row)
        self._show_params = show_params
        self._secrets = secrets
        self.tx_depth = 0
        self.broken = False
        self.session_attrs: str | None = None
        self.bounced = False  # through a transaction-pooling PgBouncer: session state refused
        self.dirty = False  # as SQLConnectionBase.dirty: the session may have changed
        # Open streams, closed when the connection goes back to the pool (as the sync side);
        # None until the first: every release asks, and an empty WeakSet's len() is a call.
        self.streams: weakref.WeakSet[AsyncGenerator[Row, None]] | None = None

    @property
    def driver_connection(self) -> psycopg.AsyncConnection[Any]:
        """psycopg's connection; statements run on it bypass the hooks (the session is
        reset on return)."""
        self.dirty = True
        return self._conn

    def _connection_lost(self, exc: BaseException) -> bool:
        return connection_lost(self._conn, exc)

    def _override(self, exc: BaseException) -> type[DBSystemError] | None:
        lost = super()._override(exc)
        if lost is None and role_mismatch(self._conn.pgconn, self.session_attrs, exc):
            # The server was demoted under this connection: the pool must drop it.
            self.broken = True
            return ConnectionFailed
        return lost

    async def _send(self, cur: Any, sql: str, params: Mapping[str, Any] | None) -> None:
        if self.bounced:
            refuse_session_state(sql, bool(self.tx_depth))
        if not self.dirty and sql not in PLAIN and changes_session(sql):
            self.dirty = True
        query, params = self._prepared(sql, params)
        await cur.execute(query, params)

    async def execute(self, sql: str, params: Mapping[str, Any] | None) -> ExecuteResult:
        cur = self._cur
        try:
            await self._send(cur, sql, params)
        except psycopg.Error as exc:
            raise self._error(exc, sql, params) from exc
        return ExecuteResult(cur.rowcount, None)

    async def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> Any:
        if not seq_params:
            return ExecuteResult(0, None)
        if not self.dirty and sql not in PLAIN and changes_session(sql):
            self.dirty = True
        for params in seq_params:
            query = self._query(sql, params)
        cur = self._cur
        try:
            await cur.executemany(query, seq_params)
        except psycopg.Error as exc:
            raise self._error(exc, sql, None) from exc
        return ExecuteResult(cur.rowcount, None)

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        cur = self._dict_cur
        try:
            await self._send(cur, sql, params)
            result = cur.pgresult
            if result is None or result.nfields == 0:
                return []
            rows: list[Row] = await cur.fetchall()
        except psycopg.Error as exc:
            raise self._error(exc, sql, params) from exc
        return rows

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        cur = self._dict_cur
        try:
            await self._send(cur, sql, params)
            result = cur.pgresult
            if result is None or result.nfields == 0:
                return None
            row: Row | None = await cur.fetchone()
        except psycopg.Error as exc:
            raise self._error(exc, sql, params) from exc
        return row

    async def fetch_value(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else next(iter(row.values()), None)

    def open_stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> AsyncGenerator[Row, None]:
        """``stream``, remembered so that returning the connection closes it."""
        rows = self._stream(sql, params, batch_size)
        if self.streams is None:
            self.streams = weakref.WeakSet()
        self.streams.add(rows)
        return rows

    async def _stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> AsyncGenerator[Row, None]:
        # A server-side (named) cursor lives in a transaction: open one if none is.
        own = self.tx_depth == 0
        if own:
            await self.begin()
        name = f"dbsystem_stream_{next(_stream_ids)}"
        if not self.dirty and sql not in PLAIN and changes_session(sql):
            self.dirty = True
        cur = self._conn.cursor(name=name, row_factory=dict_row)
        failed = False
        try:
            query, params = self._prepared(sql, params)
            await cur.execute(query, params)
            while batch := await cur.fetchmany(batch_size):
                for row in batch:
                    yield row
        except psycopg.Error as exc:
            failed = True
            raise self._error(exc, sql, params) from exc
        finally:
            if not self.broken:
                try:
                    await cur.close()
                except psycopg.Error:
                    failed = True
                if own:
                    await (self.rollback() if failed else self.commit())

    async def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> int:
        quoted = ", ".join(self.quote_identifier(c) for c in columns)
        sql = f"COPY {self.quote_identifier(table)} ({quoted}) FROM STDIN"
        try:
            async with self._cur.copy(sql) as copy:
                for row in rows:
                    await copy.write_row([row[c] for c in columns])
        except psycopg.Error as exc:
            raise self._error(exc, sql, None) from exc
        return len(rows)

    def quote_identifier(self, name: str) -> str:
        return SQLConnectionBase.quote_identifier(self, name)  # type: ignore[arg-type]

    async def _run(self, sql: str) -> None:
        if self.bounced:
            refuse_session_state(sql, bool(self.tx_depth))
        try:
            await self._cur.execute(sql)
        except psycopg.Error as exc:
            raise self._error(exc, sql, None) from exc

    async def begin(self, isolation: str | None = None, readonly: bool = False) -> str | None:
        if self.tx_depth == 0:
            sql = "BEGIN"
            level = normalize_isolation(isolation, self.backend_name)
            if level:
                sql += f" ISOLATION LEVEL {level.upper()}"
            if readonly:
                sql += " READ ONLY"
            await self._run(sql)
            self.tx_depth = 1
            return None
        name = next_savepoint(self, isolation)
        await self._run(f"SAVEPOINT {name}")
        self.tx_depth += 1
        return name

    async def commit(self, savepoint: str | None = None) -> None:
        if savepoint is None:
            known_lost = self.broken
            try:
                await self._run("COMMIT")
            except ConnectionFailed as exc:
                if known_lost:
                    raise
                raise commit_unknown(exc, self.backend_name) from exc
            finally:
                self.tx_depth = 0
        else:
            await self._run(f"RELEASE SAVEPOINT {savepoint}")
            self.tx_depth -= 1

    async def rollback(self, savepoint: str | None = None) -> None:
        if savepoint is None:
            try:
                if self._conn.pgconn.transaction_status != _IDLE:
                    await self._run("ROLLBACK")
            finally:
                self.tx_depth = 0
        else:
            try:
                await self._run(f"ROLLBACK TO SAVEPOINT {savepoint}")
                await self._run(f"RELEASE SAVEPOINT {savepoint}")
            finally:
                self.tx_depth -= 1

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.pgconn.transaction_status != _IDLE)


class AsyncPostgresConnector:
    """Opens ``AsyncPostgresConnection``s with the settings of a ``PostgreSQLBackend``."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    async def connect(self) -> AsyncPostgresConnection:
        backend = self.backend
        try:
            conn = await psycopg.AsyncConnection.connect(
                backend._conninfo, autocommit=True, context=_ADAPTERS, **backend.connect_kwargs
            )
        except psycopg.Error as exc:
            raise translate(
                exc,
                backend=backend.name,
                secrets=backend._secrets,
                override=ConnectionFailed,
                message=f"cannot connect to {backend.url}: {exc}",
            ) from exc
        made = AsyncPostgresConnection(conn, backend.config.log_parameters, backend._secrets)
        made.session_attrs = backend.session_attrs
        made.bounced = backend.pooling == "transaction"
        return made

    async def check(self, conn: AsyncPostgresConnection) -> None:
        await conn._run("SELECT 1")
        reason = role_mismatch(conn._conn.pgconn, conn.session_attrs)
        if reason is not None:
            conn.broken = True
            raise ConnectionFailed(f"{reason}: the connection is dropped", backend="postgresql")

    async def reset(self, conn: AsyncPostgresConnection) -> None:
        for stream in list(conn.streams or ()):
            try:
                await stream.aclose()
            except RuntimeError:  # still being read by another task: drop the connection
                conn.broken = True
        if conn.broken:
            raise ConnectionFailed("the connection was lost", backend="postgresql")
        if conn.tx_depth or conn.in_transaction:
            await conn.rollback()
        if conn.dirty:  # as PostgreSQLConnection._reset_session
            try:
                await conn._cur.execute("DISCARD ALL", prepare=False)
            except psycopg.Error as exc:
                raise conn._error(exc, "DISCARD ALL", None) from exc
            forget_prepared(conn._conn)
            conn.dirty = False

    def is_clean(self, conn: AsyncPostgresConnection) -> bool:
        streams = conn.streams
        return (
            (streams is None or not streams)
            and not conn.dirty
            and conn.tx_depth == 0
            and conn._conn.pgconn.transaction_status == _IDLE
        )

    async def close(self, conn: AsyncPostgresConnection) -> None:
        try:
            await conn._conn.close()
        except psycopg.Error:
            pass
