"""The fluent SQL builders: select, insert, update, delete, set operations, raw SQL.

Every method returns a new builder (they are immutable), so a base query can be shared
between threads and extended freely::

    base = db.query(DatabaseType.POSTGRES).select("id", "name").from_("users")
    active = base.where("is_active", "=", True)
    page = active.order_by("name").limit(20).offset(40)
    sql, params = page.build()        # dialect SQL with :name parameters, for inspection
    rows = page.execute()             # through the manager's pool for that database

``build()`` compiles once per *shape* (the query without its values) and dialect; the same
shape with other values reuses the cached SQL, so only the values are collected again.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NoReturn,
    Protocol,
    Self,
    TypeAlias,
    TypedDict,
    Unpack,
    overload,
)

from typing_extensions import TypeVar

from dbsystem.core.execution import refuse_sql
from dbsystem.errors import NotSupportedError, PermissionDenied, QueryBuildError
from dbsystem.kernel.hooks import _policed_for
from dbsystem.kernel.types import ExecuteResult, Params, Row
from dbsystem.query.expr import (
    Column,
    Compare,
    Expr,
    Label,
    Order,
    Value,
    check_identifier,
    coerce,
    col,
    order_item,
)

if TYPE_CHECKING:
    from dbsystem.core.connection import Connection
    from dbsystem.core.manager import Engine as DatabaseManager
    from dbsystem.kernel.types import DatabaseType
    from dbsystem.query._compile import Compiled

__all__ = [
    "Async",
    "DeleteQuery",
    "InsertQuery",
    "Page",
    "QueryFactory",
    "RawQuery",
    "SQLValue",
    "SelectQuery",
    "SetQuery",
    "Sync",
    "UpdateQuery",
    "delete_from",
    "insert_into",
    "raw_sql",
    "select",
    "update",
]


class Sync:
    """The mode of builders whose ``execute()`` returns its result (``db.query(...)``)."""


class Async:
    """The mode of builders whose ``execute()`` returns a coroutine (``adb.query(...)``)."""


M = TypeVar("M", default=Sync)
"""How a builder's ``execute()`` answers: ``Sync`` (at once) or ``Async`` (awaited). Typing
only: at run time the factory (or the connection given) decides."""
T = TypeVar("T", default=Any)
"""What a builder's ``execute()`` gives: rows, or the affected row count."""
W = TypeVar("W", default=ExecuteResult)
"""What a write gives: the affected row count, or with ``returning()`` the rows."""
V = TypeVar("V")

SQLValue: TypeAlias = (
    Expr
    | str
    | int
    | float
    | decimal.Decimal
    | bytes
    | datetime.date
    | datetime.time
    | datetime.timedelta
    | uuid.UUID
    | Mapping[str, Any]
    | Sequence[Any]
    | None
)
"""What ``values()``, ``set()`` and ``upsert()`` take for a column: an expression, or a
value the drivers bind (bool is an int, datetime a date; a mapping or list is JSON)."""


class AwaitedConnection(Protocol):
    """An ``AsyncConnection`` as the builders see it (typing only): given one,
    ``execute(conn)`` returns a coroutine."""

    def fetch_all(self, sql: str, params: Params = None, /) -> Coroutine[Any, Any, list[Row]]:
        """Every row of a query, awaited."""
        ...


_OPERATORS = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "like": "like",
    "not like": "not like",
    "ilike": "ilike",
    "in": "in",
    "not in": "not in",
    "is": "is",
    "is not": "is not",
    "between": "between",
}
_MISSING: Any = object()


def condition(left: object, op: str | None = None, value: object = _MISSING) -> Expr:
    """A condition from the triple form ``("age", ">", 18)`` or an expression.

    In the triple form the left side names a column (or is an expression) and the value is
    always bound, a string included: ``where("name", "=", "x")`` compares with the text x.
    """
    if op is None:
        if value is not _MISSING or not isinstance(left, Expr):
            raise QueryBuildError(
                "where() takes an expression, or a column, an operator and a value"
            )
        return left
    if value is _MISSING:
        raise QueryBuildError(f"operator {op!r} needs a value")
    normalized = _OPERATORS.get(op)
    if normalized is None and isinstance(op, str):
        normalized = _OPERATORS.get(op.lower().strip())
    if normalized is None:
        raise QueryBuildError(f"unknown operator {op!r}; use one of {sorted(set(_OPERATORS))}")
    target = col(left) if isinstance(left, str) else coerce(left)
    if normalized in ("=", "!=", "<", "<=", ">", ">="):
        if value is None and normalized in ("=", "!="):
            return Compare("is" if normalized == "=" else "is not", target, coerce(None))
        return Compare(normalized, target, _value(value))
    if normalized == "like":
        return target.like(_value(value))
    if normalized == "not like":
        return target.not_like(_value(value))
    if normalized == "ilike":
        return target.ilike(_value(value))
    if normalized == "in":
        return target.in_(value)  # type: ignore[arg-type]
    if normalized == "not in":
        return target.not_in(value)  # type: ignore[arg-type]
    if normalized in ("is", "is not"):
        if value is not None:
            raise QueryBuildError(f"{op!r} compares with None (NULL) only")
        return Compare(normalized, target, coerce(None))
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise QueryBuildError("between takes a (low, high) pair")
    return target.between(value[0], value[1])


def _value(value: object) -> Expr:
    # In the triple form a value is a value: a dict such as {"$gt": ""} is bound as data.
    return value if isinstance(value, Expr) else Value(value)


def _check_count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise QueryBuildError(f"{what} must be a non-negative int, not {value!r}")
    return value


