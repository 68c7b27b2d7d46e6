"""``tiny://``: the smallest complete SQL backend, over the standard library's sqlite3.

One module and one registered URL scheme; the engine gives it the pool, the hooks (access
control, audit, metrics), transactions with savepoints, the builders and the async API.
A backend only opens connections and runs ``:name``-parameter SQL, returning dict rows
and raising dbsystem errors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from dbsystem.errors import ConnectionFailed, IntegrityError, ProgrammingError
from dbsystem.extend import Backend, SQLConnectionBase
from dbsystem.kernel.types import ExecuteResult, Row


def _translate(exc: sqlite3.Error) -> Exception:
    kind = IntegrityError if isinstance(exc, sqlite3.IntegrityError) else ProgrammingError
    return kind(str(exc), backend="tiny")


class TinyConnection(SQLConnectionBase):
    backend_name = "tiny"

    def __init__(self, path: str) -> None:
        super().__init__()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, dict(params or {}))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> ExecuteResult:
        cursor = self._run(sql, params)
        return ExecuteResult(cursor.rowcount, lastrowid=cursor.lastrowid)

    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> ExecuteResult:
        try:
            cursor = self._conn.executemany(sql, [dict(p) for p in seq_params])
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return ExecuteResult(cursor.rowcount)

    def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        return [dict(row) for row in self._run(sql, params).fetchall()]

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        row = self._run(sql, params).fetchone()
        return None if row is None else dict(row)

    def stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        cursor = self._run(sql, params)
        while batch := cursor.fetchmany(batch_size):
            yield from (dict(row) for row in batch)

    def _begin(self, isolation: str | None, readonly: bool) -> None:
        self._conn.execute("BEGIN")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    def _savepoint(self, name: str) -> None:
        self._conn.execute(f"SAVEPOINT {name}")

    def _release_savepoint(self, name: str) -> None:
        self._conn.execute(f"RELEASE SAVEPOINT {name}")

    def _rollback_to_savepoint(self, name: str) -> None:
        self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def ping(self) -> None:
        try:
            self._conn.execute("SELECT 1")
        except sqlite3.Error as exc:
            raise ConnectionFailed(str(exc), backend="tiny") from exc

    def close(self) -> None:
        self._conn.close()


class TinyBackend(Backend):
    """``tiny:///path/to/file.db``; the builders compile for SQLite's dialect."""

    name = "tiny"

    def __init__(self, url: Any, config: Any) -> None:
        super().__init__(url, config)
        self.dialect = "sqlite"
        self.path = url.database or ":memory:"

    def connect(self) -> TinyConnection:
        return TinyConnection(self.path)
