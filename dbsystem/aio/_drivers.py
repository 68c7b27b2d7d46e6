"""The async connections under ``AsyncConnection``: psycopg's own ``AsyncConnection`` for
PostgreSQL, and any synchronous SQL backend (SQLite, MySQL, ``mock://``) on a worker
thread of its own.

Both take SQL with ``:name`` parameters, return dict rows, raise dbsystem errors, and
keep the transaction depth (savepoints when nested), like ``SQLConnectionBase``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from dbsystem.backends._params import is_stacked, to_pyformat
from dbsystem.backends._translate import translate
from dbsystem.backends.base import Backend, SQLConnectionBase, normalize_isolation
from dbsystem.core.types import ExecuteResult, Row
from dbsystem.errors import ConnectionFailed, DBSystemError, InterfaceError, ProgrammingError

__all__ = ["AsyncPostgresConnector", "ThreadedConnector"]

_IDLE = int(TransactionStatus.IDLE)


class ThreadedSQLConnection:
    """A synchronous backend connection driven from asyncio: every call runs on the
    connection's own worker thread, so a slow statement never blocks the event loop, and
    the connection is only ever touched by one thread."""

    def __init__(self, sync: SQLConnectionBase, worker: ThreadPoolExecutor) -> None:
        self.sync = sync
        self._worker = worker

    @property
    def broken(self) -> bool:
        return self.sync.broken

    @broken.setter
    def broken(self, value: bool) -> None:
        self.sync.broken = value

    @property
    def tx_depth(self) -> int:
        return self.sync.tx_depth

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def execute(self, sql: str, params: Mapping[str, Any] | None) -> ExecuteResult:
        result: ExecuteResult = await self.call(self.sync.execute, sql, params)
        return result

    async def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> Any:
        return await self.call(self.sync.executemany, sql, seq_params)

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        rows: list[Row] = await self.call(self.sync.fetch_all, sql, params)
        return rows

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        row: Row | None = await self.call(self.sync.fetch_one, sql, params)
        return row

    async def fetch_value(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        return await self.call(self.sync.fetch_value, sql, params)

    async def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> int:
        count: int = await self.call(self.sync.bulk_insert, table, columns, rows)
        return count

    async def begin(self, isolation: str | None = None, readonly: bool = False) -> str | None:
        name: str | None = await self.call(self.sync.begin, isolation, readonly)
        return name

    async def commit(self, savepoint: str | None = None) -> None:
        await self.call(self.sync.commit, savepoint)

    async def rollback(self, savepoint: str | None = None) -> None:
        await self.call(self.sync.rollback, savepoint)

    def quote_identifier(self, name: str) -> str:
        return self.sync.quote_identifier(name)


class ThreadedConnector:
    """Opens ``ThreadedSQLConnection``s of a synchronous SQL backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def connect(self) -> ThreadedSQLConnection:
        worker = ThreadPoolExecutor(1, thread_name_prefix=f"dbsystem-{self.backend.name}")
        try:
            sync = await asyncio.get_running_loop().run_in_executor(worker, self.backend.connect)
        except BaseException:
            worker.shutdown(wait=False)
            raise
        return ThreadedSQLConnection(sync, worker)

    async def check(self, conn: ThreadedSQLConnection) -> None:
        await conn.call(self.backend.check, conn.sync)

    async def reset(self, conn: ThreadedSQLConnection) -> None:
        await conn.call(self.backend.reset, conn.sync)

    async def close(self, conn: ThreadedSQLConnection) -> None:
        # Queued behind whatever the worker still runs (a cancelled caller's statement).
        conn._worker.submit(self.backend.close, conn.sync)
        conn._worker.shutdown(wait=False)


class AsyncPostgresConnection:
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

    def _error(self, exc: BaseException, sql: str | None, params: Any) -> DBSystemError:
        override: type[DBSystemError] | None = None
        if self._conn.broken or self._conn.closed:
            self.broken = True
            override = ConnectionFailed
        return translate(
            exc,
            backend=self.backend_name,
            statement=sql,
            params=params,
            show_params=self._show_params,
            secrets=self._secrets,
            override=override,
        )

    def _query(self, sql: str, params: Mapping[str, Any]) -> str:
        query, names = to_pyformat(sql, self.dialect)
        for name in names:
            if name not in params:
                raise ProgrammingError(
                    f"no value for parameter :{name}", backend=self.backend_name, statement=sql
                )
        return query

    async def _send(self, cur: Any, sql: str, params: Mapping[str, Any] | None) -> None:
        if params is None:
            if ";" in sql and is_stacked(sql, self.dialect):
                raise ProgrammingError(
                    "several statements in one call are refused: run them one at a time",
                    backend=self.backend_name,
                    statement=sql,
                )
            await cur.execute(sql)
        else:
            await cur.execute(self._query(sql, params), params)

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
        if isolation is not None:
            raise InterfaceError(
                "the isolation level can only be set on the outermost transaction",
                backend=self.backend_name,
            )
        name = f"dbsystem_sp_{self.tx_depth}"
        await self._run(f"SAVEPOINT {name}")
        self.tx_depth += 1
        return name

    async def commit(self, savepoint: str | None = None) -> None:
        if savepoint is None:
            try:
                await self._run("COMMIT")
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
        from dbsystem.backends.postgresql import _ADAPTERS

        backend = self.backend
        try:
            conn = await psycopg.AsyncConnection.connect(
                backend._conninfo, autocommit=True, context=_ADAPTERS
            )
        except psycopg.Error as exc:
            raise translate(
                exc,
                backend=backend.name,
                secrets=backend._secrets,
                override=ConnectionFailed,
                message=f"cannot connect to {backend.url}: {exc}",
            ) from exc
        return AsyncPostgresConnection(conn, backend.config.log_parameters, backend._secrets)

    async def check(self, conn: AsyncPostgresConnection) -> None:
        await conn._run("SELECT 1")

    async def reset(self, conn: AsyncPostgresConnection) -> None:
        if conn.broken:
            raise ConnectionFailed("the connection was lost", backend="postgresql")
        if conn.tx_depth or conn.in_transaction:
            await conn.rollback()

    async def close(self, conn: AsyncPostgresConnection) -> None:
        try:
            await conn._conn.close()
        except psycopg.Error:
            pass