class _Query(Generic[M, T]):
    """What every builder shares: shape and values (cached), build, execute.

    Builders keep their parts in the instance ``__dict__`` (no ``__slots__``): a modified
    copy is then one C-level dict copy, which keeps building a query cheap. A part not set
    yet reads its class default (every default is immutable), so a new builder stores only
    what it was given.
    """

    _factory: QueryFactory[M] | None
    _shape_cache: tuple[Any, ...] | None = None  # computed on first use
    _values_cache: tuple[Any, ...] | None = None

    def _copy(self, **changes: Any) -> Self:
        new = object.__new__(type(self))
        state = self.__dict__.copy()
        state.update(changes)
        state["_shape_cache"] = None
        state["_values_cache"] = None
        new.__dict__ = state
        return new

    def shape(self) -> tuple[Any, ...]:
        """The query without its values: equal shapes compile to equal SQL."""
        shape = self._shape_cache
        if shape is None:
            shape = self._shape_cache = self._shape()
        return shape

    def bound_values(self) -> tuple[Any, ...]:
        """The bound values, in the order the compiled SQL names them."""
        values = self._values_cache
        if values is None:
            values = self._values_cache = self._collect_values()
        return values

    def _shape(self) -> tuple[Any, ...]:
        raise NotImplementedError  # pragma: no cover - every builder defines it

    def _collect_values(self) -> tuple[Any, ...]:
        raise NotImplementedError  # pragma: no cover - every builder defines it

    def _dialect(self, dialect: str | None) -> str:
        if dialect is not None:
            return dialect
        if self._factory is None:
            raise QueryBuildError("this query is not bound to a database: pass dialect=")
        return self._factory.dialect

    def compiled(self, dialect: str | None = None) -> Compiled:
        """The cached compilation for this shape and dialect."""
        return compile_query(self, self._dialect(dialect))

    def build(self, dialect: str | None = None) -> tuple[str, dict[str, Any]]:
        """The SQL (with ``:name`` parameters) and its parameters, for the bound dialect."""
        compiled = self.compiled(dialect)
        return compiled.sql, compiled.bind(self.bound_values())

    @overload
    def execute(self, conn: Connection) -> T: ...
    @overload
    def execute(self, conn: AwaitedConnection) -> Coroutine[Any, Any, T]: ...
    @overload
    def execute(self: _Query[Sync, V], conn: None = None) -> V: ...
    @overload
    def execute(self: _Query[Async, V], conn: None = None) -> Coroutine[Any, Any, V]: ...

    def execute(self, conn: Connection | AwaitedConnection | None = None) -> Any:
        """Run the query: rows for a select (or RETURNING), else the affected row count
        (awaited, for a builder of ``AsyncDatabaseManager.query()`` or an ``AsyncConnection``).

        Uses ``conn`` if given (to run inside its transaction), else borrows a connection
        from the bound manager's pool.
        """
        if conn is not None:
            return self._run_on(conn)  # type: ignore[arg-type]  # (an AsyncConnection too)
        factory = self._factory
        if factory is None:
            raise QueryBuildError("this query is not bound to a database: pass conn=")
        if factory.is_async:  # AsyncDatabaseManager.query(): a coroutine
            return self._execute_async(factory)
        if factory.sharded:  # ShardedPool.query(): the router picks the shards
            return factory.manager.run(self)  # type: ignore[attr-defined]
        manager = factory.manager
        if self._reads and factory.name is None and getattr(manager, "_replicas", None):
            return manager._read(factory.db_type, None, self._run_on)  # a replica may answer
        with manager.connection(factory.db_type, name=factory.name) as borrowed:
            return self._run_on(borrowed)

    async def _execute_async(self, factory: QueryFactory[Any]) -> Any:
        manager: Any = factory.manager
        if self._reads and factory.name is None and getattr(manager, "_replicas", None):
            return await manager._aread(factory.db_type, None, self._run_on)  # maybe a replica
        connection: Any = factory.manager.connection(factory.db_type, name=factory.name)
        async with connection as borrowed:
            return await self._run_on(borrowed)

    _reads = False  # SelectQuery, SetQuery: replicas may serve them

    def _run_on(self, conn: Connection) -> Any:
        if conn._is_async:
            return self._run_on_async(conn)
        query: _Query[Any, Any] = self
        if conn._context is not None:  # a user session: its row policies, if any
            try:
                query, applied = conn._pool.hooks.restrict(self, conn)
            except PermissionDenied as denied:
                _refused(conn, self, denied)
            if applied:
                compiled = query.compiled(conn.backend.dialect)
                params = compiled.bind(query.bound_values())
                with _policed_for(compiled.sql, params):
                    return _run(conn, compiled, params)
        compiled = query.compiled(conn.backend.dialect)
        return _run(conn, compiled, compiled.bind(query.bound_values()))

    async def _run_on_async(self, conn: Any) -> Any:
        """``_run_on`` for an ``AsyncConnection``: the same policies, the same statement."""
        query: _Query[Any, Any] = self
        applied = False
        if conn._context is not None:
            try:
                query, applied = conn._pool.hooks.restrict(self, conn)
            except PermissionDenied as denied:
                _refused(conn, self, denied)
        compiled = query.compiled(conn.backend.dialect)
        params = compiled.bind(query.bound_values())
        if applied:
            with _policed_for(compiled.sql, params):
                return await _run(conn, compiled, params)
        return await _run(conn, compiled, params)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shape()!r:.120}>"


async def _first_async(rows: Any) -> Row | None:
    found = await rows
    return found[0] if found else None


async def _scalar_async(row: Any) -> Any:
    found = await row
    return None if found is None else next(iter(found.values()), None)


def _refused(conn: Any, query: _Query[Any, Any], denied: PermissionDenied) -> NoReturn:
    """Raise ``denied`` (a row policy's refusal) through the hooks, so that the audit log
    records the statement as denied and the metrics count it, as for a missing grant."""
    compiled = query.compiled(conn.backend.dialect)
    operation = "fetch_all" if compiled.returns_rows else "execute"
    refuse_sql(conn, operation, compiled.sql, compiled.action, compiled.resources, denied)


def _run(conn: Connection, compiled: Compiled, params: dict[str, Any]) -> Any:
    operation = "fetch_all" if compiled.returns_rows else "execute"
    return conn._run_built(operation, compiled.sql, params, compiled.action, compiled.resources)


# -- select ---------------------------------------------------------------------------------


class FromItem:
    """A FROM source: a table name, a CTE name or a subquery, with an optional alias."""

    __slots__ = ("_key", "_values", "alias", "source")

    def __init__(self, source: str | _Query[Any, Any], alias: str | None) -> None:
        if isinstance(source, str):
            check_identifier(source, "table name")
            self._key: tuple[Any, ...] = ("table", source, alias)
            self._values: tuple[Any, ...] = ()
        elif isinstance(source, (SelectQuery, SetQuery)):
            if alias is None:
                raise QueryBuildError("a subquery in FROM needs an alias")
            self._key = ("subquery", source.shape(), alias)
            self._values = source.bound_values()
        else:
            raise QueryBuildError(f"cannot select from {type(source).__name__}")
        if alias is not None:
            check_identifier(alias, "alias")
        self.source, self.alias = source, alias


