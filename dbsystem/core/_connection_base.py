"""What ``Connection`` (``core/connection.py``) and ``AsyncConnection`` (``aio/connection.py``)
share, written once and free of I/O.

* argument checks: ``check_params``, ``check_row_keys``, ``SQLLeaseBase._insert_columns``
  and ``check_batch_size``;
* the ``Statement`` a connection hands to its hooks (``SQLLeaseBase._statement``);
* the test a stream makes before each row (``SQLLeaseBase._stream_alive``);
* ``insert_many``'s steps, all or nothing, and the search for the first failing row,
  as a flow (``insert_flow``; see ``dbsystem.core._flow``) run against the backend
  connection: blocking on ``Connection``, awaited on ``AsyncConnection``;
* the SQL text and the call of each step of a ``transaction()`` block (``TransactionBase``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dbsystem.core._flow import Flow
from dbsystem.core.execution import statement
from dbsystem.errors import DatabaseError, InterfaceError, QueryBuildError
from dbsystem.kernel.hooks import Statement
from dbsystem.kernel.types import Row

__all__ = [
    "SQLLeaseBase",
    "TransactionBase",
    "check_batch_size",
    "check_params",
    "check_row_keys",
    "insert_flow",
]


def check_params(params: Any) -> Mapping[str, Any]:
    """``params`` if it is a mapping (``:name`` placeholders), else ``InterfaceError``."""
    if isinstance(params, Mapping):
        return params
    raise InterfaceError(
        f"parameters must be a mapping of names to values (for :name placeholders), "
        f"not {type(params).__name__}"
    )


def check_batch_size(batch_size: Any) -> int:
    """A stream's ``batch_size``: a positive int."""
    if type(batch_size) is not int or batch_size < 1:
        raise InterfaceError("batch_size must be a positive int")
    return batch_size


def check_row_keys(rows: Sequence[Mapping[str, Any]], names: list[str]) -> None:
    """Every row must have exactly ``names`` as keys: a missing one would fail late, and an
    extra one (a misspelt column) would be dropped silently by the driver."""
    # Fast path, about 80 ns a row: every row lists the same keys in the same order.
    if set(map(tuple, rows)) == {tuple(names)}:
        return
    expected = set(names)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or row.keys() != expected:
            found = sorted(row) if isinstance(row, Mapping) else type(row).__name__
            raise QueryBuildError(f"row {index} has columns {found}; expected {sorted(names)}")


class SQLLeaseBase:
    """The I/O-free part of a SQL connection lease, shared by ``Connection`` and
    ``AsyncConnection`` (a mixin next to their pool's lease class)."""

    __slots__ = ()

    _pool: Any
    _raw: Any
    _context: Any
    # ``call(sql, params)`` through the pool's hooks as an operation (with the statement's
    # action and tables, if known): a result, or on an async connection a coroutine.
    _hooked: Callable[..., Any]

    @property
    def backend(self) -> Any:
        """The backend this connection belongs to (its dialect, capabilities, URL)."""
        raise NotImplementedError

    def _statement(
        self,
        operation: str,
        text: str,
        params: Any,
        action: str | None = None,
        resources: tuple[str, ...] | None = None,
    ) -> Statement:
        pool = self._pool
        backend = self.backend
        return statement(
            pool,
            self._context,
            operation,
            text,
            params,
            dialect=backend.dialect,
            backend=pool.backend_name or backend.name,
            action=action,
            resources=resources,
        )

    def _stream_alive(self, raw: Any) -> bool:
        """Checked before every row of a stream: once the lease is returned the pool has
        closed the backend's stream, which would otherwise just look finished."""
        if self._raw is not raw:
            raise InterfaceError(
                "stream read after its connection was returned to the pool",
                backend=self._pool.backend_name,
            )
        return True

    def _released_error(self) -> InterfaceError:
        raise NotImplementedError  # the lease's

    def _run_built(
        self,
        operation: str,
        sql: str,
        params: Mapping[str, Any] | None,
        action: str | None,
        resources: tuple[str, ...] | None,
    ) -> Any:
        """Run a builder's statement; its action and tables are known (None: raw SQL text,
        which hooks classify). The builders call this; on an async connection it returns
        a coroutine."""
        raw = self._raw
        if raw is None:
            raise self._released_error()
        call = raw.fetch_all if operation == "fetch_all" else raw.execute
        return self._hooked(operation, sql, params, call, action, resources)

    @staticmethod
    def _insert_columns(
        raw: Any, table: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None
    ) -> list[str] | None:
        """Check ``insert_many``'s arguments; the column names, or None when there are no
        rows. ``table`` and the columns must be identifiers; every row has those keys."""
        if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Sequence):
            raise InterfaceError("insert_many takes a sequence of row mappings")
        if not rows:
            return None
        first = rows[0]
        if not isinstance(first, Mapping):
            raise QueryBuildError(f"row 0 is a {type(first).__name__}, not a mapping")
        names = list(columns) if columns is not None else list(first)
        if not names:
            raise QueryBuildError("rows to insert have no columns")
        raw.quote_identifier(table)
        for name in names:
            raw.quote_identifier(name)
        check_row_keys(rows, names)
        return names

    @staticmethod
    def _insert_text(table: str, names: list[str], count: int) -> str:
        """How hooks see an ``insert_many`` (the values are not spelt out)."""
        return f"INSERT INTO {table} ({', '.join(names)}) VALUES <{count} rows>"


