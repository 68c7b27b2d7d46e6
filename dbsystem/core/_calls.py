"""The calls a manager and a user session share, written once for the sync engine.

``Calls`` gives the one-statement calls (``execute``, ``fetch_all``...), each on a
connection of its own, over whatever lends connections (``connection()``) and routes reads
(``_read``, to a replica when the pool has them): the ``Engine`` as the application, an
``EngineSession`` as its user. ``BoundTransactions`` is the ``transaction()`` block whose
connection entities and nested blocks reuse (as a savepoint), for the manager and for the
async manager's synchronous bridge, each with its own context variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Generic, TypeVar, Unpack, overload

from dbsystem.core.execution import refuse_for
from dbsystem.errors import PermissionDenied
from dbsystem.kernel.protocols import TransactionOptions, transaction_options
from dbsystem.kernel.rows import rows_as
from dbsystem.kernel.types import DatabaseType, ExecuteResult, Params, Row

__all__ = ["BOUND", "BoundKey", "BoundTransactions", "Calls", "bound_block", "refuse_mixed_users"]

T = TypeVar("T")
L = TypeVar("L")
BoundKey = tuple[int, DatabaseType, str | None]

# The connections of open db.transaction() blocks, per task/thread context.
BOUND: ContextVar[dict[BoundKey, Any]] = ContextVar(
    "dbsystem_bound_connections",
    default={},  # noqa: B039 - never mutated, only replaced
)


def refuse_mixed_users(outer: Any, context: Any) -> None:
    """Refuse to run a ``transaction()`` of ``context`` (a session's, or None: the
    application's) on ``outer``, the connection of an open block of someone else: a
    connection carries one user for its whole lease (sync and async alike). The refusal
    goes through the pool's hooks as a refused ``BEGIN`` of ``context``, so the audit log
    records it as denied."""
    if outer._context is context:
        return
    other = "the application" if outer._context is None else f"user {outer._context.user!r}"
    who = "the application" if context is None else f"user {context.user!r}"
    pool = outer._pool
    error = PermissionDenied(
        f"{who} cannot open a transaction inside one of {other} on the same pool: a "
        "connection carries one user for its whole lease (close that block first, or use "
        "calls that borrow their own connection)",
        backend=pool.backend_name,
    )
    refuse_for(outer, context, "begin", "BEGIN", "transaction", error)


@contextmanager
def bound_block(
    bound: ContextVar[dict[BoundKey, Any]],
    key: BoundKey,
    context: Any,
    borrow: Callable[[], Any],
    isolation: str | None,
    readonly: bool,
) -> Iterator[Any]:
    """A ``transaction()`` block for ``key`` on behalf of ``context``: a nested block of the
    same user reuses the open connection as a savepoint; another user's is refused; else
    ``borrow()`` lends a connection (already carrying ``context``, so that even its BEGIN
    is the user's), bound in ``bound`` for the block."""
    current = bound.get()
    outer = current.get(key)
    if outer is not None:
        refuse_mixed_users(outer, context)
        with outer.transaction(isolation, readonly):
            yield outer
        return
    with borrow() as conn, conn.transaction(isolation, readonly):
        token = bound.set({**current, key: conn})
        try:
            yield conn
        finally:
            bound.reset(token)


class BoundTransactions(Generic[L]):
    """``transaction()`` and ``bound_connection()`` over ``connection()``: the manager's,
    the user session's and the async manager's synchronous bridge's.

    A block's connection is bound in ``_bound`` under the manager's key for the block, so
    that entities and ``bound_connection`` use it, and a nested block of the same user for
    the same pool reuses it as a savepoint (``bound_block``).
    """

    __slots__ = ()

    _bound: ClassVar[ContextVar[dict[BoundKey, Any]]] = BOUND
    connection: Callable[..., Any]
    _resolve_type: Callable[[DatabaseType | None], DatabaseType]
    _default_for_bound: Callable[[], DatabaseType | None]
    _bound_owner: Callable[[], Any]  # whose key: the manager's (a session's manager too)
    _bound_context: Callable[[], Any]  # whose blocks: None (the application) or a session's

    @contextmanager
    def transaction(
        self, db_type: DatabaseType | None = None, **options: Unpack[TransactionOptions]
    ) -> Iterator[L]:
        """Borrow a connection inside a transaction, committed when the block exits cleanly.

        Options (``TransactionOptions``): ``name`` (a named pool), ``isolation`` (e.g.
        ``"serializable"``), ``readonly``. Inside the block, entities (``dbsystem.orm``)
        and ``bound_connection`` use this connection, so their work is part of the
        transaction. Nested calls for the same pool reuse it as a savepoint; a block of
        another user there is refused.
        """
        name, isolation, readonly = transaction_options(options)
        key = (id(self._bound_owner()), self._resolve_type(db_type), name)

        def borrow() -> Any:
            return self.connection(key[1], name=name)

        with bound_block(
            self._bound, key, self._bound_context(), borrow, isolation, readonly
        ) as conn:
            yield conn

    def bound_connection(
        self, db_type: DatabaseType | None = None, name: str | None = None
    ) -> L | None:
        """The connection of this caller's ``transaction()`` block open in this context,
        or None (a block of another user is not this caller's)."""
        current = self._bound.get()
        chosen = db_type or self._default_for_bound()
        if not current or chosen is None:
            return None
        found: L | None = current.get((id(self._bound_owner()), chosen, name))
        if found is None or found._context is not self._bound_context():  # type: ignore[attr-defined]
            return None
        return found


class Calls:
    """The one-statement calls of a manager or a user session (see the module docstring)."""

    __slots__ = ()

    user_session = False
    """True for a user session (``db.for_user``): features refuse what would skip its checks."""

    # Provided by the class: what lends connections, the read replicas, a routed read.
    connection: Callable[..., Any]
    _replicas: Mapping[Any, Any]
    _read: Callable[..., Any]

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

    # fetch_all, fetch_one and fetch_value repeat their few lines on purpose: a shared
    # helper would add a Python call to every statement on the hot path.

    @overload
    def fetch_all(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> list[Row]: ...
    @overload
    def fetch_all(
        self,
        sql: str,
        params: Params = None,
        *,
        db_type: DatabaseType | None = None,
        row_type: type[T],
    ) -> list[T]: ...

    def fetch_all(
        self,
        sql: str,
        params: Params = None,
        *,
        db_type: DatabaseType | None = None,
        row_type: type[T] | None = None,
    ) -> list[Row] | list[T]:
        """Run a query on the default (or given) database; every row as a dict, or as a
        ``row_type`` (a pydantic model, a dataclass, a TypedDict: ``kernel.rows.rows_as``);
        on a replica when the pool has them and the query only reads."""
        rows: list[Row]
        if self._replicas:
            rows = self._read(db_type, sql, lambda conn: conn.fetch_all(sql, params))
        else:
            with self.connection(db_type) as conn:
                rows = conn.fetch_all(sql, params)
        return rows if row_type is None else rows_as(rows, row_type)

    def fetch_one(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> Row | None:
        """Run a query on the default (or given) database; the first row, or None."""
        if self._replicas:
            return self._read(db_type, sql, lambda conn: conn.fetch_one(sql, params))  # type: ignore[no-any-return]
        with self.connection(db_type) as conn:
            return conn.fetch_one(sql, params)  # type: ignore[no-any-return]

    def fetch_value(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> Any:
        """Run a query on the default (or given) database; the first value, or None."""
        if self._replicas:
            return self._read(db_type, sql, lambda conn: conn.fetch_value(sql, params))
        with self.connection(db_type) as conn:
            return conn.fetch_value(sql, params)