_FROM_CACHE: dict[tuple[str, str | None], FromItem] = {}


def _from_item(source: str | _Query[Any, Any], alias: str | None) -> FromItem:
    # Table sources are immutable and few: validate each name once.
    if isinstance(source, str):
        key = (source, alias)
        found = _FROM_CACHE.get(key)
        if found is None:
            found = FromItem(source, alias)
            if len(_FROM_CACHE) < 4096:
                _FROM_CACHE[key] = found
        return found
    return FromItem(source, alias)


class Join:
    """A JOIN: kind, source, condition."""

    __slots__ = ("_key", "_values", "item", "kind", "on")

    def __init__(self, kind: str, item: FromItem, on: Expr | None) -> None:
        if kind not in ("inner", "left", "right", "full", "cross"):
            raise QueryBuildError(
                f"join kind must be inner, left, right, full or cross, not {kind!r}"
            )
        if (on is None) != (kind == "cross"):
            raise QueryBuildError("a join needs on= (except a cross join, which takes none)")
        self.kind, self.item, self.on = kind, item, on
        self._key = ("join", kind, item._key, on._key if on is not None else None)
        self._values = item._values + (on._values if on is not None else ())


class RecursiveOptions(TypedDict, total=False):
    """``with_recursive``'s options (``CTE``'s): the CTE's ``columns`` (default none named)
    and ``union_all`` (default True; False: UNION, duplicates removed)."""

    columns: Sequence[str]
    union_all: bool


class CTE:
    """WITH name [(columns)] AS (query) [recursive: base UNION [ALL] step]."""

    __slots__ = ("_key", "_values", "columns", "name", "query", "recursive", "step", "union_all")

    def __init__(
        self,
        name: str,
        query: _Query[Any, Any],
        *,
        step: _Query[Any, Any] | None = None,
        columns: Sequence[str] = (),
        union_all: bool = True,
    ) -> None:
        check_identifier(name, "CTE name")
        for column in columns:
            check_identifier(column, "CTE column")
        if not isinstance(query, (SelectQuery, SetQuery)) or (
            step is not None and not isinstance(step, (SelectQuery, SetQuery))
        ):
            raise QueryBuildError("a CTE is made of select queries")
        self.name, self.query, self.step = name, query, step
        self.recursive, self.columns, self.union_all = step is not None, tuple(columns), union_all
        self._key = (
            "cte",
            name,
            self.columns,
            union_all,
            query.shape(),
            step.shape() if step is not None else None,
        )
        self._values = query.bound_values() + (step.bound_values() if step is not None else ())


class _Rows(_Query[M, list[Row]]):
    """What SELECT and set operations share: rows (replicas may serve them), ORDER BY,
    LIMIT and OFFSET (over the combined result, for a set operation)."""

    _reads = True
    _order: tuple[Order, ...] = ()
    _limit: Expr | None = None
    _offset: Expr | None = None

    def order_by(self, column: Any, direction: str = "asc", *, nulls: str | None = None) -> Self:
        """ORDER BY column [asc|desc] (an output column name, for a set operation); NULLs
        sort first ascending and last descending on every backend unless ``nulls="first"``
        or ``"last"`` says otherwise."""
        if not isinstance(direction, str):
            raise QueryBuildError(f"sort direction must be 'asc' or 'desc', not {direction!r}")
        item = column if isinstance(column, Order) else order_item(column, direction, nulls)
        return self._copy(_order=self._order + (item,))

    def limit(self, count: int) -> Self:
        """LIMIT count (a non-negative int)."""
        return self._copy(_limit=Value(_check_count(count, "limit")))

    def offset(self, count: int) -> Self:
        """OFFSET count (a non-negative int)."""
        return self._copy(_offset=Value(_check_count(count, "offset")))

    @overload
    def all(self, conn: Connection) -> list[Row]: ...
    @overload
    def all(self, conn: AwaitedConnection) -> Coroutine[Any, Any, list[Row]]: ...
    @overload
    def all(self: _Rows[Sync], conn: None = None) -> list[Row]: ...
    @overload
    def all(self: _Rows[Async], conn: None = None) -> Coroutine[Any, Any, list[Row]]: ...

    def all(self, conn: Connection | AwaitedConnection | None = None) -> Any:
        """Every row (the same as ``execute``; awaited on the async side)."""
        return self.execute(conn)  # type: ignore[arg-type]

    def _page_values(self) -> tuple[Any, ...]:
        """The values of ORDER BY, LIMIT and OFFSET, in that order (they end the query)."""
        values: tuple[Any, ...] = ()
        for order in self._order:
            values += order._values
        for extra in (self._limit, self._offset):
            if extra is not None:
                values += extra._values
        return values


