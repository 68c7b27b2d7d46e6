"""Any synchronous SQL backend (SQLite, MySQL, ``mock://``) driven from asyncio, on a worker
thread per connection. Takes SQL with ``:name`` parameters and returns dict rows, like the
backend it wraps (its errors, transaction depth and savepoints are the backend's own)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

from dbsystem.backends.base import Backend, SQLConnectionBase
from dbsystem.kernel.types import ExecuteResult, Row

__all__ = ["ThreadedConnector", "ThreadedSQLConnection"]


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

    @property
    def driver_connection(self) -> Any:
        """The synchronous driver's connection (use it only from the worker thread)."""
        return self.sync.driver_connection

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

    async def open_stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> AsyncGenerator[Row, None]:
        """The backend's stream, read ``batch_size`` rows per trip to the worker thread."""
        rows = self.sync.open_stream(sql, params, batch_size)
        finished = False
        try:
            while batch := await self.call(_take, rows, batch_size):
                for row in batch:
                    yield row
            finished = True
        finally:
            if not finished:  # stopped early: its cursor is closed where it was opened
                try:
                    await self.call(rows.close)
                except RuntimeError:  # the worker is gone: the connection was closed
                    pass

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


def _take(rows: Iterator[Row], count: int) -> list[Row]:
    return list(islice(rows, count))


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

    def is_clean(self, conn: ThreadedSQLConnection) -> bool:
        sync = conn.sync
        return not (sync.tx_depth or sync.streams or sync.dirty or sync.in_transaction)

    async def close(self, conn: ThreadedSQLConnection) -> None:
        # Queued behind whatever the worker still runs (a cancelled caller's statement).
        conn._worker.submit(self.backend.close, conn.sync)
        conn._worker.shutdown(wait=False)