def insert_flow(
    raw: Any, table: str, columns: list[str], rows: Sequence[Mapping[str, Any]]
) -> Flow[int]:
    """``insert_many`` in one transaction level (a savepoint inside a transaction); on
    failure, roll back and name the first failing row in the error (``row_index``)."""
    batch: Sequence[Row] = rows  # type: ignore[assignment]
    savepoint = yield ("begin",)
    try:
        count: int = yield ("bulk_insert", table, columns, batch)
    except DatabaseError as exc:
        yield ("rollback", savepoint)
        index = None
        if not raw.broken:
            index = yield from _first_failing_row(raw, table, columns, batch)
        if index is None:
            raise
        error = type(exc)(
            f"insert_many into {table}: row {index} failed, nothing was inserted: {exc.message}",
            backend=exc.backend,
            statement=exc.statement,
            params=exc.params,
            orig=exc.orig,
        )
        error.row_index = index
        raise error from exc
    except BaseException:
        yield ("rollback", savepoint)
        raise
    yield ("commit", savepoint)
    return count


def _first_failing_row(
    raw: Any, table: str, columns: list[str], rows: Sequence[Row]
) -> Flow[int | None]:
    """The index of the first row whose insertion fails: bisection over prefixes.

    Runs only after a failure, each probe in a savepoint that is rolled back, so the
    database is left as it was. About log2(len(rows)) probes.
    """
    low, high = 1, len(rows)  # inserting rows[:high] fails
    while low < high:
        middle = (low + high) // 2
        savepoint = yield ("begin",)
        try:
            yield ("bulk_insert", table, columns, rows[:middle])
            failed = False
        except DatabaseError:
            failed = True
        if raw.broken:
            return None
        yield ("rollback", savepoint)
        if failed:
            high = middle
        else:
            low = middle + 1
    return low - 1


class TransactionBase:
    """What a ``transaction()`` block does at each end, for ``Transaction`` and
    ``AsyncTransaction``: the step's operation, its SQL text (for hooks) and its call."""

    __slots__ = ("_active", "_conn", "_isolation", "_readonly", "_savepoint")

    def __init__(self, conn: Any, isolation: str | None, readonly: bool) -> None:
        self._conn = conn
        self._isolation = isolation
        self._readonly = readonly
        self._savepoint: str | None = None
        self._active = False

    def _begin_step(self) -> tuple[str, Callable[[], Any]]:
        if self._active:
            raise InterfaceError("this transaction block is already open")
        raw = self._conn._lease_raw()
        text = "BEGIN" if raw.tx_depth == 0 else f"SAVEPOINT dbsystem_sp_{raw.tx_depth}"
        return text, lambda: raw.begin(self._isolation, self._readonly)

    def _end_step(self, commit: bool) -> tuple[str, str, Callable[[], Any]]:
        self._active = False
        raw = self._conn._lease_raw()
        savepoint = self._savepoint
        if commit:
            text = "COMMIT" if savepoint is None else f"RELEASE SAVEPOINT {savepoint}"
            return "commit", text, lambda: raw.commit(savepoint)
        text = "ROLLBACK" if savepoint is None else f"ROLLBACK TO SAVEPOINT {savepoint}"
        return "rollback", text, lambda: raw.rollback(savepoint)
