"""A fake connector for deterministic pool tests: connections break and fail on demand."""

from __future__ import annotations

import itertools
import threading
import time

from dbsystem.errors import ConnectionFailed


class FakeConn:
    def __init__(self, ident: int) -> None:
        self.id = ident
        self.closed = False
        self.broken = False
        self.in_tx = False
        self.pings = 0
        self.borrowed = False


class FakeConnector:
    """Counts everything; ``fail`` makes connect raise; ``connect_delay`` slows it."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.lock = threading.Lock()
        self.opened: list[FakeConn] = []
        self.fail = False
        self.connect_delay = 0.0
        self.rollbacks = 0

    def connect(self) -> FakeConn:
        if self.connect_delay:
            time.sleep(self.connect_delay)
        if self.fail:
            raise ConnectionFailed("server unavailable", backend="fake")
        conn = FakeConn(next(self._ids))
        with self.lock:
            self.opened.append(conn)
        return conn

    def check(self, conn: FakeConn) -> None:
        conn.pings += 1
        if conn.broken:
            raise ConnectionFailed("ping failed", backend="fake")

    def reset(self, conn: FakeConn) -> None:
        if conn.broken:
            raise ConnectionFailed("connection lost", backend="fake")
        if conn.in_tx:
            conn.in_tx = False
            self.rollbacks += 1

    def close(self, conn: FakeConn) -> None:
        conn.closed = True

    @property
    def open_count(self) -> int:
        with self.lock:
            return sum(1 for c in self.opened if not c.closed)


class FakeAsyncConnector:
    """``FakeConnector`` for ``AsyncConnectionPool``: the same connections and counters,
    each call awaited (``delay`` seconds of ``asyncio.sleep`` in ``connect``)."""

    def __init__(self) -> None:
        self.sync = FakeConnector()
        self.delay = 0.0

    async def connect(self) -> FakeConn:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        return self.sync.connect()

    async def check(self, conn: FakeConn) -> None:
        self.sync.check(conn)

    async def reset(self, conn: FakeConn) -> None:
        self.sync.reset(conn)

    async def close(self, conn: FakeConn) -> None:
        self.sync.close(conn)

    def is_clean(self, conn: FakeConn) -> bool:
        return not conn.in_tx

    @property
    def open_count(self) -> int:
        return self.sync.open_count
