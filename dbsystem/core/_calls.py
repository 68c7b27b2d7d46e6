"""The calls a manager and a user session share, written once for the sync engine.

``Calls`` gives the one-statement calls (``execute``, ``fetch_all``...), each on a
connection of its own, over whatever lends connections (``connection()``) and routes reads
(``_read``, to a replica when the pool has them): the ``Engine`` as the application, an
``EngineSession`` as its user. ``bound_transaction`` is the ``transaction()`` block whose
connection entities and nested blocks reuse (as a savepoint), for the manager and for the
async manager's synchronous bridge, each with its own context variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from operator import methodcaller
from typing import Any, TypeVar

from dbsystem.kernel.types import DatabaseType, ExecuteResult, Params, Row

__all__ = ["BOUND", "BoundKey", "Calls", "bound_connection", "bound_transaction"]

T = TypeVar("T")
BoundKey = tuple[int, DatabaseType, str | None]

# The connections of open db.transaction() blocks, per task/thread context.
BOUND: ContextVar[dict[BoundKey, Any]] = ContextVar(
    "dbsystem_bound_connections",
    default={},  # noqa: B039 - never mutated, only replaced
)


@contextmanager
def bound_transaction(
    runner: Any,
    bound: ContextVar[dict[BoundKey, Any]],
    db_type: DatabaseType,
    name: str | None,
    isolation: str | None,
    readonly: bool,
) -> Iterator[Any]:
    """``runner``'s connection inside a transaction, bound in ``bound`` for the block; a
    nested block for the same pool reuses it as a savepoint."""
    key = (id(runner), db_type, name)
    current = bound.get()
    outer = current.get(key)
    if outer is not None:
        with outer.transaction(isolation, readonly):
            yield outer
        return
    with runner.connection(db_type, name=name) as conn, conn.transaction(isolation, readonly):
        token = bound.set({**current, key: conn})
        try:
            yield conn
        finally:
            bound.reset(token)


def bound_connection(
    bound: ContextVar[dict[BoundKey, Any]],
    runner: Any,
    db_type: DatabaseType | None,
    name: str | None,
) -> Any:
    """The connection of ``runner``'s ``transaction()`` block open in this context, or None."""
    current = bound.get()
    if not current or db_type is None:
        return None
    return current.get((id(runner), db_type, name))


class Calls:
    """The one-statement calls of a manager or a user session (see the module docstring)."""

    __slots__ = ()

    user_session = False
    """True for a user session (``db.for_user``): features refuse what would skip its checks."""

    # Provided by the class: what lends connections, the read replicas, a routed read.
    connection: Callable[..., Any]
    _replicated: Callable[[], bool]
    _read: Callable[..., Any]

    def _fetch(self, method: str, sql: str, params: Params, db_type: DatabaseType | None) -> Any:
        if self._replicated():  # a replica may answer a read
            return self._read(db_type, sql, methodcaller(method, sql, params))
        with self.connection(db_type) as conn:
            return getattr(conn, method)(sql, params)

    def execute(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> ExecuteResult:
        """Run one statement on the default (or given) database, autocommitted."""
        with self.connection(db_type) as conn:
            result: ExecuteResult = conn.execute(sql, params)
            return result

    def executemany(
        self,
        sql: str,
        seq_params: Sequence[Mapping[str, Any]],
        *,
        db_type: DatabaseType | None = None,
    ) -> ExecuteResult:
        """Run one statement per parameter mapping on the default (or given) database."""
        with self.connection(db_type) as conn:
            result: ExecuteResult = conn.executemany(sql, seq_params)
            return result

    def insert_many(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        db_type: DatabaseType | None = None,
    ) -> int:
        """Bulk-insert rows, all or nothing, on the default (or given) database."""
        with self.connection(db_type) as conn:
            count: int = conn.insert_many(table, rows)
            return count

    def fetch_all(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> list[Row]:
        """Run a query on the default (or given) database; every row as a dict (on a
        replica when the pool has them and the query only reads)."""
        rows: list[Row] = self._fetch("fetch_all", sql, params, db_type)
        return rows

    def fetch_one(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> Row | None:
        """Run a query on the default (or given) database; the first row, or None."""
        row: Row | None = self._fetch("fetch_one", sql, params, db_type)
        return row

    def fetch_value(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> Any:
        """Run a query on the default (or given) database; the first value, or None."""
        return self._fetch("fetch_value", sql, params, db_type)