class SelectQuery(_Rows[M]):
    """``SELECT ... FROM ... [JOIN ...] [WHERE] [GROUP BY] [HAVING] [ORDER BY] [LIMIT/OFFSET]``."""

    _ctes: tuple[CTE, ...] = ()
    _distinct = False
    _from: tuple[FromItem, ...] = ()
    _joins: tuple[Join, ...] = ()
    _where: Expr | None = None
    _group: tuple[Expr, ...] = ()
    _having: Expr | None = None
    _lock: tuple[str, bool, bool, tuple[str, ...]] | None = None  # mode, skip, nowait, of

    def __init__(self, factory: QueryFactory[M] | None, columns: Sequence[Any]) -> None:
        self._factory = factory
        self._columns: tuple[Expr, ...] = tuple(_select_item(c) for c in columns)

    # -- clauses ---------------------------------------------------------------------------

    def select(self, *columns: Any) -> Self:
        """Add columns or expressions to the select list."""
        return self._copy(_columns=self._columns + tuple(_select_item(c) for c in columns))

    def distinct(self) -> Self:
        """SELECT DISTINCT."""
        return self._copy(_distinct=True)

    def from_(self, source: str | _Query[Any, Any], alias: str | None = None) -> Self:
        """FROM a table (or CTE) name, or a subquery (which needs an alias)."""
        return self._copy(_from=self._from + (_from_item(source, alias),))

    def join(
        self,
        source: str | _Query[Any, Any],
        on: Expr | None = None,
        *,
        alias: str | None = None,
        kind: str = "inner",
    ) -> Self:
        """JOIN source ON condition; ``kind``: inner, left, right, full or cross."""
        join = Join(kind.lower() if isinstance(kind, str) else kind, _from_item(source, alias), on)
        return self._copy(_joins=self._joins + (join,))

    def left_join(
        self, source: str | _Query[Any, Any], on: Expr, *, alias: str | None = None
    ) -> Self:
        """LEFT OUTER JOIN."""
        return self.join(source, on, alias=alias, kind="left")

    def where(self, left: object, op: str | None = None, value: object = _MISSING) -> Self:
        """Add a condition (ANDed with earlier ones): triple form or expression."""
        return self._copy(_where=_and(self._where, condition(left, op, value)))

    def group_by(self, *columns: Any) -> Self:
        """GROUP BY columns or expressions."""
        items = tuple(col(c) if isinstance(c, str) else coerce(c) for c in columns)
        return self._copy(_group=self._group + items)

    def having(self, left: object, op: str | None = None, value: object = _MISSING) -> Self:
        """Add a HAVING condition: ``having(count(), ">", 50)`` or an expression."""
        return self._copy(_having=_and(self._having, condition(left, op, value)))

    def with_(self, name: str, query: _Query[Any, Any], *, columns: Sequence[str] = ()) -> Self:
        """WITH name AS (query): a common table expression, usable by name in FROM/JOIN."""
        return self._copy(_ctes=self._ctes + (CTE(name, query, columns=columns),))

    def with_recursive(
        self,
        name: str,
        base: _Query[Any, Any],
        step: _Query[Any, Any],
        **options: Unpack[RecursiveOptions],
    ) -> Self:
        """WITH RECURSIVE name(columns) AS (base UNION [ALL] step); ``step`` selects FROM name.

        ``columns`` names the CTE's columns; ``union_all=False`` makes it UNION."""
        cte = CTE(name, base, step=step, **options)
        return self._copy(_ctes=self._ctes + (cte,))

    # -- row locks -------------------------------------------------------------------------

    def for_update(
        self,
        *,
        skip_locked: bool = False,
        nowait: bool = False,
        of: str | Sequence[str] | None = None,
    ) -> Self:
        """Lock the selected rows for update until the transaction ends: ``FOR UPDATE``.

        ``skip_locked=True`` leaves out rows another transaction holds (a job queue);
        ``nowait=True`` fails at once (``OperationalError``) instead of waiting for them;
        ``of`` names the tables (or aliases) whose rows are locked (PostgreSQL). Run it
        inside ``conn.transaction()``: outside one the lock ends with the statement.
        SQLite has no row locks: compiling for it raises ``NotSupportedError``. Access
        control counts a locking read as an UPDATE of its tables.
        """
        return self._lock_rows("update", skip_locked, nowait, of)

    def for_share(
        self,
        *,
        skip_locked: bool = False,
        nowait: bool = False,
        of: str | Sequence[str] | None = None,
    ) -> Self:
        """Lock the selected rows against changes by others (``FOR SHARE``; MariaDB's
        ``LOCK IN SHARE MODE``) until the transaction ends; the options as ``for_update``."""
        return self._lock_rows("share", skip_locked, nowait, of)

    def _lock_rows(
        self, mode: str, skip_locked: object, nowait: object, of: str | Sequence[str] | None
    ) -> Self:
        if type(skip_locked) is not bool or type(nowait) is not bool:
            raise QueryBuildError("skip_locked and nowait are True or False")
        if skip_locked and nowait:
            raise QueryBuildError("a row lock either skips locked rows or fails on them: not both")
        names = () if of is None else (of,) if isinstance(of, str) else tuple(of)
        for name in names:
            check_identifier(name, "table")
        # A locking read goes to the primary: a replica cannot lock its rows.
        return self._copy(_lock=(mode, skip_locked, nowait, names), _reads=False)

    # -- keyset pagination -----------------------------------------------------------------

    @overload
    def paginate(
        self, conn: Connection, *, limit: int, after: Any = None, key: str | Sequence[str] = ()
    ) -> Page: ...
    @overload
    def paginate(
        self,
        conn: AwaitedConnection,
        *,
        limit: int,
        after: Any = None,
        key: str | Sequence[str] = (),
    ) -> Coroutine[Any, Any, Page]: ...
    @overload
    def paginate(
        self: SelectQuery[Sync],
        conn: None = None,
        *,
        limit: int,
        after: Any = None,
        key: str | Sequence[str] = (),
    ) -> Page: ...
    @overload
    def paginate(
        self: SelectQuery[Async],
        conn: None = None,
        *,
        limit: int,
        after: Any = None,
        key: str | Sequence[str] = (),
    ) -> Coroutine[Any, Any, Page]: ...

    def paginate(
        self,
        conn: Connection | AwaitedConnection | None = None,
        *,
        limit: int,
        after: Any = None,
        key: str | Sequence[str] = (),
    ) -> Any:
        """One page of at most ``limit`` rows after the row whose ordering values are
        ``after`` (None: the first page): keyset pagination, which reads only the page
        however deep it is and neither skips nor repeats rows when others insert or delete.

        The order is the builder's ``order_by`` (its items are columns, ascending or
        descending in any mix), else ``key``: a column name or several, ascending. The
        order must be unique (end it with the primary key) and its columns non-NULL and
        selected. ``after`` is ``page.next`` of the page before: a tuple of those values
        (a single value is accepted for a single column). Awaited on the async side.
        """
        keys = keyset_order(self._order, key)
        query = self if self._order else self._copy(_order=tuple(o for _, o in keys))
        if self._offset is not None:
            raise QueryBuildError("paginate() pages by key: drop the offset()")
        if after is not None:
            query = query.where(keyset_after(keys, after))
        if _check_count(limit, "limit") == 0:
            raise QueryBuildError("paginate(limit=...) must be at least 1")
        query = query.limit(limit + 1)
        rows: Any = query.execute(conn)  # type: ignore[arg-type]
        names = tuple(name for name, _ in keys)
        if not isinstance(rows, list):  # a coroutine: the async path
            return _page_async(rows, limit, names)
        return _page(rows, limit, names)

    # -- set operations --------------------------------------------------------------------

    def union(self, other: _Query[Any, Any]) -> SetQuery[M]:
        """UNION (duplicates removed)."""
        return SetQuery(self._factory, "union", (self, other))

    def union_all(self, other: _Query[Any, Any]) -> SetQuery[M]:
        """UNION ALL."""
        return SetQuery(self._factory, "union_all", (self, other))

    def intersect(self, other: _Query[Any, Any]) -> SetQuery[M]:
        """INTERSECT."""
        return SetQuery(self._factory, "intersect", (self, other))

    def except_(self, other: _Query[Any, Any]) -> SetQuery[M]:
        """EXCEPT."""
        return SetQuery(self._factory, "except", (self, other))

    # -- use as an expression --------------------------------------------------------------

    def scalar(self) -> Expr:
        """This query as a scalar subquery (one row, one column) inside another query."""
        return coerce(self)

    def as_(self, name: str) -> Label:
        """This query as a named scalar subquery in a select list."""
        return coerce(self).as_(name)

    # -- results ---------------------------------------------------------------------------

    @overload
    def first(self, conn: Connection) -> Row | None: ...
    @overload
    def first(self, conn: AwaitedConnection) -> Coroutine[Any, Any, Row | None]: ...
    @overload
    def first(self: SelectQuery[Sync], conn: None = None) -> Row | None: ...
    @overload
    def first(self: SelectQuery[Async], conn: None = None) -> Coroutine[Any, Any, Row | None]: ...

    def first(self, conn: Connection | AwaitedConnection | None = None) -> Any:
        """The first row, or None (a coroutine on an async connection or manager)."""
        rows: Any = self.execute(conn)  # type: ignore[arg-type]
        if not isinstance(rows, list):  # a coroutine: the async path
            return _first_async(rows)
        return rows[0] if rows else None

    @overload
    def scalar_value(self, conn: Connection) -> Any: ...
    @overload
    def scalar_value(self, conn: AwaitedConnection) -> Coroutine[Any, Any, Any]: ...
    @overload
    def scalar_value(self: SelectQuery[Sync], conn: None = None) -> Any: ...
    @overload
    def scalar_value(self: SelectQuery[Async], conn: None = None) -> Coroutine[Any, Any, Any]: ...

    def scalar_value(self, conn: Connection | AwaitedConnection | None = None) -> Any:
        """The first column of the first row, or None (awaited on the async side): a
        database value, whose type the query does not say."""
        row: Any = self.first(conn)  # type: ignore[arg-type]
        if row is not None and not isinstance(row, Mapping):  # a coroutine: the async path
            return _scalar_async(row)
        return None if row is None else next(iter(row.values()), None)

    # -- shape and values: CTEs, sources, columns, conditions, in the compiler's order -----

    def _shape(self) -> tuple[Any, ...]:
        where, having, limit, offset = self._where, self._having, self._limit, self._offset
        return (
            "select",
            self._distinct,
            tuple([c._key for c in self._ctes]),
            tuple([f._key for f in self._from]),
            tuple([j._key for j in self._joins]),
            tuple([c._key for c in self._columns]),
            where._key if where is not None else None,
            tuple([g._key for g in self._group]),
            having._key if having is not None else None,
            tuple([o._key for o in self._order]),
            limit is not None,
            offset is not None,
            self._reuse() if self._group or self._order else (),
            self._having_reuse() if having is not None else (),
            self._lock,
        )

    def _having_reuse(self) -> tuple[int | None, ...]:
        """For each part of HAVING shaped like a GROUP BY item or a labelled select item
        that holds values: the index of the item with the same values, else None. The
        compiler renders a match with the item's parameters (PostgreSQL compares parameter
        numbers) or, on MySQL, as the label, so matches are part of the shape."""
        labelled = [c.expr for c in self._columns if isinstance(c, Label)]
        candidates = [x for x in (*self._group, *labelled) if x._values]
        keys = {x._key for x in candidates}
        if not keys or self._having is None:
            return ()
        found: list[int | None] = []
        for node in _parts(self._having):
            if node._key in keys:
                found.append(
                    next(
                        (
                            i
                            for i, x in enumerate(candidates)
                            if x._key == node._key and _same_values(x._values, node._values)
                        ),
                        None,
                    )
                )
        return tuple(found)

    def _reuse(self) -> tuple[int | None, ...]:
        """For each GROUP BY item, then each ORDER BY item: the index of the select-list
        item with the same expression and the same values, when it holds values, else None.

        The compiler renders such an item with the select item's parameters, so PostgreSQL
        (which compares expressions with their parameter numbers) sees one expression:
        ``select(func.substring(col("p"), 1, 2)).group_by(func.substring(col("p"), 1, 2))``.
        """
        targets = [c.expr if isinstance(c, Label) else c for c in self._columns]
        found: list[int | None] = []
        grouped: set[int] = set()  # a GROUP BY item takes a select item no other one took
        groups = len(self._group)
        for position, item in enumerate((*self._group, *(o.expr for o in self._order))):
            match = None
            if item._values:
                for index, target in enumerate(targets):
                    if (position < groups and index in grouped) or not (
                        target._key == item._key and _same_values(target._values, item._values)
                    ):
                        continue
                    match = index
                    break
            if match is not None and position < groups:
                grouped.add(match)
            found.append(match)
        return tuple(found)

    def _collect_values(self) -> tuple[Any, ...]:
        values: tuple[Any, ...] = ()
        for group in (self._ctes, self._from, self._joins, self._columns):
            for part in group:
                if part._values:
                    values += part._values
        if self._where is not None:
            values += self._where._values
        for part in self._group:
            values += part._values
        if self._having is not None:
            values += self._having._values
        return values + self._page_values()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``paginate()``: its rows, and the cursor of the next page."""

    rows: list[Row]
    next: tuple[Any, ...] | None
    """``after=`` for the next page; None on the last page."""

    @property
    def has_more(self) -> bool:
        """True when another page follows."""
        return self.next is not None


def keyset_order(order: tuple[Order, ...], key: str | Sequence[str]) -> list[tuple[str, Order]]:
    """The (row key, ORDER BY item) pairs a keyset pages by: the builder's order, else ``key``."""
    if order and key:
        raise QueryBuildError("paginate(key=...) is for a query without order_by(): not both")
    if not order:
        names = (key,) if isinstance(key, str) else tuple(key)
        if not names:
            raise QueryBuildError("paginate() needs an order: order_by(...) or key=")
        order = tuple(order_item(name) for name in names)
    keys: list[tuple[str, Order]] = []
    for item in order:
        column = item.expr
        if not isinstance(column, Column) or column.name == "*":
            raise QueryBuildError(f"paginate() orders by columns only, not {column._key!r}")
        keys.append((column.name, item))
    return keys


def keyset_after(keys: Sequence[tuple[str, Order]], after: Any) -> Expr:
    """The rows after ``after`` in the keyset order: for (a ASC, b DESC),
    ``a > :a OR (a = :a AND b < :b)``; each direction as it is ordered."""
    values = after if isinstance(after, tuple) else (after,)
    if len(values) != len(keys):
        raise QueryBuildError(
            f"after= has {len(values)} value(s) for {len(keys)} ordering column(s) "
            f"({', '.join(name for name, _ in keys)})"
        )
    if any(value is None for value in values):
        raise QueryBuildError("after= holds a NULL: keyset pagination needs non-NULL keys")
    result: Expr | None = None
    equal: Expr | None = None
    for (_, item), value in zip(keys, values, strict=True):
        step = condition(item.expr, ">" if item.direction == "asc" else "<", value)
        branch = step if equal is None else equal & step
        result = branch if result is None else result | branch
        same = condition(item.expr, "=", value)
        equal = same if equal is None else equal & same
    assert result is not None
    return result


def _page(rows: list[Row], limit: int, names: tuple[str, ...]) -> Page:
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    missing = [name for name in names if name not in last]
    if missing:
        raise QueryBuildError(f"paginate(): select the ordering column(s) {', '.join(missing)}")
    cursor = tuple(last[name] for name in names)
    if any(value is None for value in cursor):
        raise QueryBuildError("paginate(): the last row's key holds a NULL; order by NOT NULL keys")
    return Page(rows, cursor)


async def _page_async(rows: Any, limit: int, names: tuple[str, ...]) -> Page:
    return _page(await rows, limit, names)


def _parts(node: Any) -> Any:
    """``node`` and every expression inside it (not inside subqueries), in a fixed order."""
    if isinstance(node, Expr):
        yield node
        for cls in type(node).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if slot not in ("_key", "_values"):
                    yield from _parts(getattr(node, slot, None))
    elif isinstance(node, tuple):
        for item in node:
            yield from _parts(item)


def _same_values(first: tuple[Any, ...], second: tuple[Any, ...]) -> bool:
    """Equal values of equal types (``1``, ``True`` and ``1.0`` differ in SQL)."""
    if len(first) != len(second):
        return False
    for a, b in zip(first, second, strict=True):
        if type(a) is not type(b):
            return False
        try:
            if a != b:
                return False
        except Exception:  # a value that cannot be compared is never the same
            return False
    return True


def _select_item(item: Any) -> Expr:
    if isinstance(item, str):
        return col(item)
    if isinstance(item, (SelectQuery, SetQuery)):
        return coerce(item)
    if isinstance(item, Expr):
        return item
    raise QueryBuildError(
        f"select items are column names or expressions, not {type(item).__name__} "
        "(use literal() for a value)"
    )


def _and(current: Expr | None, new: Expr) -> Expr:
    return new if current is None else current & new


class SetQuery(_Rows[M]):
    """UNION / UNION ALL / INTERSECT / EXCEPT of selects, with ORDER BY / LIMIT on the whole."""

    def __init__(
        self, factory: QueryFactory[M] | None, op: str, queries: Sequence[_Query[Any, Any]]
    ) -> None:
        for query in queries:
            if not isinstance(query, (SelectQuery, SetQuery)):
                raise QueryBuildError("set operations combine select queries")
        self._factory = factory
        self._op = op
        self._queries = tuple(queries)

    def union(self, other: _Query[Any, Any]) -> SetQuery[M]:
        """UNION with one more query."""
        return SetQuery(self._factory, "union", (self, other))

    def union_all(self, other: _Query[Any, Any]) -> SetQuery[M]:
        """UNION ALL with one more query."""
        return SetQuery(self._factory, "union_all", (self, other))

    def _shape(self) -> tuple[Any, ...]:
        return (
            "set",
            self._op,
            tuple(q.shape() for q in self._queries),
            tuple(o._key for o in self._order),
            self._limit is not None,
            self._offset is not None,
        )

    def _collect_values(self) -> tuple[Any, ...]:
        values: tuple[Any, ...] = ()
        for query in self._queries:
            values += query.bound_values()
        return values + self._page_values()


# -- writes ---------------------------------------------------------------------------------


class _Write(_Query[M, W]):
    """What INSERT, UPDATE and DELETE share: a table and RETURNING."""

    _returning: tuple[Expr, ...] = ()

    def __init__(self, factory: QueryFactory[M] | None, table: str) -> None:
        self._factory = factory
        self._table = check_identifier(table, "table name")

    def _with_returning(self, columns: Sequence[Any]) -> Any:
        """RETURNING columns: a copy whose ``execute()`` gives rows (each write class
        types its ``returning()`` so)."""
        return self._copy(_returning=self._returning + tuple(_select_item(c) for c in columns))

    def _returning_values(self) -> tuple[Any, ...]:
        values: tuple[Any, ...] = ()
        for item in self._returning:
            values += item._values
        return values


class InsertQuery(_Write[M, W]):
    """INSERT INTO table ... VALUES (one or many rows) or SELECT, with upsert and RETURNING."""

    _columns: tuple[str, ...] = ()
    _rows: tuple[tuple[Expr, ...], ...] = ()
    _from_select: _Query[Any, Any] | None = None
    _upsert: tuple[tuple[str, ...], tuple[tuple[str, Expr | None], ...], bool] | None = None

    def values(
        self,
        rows: Mapping[str, SQLValue] | Sequence[Mapping[str, SQLValue]] | None = None,
        /,
        **columns: SQLValue,
    ) -> Self:
        """Rows to insert: one mapping, a list of mappings (same keys), or keywords."""
        if columns:
            if rows is not None:
                raise QueryBuildError("pass rows or keyword columns, not both")
            rows = columns
        batch = [rows] if isinstance(rows, Mapping) else list(rows or [])
        if not batch:
            raise QueryBuildError("values() needs at least one row")
        names = tuple(batch[0])
        for name in names:
            check_identifier(name, "column name")
        keys = set(names)
        converted = []
        for index, row in enumerate(batch):
            if not isinstance(row, Mapping) or set(row) != keys:
                raise QueryBuildError(f"row {index} does not have the columns {sorted(keys)}")
            converted.append(tuple(_value(row[name]) for name in names))
        if self._columns and self._columns != names:
            raise QueryBuildError("every values() call must use the same columns")
        return self._copy(_columns=names, _rows=self._rows + tuple(converted))

    def from_select(self, columns: Sequence[str], query: _Query[Any, Any]) -> Self:
        """INSERT INTO table (columns) SELECT ..."""
        for name in columns:
            check_identifier(name, "column name")
        if not isinstance(query, (SelectQuery, SetQuery)):
            raise QueryBuildError("from_select takes a select query")
        return self._copy(_columns=tuple(columns), _from_select=query)

    def upsert(
        self,
        conflict: Sequence[str],
        update: Sequence[str] | Mapping[str, SQLValue] | None = None,
    ) -> Self:
        """Insert, or update the existing row when ``conflict`` columns collide.

        ``update``: the columns to overwrite with the new row's values (default: every
        inserted column not in ``conflict``), a mapping of column to value/expression, or
        ``[]`` to leave the existing row alone. ON CONFLICT on PostgreSQL and SQLite; ON
        DUPLICATE KEY UPDATE on MySQL, where ``conflict`` must match a unique key.
        """
        keys = tuple(check_identifier(c, "conflict column") for c in conflict)
        if not keys:
            raise QueryBuildError("upsert needs the conflict (unique key) columns")
        if update is None:
            updates: tuple[tuple[str, Expr | None], ...] = tuple(
                (c, None) for c in self._columns if c not in keys
            )
            default = True
        elif isinstance(update, Mapping):
            updates = tuple(
                (check_identifier(c, "column name"), _value(v)) for c, v in update.items()
            )
            default = False
        else:
            updates = tuple((check_identifier(c, "column name"), None) for c in update)
            default = False
        return self._copy(_upsert=(keys, updates, default))

    def returning(self, *columns: Any) -> InsertQuery[M, list[Row]]:
        """RETURNING columns (PostgreSQL, SQLite; MySQL raises NotSupportedError):
        ``execute()`` then gives the rows."""
        returning: InsertQuery[M, list[Row]] = self._with_returning(columns)
        return returning

    def _resolved_upsert(self) -> tuple[tuple[str, ...], tuple[tuple[str, Expr | None], ...]]:
        assert self._upsert is not None
        keys, updates, default = self._upsert
        if default:  # columns may have been given after upsert()
            updates = tuple((c, None) for c in self._columns if c not in keys)
        return keys, updates

    def _shape(self) -> tuple[Any, ...]:
        upsert = None
        if self._upsert is not None:
            keys, updates = self._resolved_upsert()
            upsert = (keys, tuple((c, e._key if e is not None else None) for c, e in updates))
        return (
            "insert",
            self._table,
            self._columns,
            tuple(tuple(v._key for v in row) for row in self._rows),
            self._from_select.shape() if self._from_select is not None else None,
            upsert,
            tuple(r._key for r in self._returning),
        )

    def _collect_values(self) -> tuple[Any, ...]:
        values: tuple[Any, ...] = ()
        for row in self._rows:
            for item in row:
                values += item._values
        if self._from_select is not None:
            values += self._from_select.bound_values()
        if self._upsert is not None:
            for _, expr in self._resolved_upsert()[1]:
                if expr is not None:
                    values += expr._values
        return values + self._returning_values()


class _FilteredWrite(_Write[M, W]):
    """What UPDATE and DELETE share: WHERE and the all-rows guard."""

    _where: Expr | None = None
    _all_rows = False

    def where(self, left: object, op: str | None = None, value: object = _MISSING) -> Self:
        """Add a condition (ANDed with earlier ones)."""
        return self._copy(_where=_and(self._where, condition(left, op, value)))

    def all_rows(self) -> Self:
        """Allow this statement to touch every row (it has no WHERE on purpose)."""
        return self._copy(_all_rows=True)

    def _filter_values(self) -> tuple[Any, ...]:
        """The values of WHERE and RETURNING, in that order (they close the statement)."""
        values: tuple[Any, ...] = self._where._values if self._where is not None else ()
        return values + self._returning_values()

    def _check_guard(self) -> None:
        if self._where is None and not self._all_rows:
            raise QueryBuildError(
                f"{type(self).__name__.removesuffix('Query').upper()} on {self._table!r} "
                "has no where(): call .all_rows() if every row is meant"
            )


class UpdateQuery(_FilteredWrite[M, W]):
    """UPDATE table SET ... WHERE ... (refused without WHERE unless ``all_rows()``)."""

    _set: tuple[tuple[str, Expr], ...] = ()

    def set(
        self, assignments: Mapping[str, SQLValue] | None = None, /, **columns: SQLValue
    ) -> Self:
        """Columns to set: values (bound) or expressions (``col("n") + 1``)."""
        items = {**(assignments or {}), **columns}
        if not items:
            raise QueryBuildError("set() needs at least one column")
        pairs = tuple((check_identifier(c, "column name"), _value(v)) for c, v in items.items())
        return self._copy(_set=self._set + pairs)

    def returning(self, *columns: Any) -> UpdateQuery[M, list[Row]]:
        """RETURNING columns (PostgreSQL, SQLite; MySQL raises NotSupportedError):
        ``execute()`` then gives the rows."""
        returning: UpdateQuery[M, list[Row]] = self._with_returning(columns)
        return returning

    def _shape(self) -> tuple[Any, ...]:
        return (
            "update",
            self._table,
            tuple((c, e._key) for c, e in self._set),
            self._where._key if self._where is not None else None,
            tuple(r._key for r in self._returning),
            self._all_rows,
        )

    def _collect_values(self) -> tuple[Any, ...]:
        values: tuple[Any, ...] = ()
        for _, expr in self._set:
            values += expr._values
        return values + self._filter_values()


class DeleteQuery(_FilteredWrite[M, W]):
    """DELETE FROM table WHERE ... (refused without WHERE unless ``all_rows()``)."""

    def returning(self, *columns: Any) -> DeleteQuery[M, list[Row]]:
        """RETURNING columns (PostgreSQL, SQLite; MySQL raises NotSupportedError):
        ``execute()`` then gives the rows."""
        returning: DeleteQuery[M, list[Row]] = self._with_returning(columns)
        return returning

    def _shape(self) -> tuple[Any, ...]:
        return (
            "delete",
            self._table,
            self._where._key if self._where is not None else None,
            tuple(r._key for r in self._returning),
            self._all_rows,
        )

    def _collect_values(self) -> tuple[Any, ...]:
        return self._filter_values()


class RawQuery(_Query[M, list[Row] | ExecuteResult]):
    """Raw SQL with ``:name`` parameters, run through the same path as every builder."""

    def __init__(
        self, factory: QueryFactory[M] | None, text: str, params: Mapping[str, Any] | None
    ) -> None:
        if not isinstance(text, str) or not text.strip():
            raise QueryBuildError("raw_sql needs SQL text")
        self._factory = factory
        self._text = text
        self._params = dict(params or {})

    def _shape(self) -> tuple[Any, ...]:
        return ("raw", self._text)

    def _collect_values(self) -> tuple[Any, ...]:
        return ()

    def build(self, dialect: str | None = None) -> tuple[str, dict[str, Any]]:
        """The text and parameters as given."""
        return self._text, dict(self._params)

    @overload
    def execute(self, conn: Connection) -> list[Row] | ExecuteResult: ...
    @overload
    def execute(
        self, conn: AwaitedConnection
    ) -> Coroutine[Any, Any, list[Row] | ExecuteResult]: ...
    @overload
    def execute(self: RawQuery[Sync], conn: None = None) -> list[Row] | ExecuteResult: ...
    @overload
    def execute(
        self: RawQuery[Async], conn: None = None
    ) -> Coroutine[Any, Any, list[Row] | ExecuteResult]: ...

    def execute(self, conn: Connection | AwaitedConnection | None = None) -> Any:
        """Rows if the statement reads, else the affected row count (awaited on the
        async side)."""
        given: Any = conn  # a Connection or an AsyncConnection

        def run(connection: Connection) -> Any:
            # Raw: the hooks classify it statement by statement (access control reads the
            # precise accesses, and may require the RAW permission).
            operation = _raw_operation(connection, self._text)
            return connection._run_built(operation, self._text, self._params, None, None)

        if conn is not None:
            return run(given)
        factory = self._factory
        if factory is None:
            raise QueryBuildError("this query is not bound to a database: pass conn=")
        if factory.sharded:
            raise NotSupportedError("raw SQL is not routed across shards: use the builders")
        if factory.is_async:

            async def run_async() -> Any:
                connection: Any = factory.manager.connection(factory.db_type, name=factory.name)
                async with connection as borrowed:
                    return await run(borrowed)

            return run_async()
        with factory.manager.connection(factory.db_type, name=factory.name) as borrowed:
            return run(borrowed)


def _raw_operation(conn: Any, text: str) -> str:
    """``fetch_all`` for raw SQL that reads, else ``execute``. A user session's text over a
    hook's ``max_sql_length`` is not parsed here: the hook refuses it before it runs."""
    from dbsystem.kernel.hooks import classify_sql

    if conn._context is not None:
        for hook in conn._pool.hooks.hooks:
            limit = getattr(hook, "max_sql_length", None)
            if isinstance(limit, int) and len(text) > limit:
                return "execute"
    action, _ = classify_sql(text, conn.backend.dialect)
    return "fetch_all" if action == "select" else "execute"


# -- entry points ---------------------------------------------------------------------------


class QueryFactory(Generic[M]):
    """What ``db.query(type)`` returns: builders bound to that database's pool and dialect.

    ``QueryFactory[Async]`` (``AsyncDatabaseManager.query()``) gives builders whose
    ``execute()`` is awaited; the type checkers know which from ``M``."""

    __slots__ = ("db_type", "dialect", "manager", "name")
    is_async = False  # AsyncQueryFactory: execute() returns a coroutine
    sharded = False  # ShardedPool.query(): execute() goes through the router

    def __init__(self, manager: DatabaseManager, db_type: DatabaseType, name: str | None) -> None:
        self.manager, self.db_type, self.name = manager, db_type, name
        self.dialect: str = manager.backend(db_type, name).dialect

    def select(self, *columns: Any) -> SelectQuery[M]:
        """SELECT columns (none: ``*``)."""
        return SelectQuery(self, columns)

    def insert_into(self, table: str) -> InsertQuery[M]:
        """INSERT INTO table."""
        return InsertQuery(self, table)

    def update(self, table: str) -> UpdateQuery[M]:
        """UPDATE table."""
        return UpdateQuery(self, table)

    def delete_from(self, table: str) -> DeleteQuery[M]:
        """DELETE FROM table."""
        return DeleteQuery(self, table)

    def raw_sql(self, text: str, params: Mapping[str, Any] | None = None) -> RawQuery[M]:
        """Raw SQL with ``:name`` parameters."""
        return RawQuery(self, text, params)

    def with_(
        self, name: str, query: _Query[Any, Any], *, columns: Sequence[str] = ()
    ) -> SelectQuery[M]:
        """Start a query WITH a common table expression."""
        return SelectQuery(self, ()).with_(name, query, columns=columns)

    def with_recursive(
        self,
        name: str,
        base: _Query[Any, Any],
        step: _Query[Any, Any],
        **options: Unpack[RecursiveOptions],
    ) -> SelectQuery[M]:
        """Start a query WITH RECURSIVE name AS (base UNION [ALL] step)."""
        return SelectQuery(self, ()).with_recursive(name, base, step, **options)


def select(*columns: Any) -> SelectQuery:
    """An unbound SELECT (for subqueries, or ``build(dialect=...)``)."""
    return SelectQuery(None, columns)


def insert_into(table: str) -> InsertQuery:
    """An unbound INSERT."""
    return InsertQuery(None, table)


def update(table: str) -> UpdateQuery:
    """An unbound UPDATE."""
    return UpdateQuery(None, table)


def delete_from(table: str) -> DeleteQuery:
    """An unbound DELETE."""
    return DeleteQuery(None, table)


def raw_sql(text: str, params: Mapping[str, Any] | None = None) -> RawQuery:
    """Unbound raw SQL with ``:name`` parameters."""
    return RawQuery(None, text, params)


# At the end: the compiler imports this module's classes.
from dbsystem.query._compile import compile_query  # noqa: E402
