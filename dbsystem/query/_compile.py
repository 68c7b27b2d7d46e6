"""Builders and expressions -> SQLAlchemy Core -> dialect SQL, cached by shape.

SQLAlchemy Core does the SQL generation for each dialect (quoting, LIMIT forms, ON CONFLICT
and ON DUPLICATE KEY, RETURNING, window syntax). This module only translates our nodes into
its constructs, with one ``bindparam`` per value, named ``p0, p1, ...`` in the order the
builder lists its values, and compiles with the ``named`` paramstyle so the text carries
``:p0`` placeholders like any raw SQL the connection runs.

The result is cached by (dialect, shape): building the same query shape again costs a
dictionary lookup and a ``zip`` of names and values. No SQLAlchemy object is made then.

Where the databases disagree, the translation makes them agree:

* ``like`` is case-sensitive everywhere: PostgreSQL's LIKE; MySQL's LIKE under the binary
  collation; SQLite's GLOB, with the bound pattern rewritten (``%``->``*``, ``_``->``?``).
  ``ilike`` is case-insensitive everywhere (ILIKE, or lower() on both sides).
* NULLs sort low: first ascending, last descending (MySQL's and SQLite's rule; PostgreSQL is
  told so explicitly). ``nulls="first"/"last"`` is honoured everywhere (MySQL by sorting on
  ``x IS NULL`` first).
* ``/`` is true division (3 / 2 = 1.5; PostgreSQL and SQLite would give 1 for integers).
* String concatenation is ``||`` or MySQL's CONCAT().
* ``extract(field, x)`` gives the same integer everywhere: SQLite's strftime, PostgreSQL's
  date_part (floored), MySQL's EXTRACT / DAYOFWEEK - 1 / DAYOFYEAR / TIMESTAMPDIFF.
* Whatever SQLAlchemy refuses while building or compiling is ``QueryBuildError``.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as sa_mysql
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import Dialect

from dbsystem.errors import NotSupportedError, QueryBuildError
from dbsystem.query import expr as e
from dbsystem.query import sql as q

__all__ = ["Compiled", "compile_query"]

_DIALECTS: dict[str, Dialect] = {
    "postgresql": sa_postgresql.psycopg.dialect(paramstyle="named"),  # type: ignore[no-untyped-call]
    "mysql": sa_mysql.pymysql.dialect(paramstyle="named"),
    "sqlite": sa_sqlite.pysqlite.dialect(paramstyle="named"),
}
_CAST_TYPES: dict[str, Any] = {
    "integer": sa.Integer,
    "bigint": sa.BigInteger,
    "smallint": sa.SmallInteger,
    "float": sa.Float,
    "real": sa.Float,
    "double": sa.Float,
    "numeric": sa.Numeric,
    "decimal": sa.Numeric,
    "text": sa.Text,
    "varchar": sa.String,
    "char": sa.String,
    "date": sa.Date,
    "datetime": sa.DateTime,
    "timestamp": sa.DateTime,
    "time": sa.Time,
    "boolean": sa.Boolean,
}
_STRFTIME = {
    "year": "%Y",
    "month": "%m",
    "day": "%d",
    "hour": "%H",
    "minute": "%M",
    "second": "%S",
    "dow": "%w",
    "doy": "%j",
    "epoch": "%s",
}
_TRUNC_FORMAT = {  # strftime patterns; MySQL's DATE_FORMAT writes minutes as %i
    "year": "%Y-01-01 00:00:00",
    "month": "%Y-%m-01 00:00:00",
    "day": "%Y-%m-%d 00:00:00",
    "hour": "%Y-%m-%d %H:00:00",
    "minute": "%Y-%m-%d %H:%M:00",
    "second": "%Y-%m-%d %H:%M:%S",
}
_ZERO: Any = sa.literal_column("0")
_AGGREGATES = frozenset({"count", "sum", "avg", "min", "max"})  # resolvable in MySQL HAVING
_CACHE_SIZE = 2048
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class Compiled:
    """One compiled shape: the SQL, its parameter names, and what it does."""

    sql: str
    names: tuple[str, ...]
    transforms: tuple[tuple[int, Callable[[Any], Any]], ...]
    constants: dict[str, Any]
    """Parameters SQLAlchemy added with fixed values (SQLite's OFFSET 0 after a LIMIT)."""
    action: str
    resources: tuple[str, ...]
    returns_rows: bool

    def bind(self, values: Sequence[Any]) -> dict[str, Any]:
        """The parameters for ``values`` (a builder's ``bound_values()``)."""
        params = dict(zip(self.names, values, strict=True))
        if self.constants:
            params.update(self.constants)
        for index, transform in self.transforms:
            name = self.names[index]
            params[name] = transform(params[name])
        return params


_cache: dict[tuple[str, tuple[Any, ...]], Compiled] = {}
_cache_lock = threading.Lock()


def compile_query(query: q._Query[Any, Any], dialect: str) -> Compiled:
    """The compiled form of ``query`` for ``dialect``, from the cache when the shape is known."""
    key = (dialect, query.shape())
    found = _cache.get(key)
    if found is not None:
        return found
    compiled = _compile(query, dialect)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))  # oldest first
        _cache[key] = compiled
    return compiled


def cache_size() -> int:
    """How many compiled shapes are cached (for tests and diagnostics)."""
    return len(_cache)


def _compile(query: q._Query[Any, Any], dialect_name: str) -> Compiled:
    dialect = _DIALECTS.get(dialect_name)
    if dialect is None:
        raise QueryBuildError(f"no SQL dialect {dialect_name!r}; use {sorted(_DIALECTS)}")
    try:
        return _compile_with(query, dialect_name, dialect)
    except sa.exc.SQLAlchemyError as exc:
        # What SQLAlchemy refuses (CompileError, ArgumentError...) is a builder error here.
        raise QueryBuildError(
            f"cannot compile {type(query).__name__} for {dialect_name}: {exc}"
        ) from exc
    except NotImplementedError as exc:  # (e.g. a DELETE reading another table, on SQLite)
        raise NotSupportedError(
            f"cannot compile {type(query).__name__} for {dialect_name}: {exc}",
            backend=dialect_name,
        ) from exc


def _compile_with(query: q._Query[Any, Any], dialect_name: str, dialect: Dialect) -> Compiled:
    ctx = _Context(dialect_name, dialect)
    if isinstance(query, q.SelectQuery):
        statement: Any = ctx.select(query)
        action, returns_rows = "select", True
    elif isinstance(query, q.SetQuery):
        statement = ctx.set_query(query)
        action, returns_rows = "select", True
    elif isinstance(query, q.InsertQuery):
        statement = ctx.insert(query)
        action, returns_rows = "insert", bool(query._returning)
    elif isinstance(query, q.UpdateQuery):
        statement = ctx.update(query)
        action, returns_rows = "update", bool(query._returning)
    elif isinstance(query, q.DeleteQuery):
        statement = ctx.delete(query)
        action, returns_rows = "delete", bool(query._returning)
    else:
        raise QueryBuildError(f"cannot compile {type(query).__name__}")
    compiled = statement.compile(dialect=dialect)
    names = tuple(ctx.names)
    known = set(names)
    constants = {k: v for k, v in compiled.params.items() if k not in known}
    if any(v is None for v in constants.values()):  # a value our translation missed
        raise QueryBuildError(f"internal error: unexpected parameters {sorted(constants)}")
    if len(names) != len(query.bound_values()):
        raise QueryBuildError("internal error: compiled parameters do not match the values")
    return Compiled(
        sql=str(compiled),
        names=names,
        transforms=tuple(ctx.transforms),
        constants=constants,
        action=action,
        resources=tuple(dict.fromkeys(ctx.resources)),
        returns_rows=returns_rows,
    )


def _like_to_glob(pattern: Any) -> Any:
    """A LIKE pattern as a GLOB pattern (SQLite's case-sensitive matcher).

    ``%`` and ``_`` are the wildcards and ``\\`` makes the next character literal, as in
    PostgreSQL's and MySQL's LIKE; everything else matches itself.
    """
    if not isinstance(pattern, str):
        return pattern
    out = []
    escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
            continue
        elif char == "%":
            out.append("*")
            continue
        elif char == "_":
            out.append("?")
            continue
        out.append(f"[{char}]" if char in "*?[" else char)
    if escaped:  # a trailing backslash stands for itself
        out.append("\\")
    return "".join(out)


class _Context:
    """One compilation: the dialect, the bind names so far, the visible tables and CTEs."""

    def __init__(self, dialect_name: str, dialect: Dialect, parent: _Context | None = None) -> None:
        self.dialect_name = dialect_name
        self.dialect = dialect
        self.parent = parent
        self.names: list[str] = parent.names if parent else []
        self.transforms: list[tuple[int, Callable[[Any], Any]]] = (
            parent.transforms if parent else []
        )
        self.resources: list[str] = parent.resources if parent else []
        self.tables: dict[str, Any] = {}
        self.ctes: dict[str, Any] = dict(parent.ctes) if parent else {}

    def child(self) -> _Context:
        return _Context(self.dialect_name, self.dialect, self)

    def bind(self, transform: Callable[[Any], Any] | None = None) -> sa.BindParameter[Any]:
        index = len(self.names)
        name = f"p{index}"
        self.names.append(name)
        if transform is not None:
            self.transforms.append((index, transform))
        return sa.bindparam(name)

    def table(self, qualifier: str) -> Any:
        context: _Context | None = self
        while context is not None:
            found = context.tables.get(qualifier)
            if found is not None:
                return found
            context = context.parent
        return sa.table(qualifier)

    # -- expressions -----------------------------------------------------------------------

    substitutes: list[tuple[tuple[Any, ...], tuple[Any, ...], Any, list[str]]] = []
    """While HAVING compiles: GROUP BY items holding values (shape, values, compiled
    element, parameter names), used in place of an equal expression (see ``select``)."""

    def expr(self, node: e.Expr) -> Any:
        if self.substitutes:
            for key, values, element, names in self.substitutes:
                if node._key == key and q._same_values(node._values, values):
                    self.names.extend(names)
                    return element
        method = getattr(self, "_" + type(node).__name__.lstrip("_").lower())
        return method(node)

    def _column(self, node: e.Column) -> Any:
        if node.name == "*":
            if node.table is None:
                return sa.literal_column("*")
            quoted = self.dialect.identifier_preparer.quote(node.table)
            return sa.literal_column(f"{quoted}.*")
        if node.table is None:
            return sa.column(node.name)
        return sa.column(node.name, _selectable=self.table(node.table))

    def _value(self, node: e.Value) -> Any:
        return self.bind()

    def _null(self, node: e.Expr) -> Any:
        return sa.null()

    def _compare(self, node: e.Compare) -> Any:
        left = self.expr(node.left)
        if node.op in ("is", "is not"):
            right = self.expr(node.right)
            return left.is_(right) if node.op == "is" else left.is_not(right)
        return _COMPARE[node.op](left, self.expr(node.right))

    def _boolop(self, node: e.BoolOp) -> Any:
        items = [self.expr(item) for item in node.items]
        return sa.and_(*items) if node.op == "and" else sa.or_(*items)

    def _unary(self, node: e.Unary) -> Any:
        operand = self.expr(node.operand)
        return sa.not_(operand) if node.op == "not" else -operand

    def _arith(self, node: e.Arith) -> Any:
        if isinstance(node.right, e.Interval) and node.op in ("+", "-"):
            return self._shift(self.expr(node.left), node.right, node.op == "-")
        left, right = self.expr(node.left), self.expr(node.right)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        if node.op == "%":
            return left % right
        # True division: MySQL's / already is; elsewhere integers would divide as integers.
        if self.dialect_name == "mysql":
            return left / right
        return sa.cast(left, sa.Float) / right

    def _concat(self, node: e.Concat) -> Any:
        items = [self.expr(item) for item in node.items]
        result = items[0]
        for item in items[1:]:
            result = result.concat(item)
        return result

    def _like(self, node: e.Like) -> Any:
        target = self.expr(node.expr)
        # SQLite's LIKE has no escape character unless told; the others default to "\\".
        escape = "\\" if self.dialect_name == "sqlite" else None
        if node.insensitive:
            clause = target.ilike(self.expr(node.pattern), escape=escape)
        elif self.dialect_name == "sqlite" and isinstance(node.pattern, e.Value):
            clause = target.op("GLOB")(self.bind(_like_to_glob))
        elif self.dialect_name == "mysql":
            clause = sa.collate(target, "utf8mb4_bin").like(self.expr(node.pattern))
        else:
            clause = target.like(self.expr(node.pattern), escape=escape)
        return sa.not_(clause) if node.negate else clause

    def _in(self, node: e.In) -> Any:
        target = self.expr(node.expr)
        if node.subquery is not None:
            inner = self.child().any_select(node.subquery.query)
            return target.not_in(inner) if node.negate else target.in_(inner)
        if node.as_list:
            # "x IN :p0" with a list: expanded, or = ANY on PostgreSQL, by the connection.
            # Untyped: a typed bind (after a CAST AS TIMESTAMP, say) gets PostgreSQL's
            # "::TIMESTAMP" suffix, which would cast the whole "= ANY(...)" test.
            untyped = sa.type_coerce(self.bind(), sa.types.NullType())
            operator = target.op("NOT IN" if node.negate else "IN", return_type=sa.types.NullType)
            return operator(untyped)
        items = [self.expr(item) for item in node.items]
        return target.not_in(items) if node.negate else target.in_(items)

    def _between(self, node: e.Between) -> Any:
        target = self.expr(node.expr)
        return target.between(self.expr(node.low), self.expr(node.high))

    def _label(self, node: e.Label) -> Any:
        return self.expr(node.expr).label(node.name)

    def _func(self, node: e.Func) -> Any:
        args = [self.expr(arg) for arg in node.args]
        function = getattr(sa.func, node.name)
        try:
            if node.distinct:
                return function(sa.distinct(*args)) if args else function()
            return function(*args)
        except (TypeError, AssertionError, sa.exc.ArgumentError) as exc:
            # SQLAlchemy's own functions of that name (cast, next_value...) check their
            # arguments when built.
            raise QueryBuildError(f"func.{node.name}(): {exc}") from exc

    def _extract(self, node: e.Extract) -> Any:
        target = self.expr(node.expr)
        field = node.field
        if self.dialect_name == "sqlite":
            # strftime reads ISO 8601 text (how dates are stored on SQLite) as UTC.
            return sa.cast(
                sa.func.strftime(sa.literal_column(f"'{_STRFTIME[field]}'"), target), sa.Integer
            )
        if self.dialect_name == "mysql":
            if field == "dow":
                return sa.func.dayofweek(target) - sa.literal_column("1")  # MySQL: 1 = Sunday
            if field == "doy":
                return sa.func.dayofyear(target)
            if field == "epoch":
                # Not UNIX_TIMESTAMP(): it reads the value in the session's time zone; and
                # TIMESTAMPDIFF(SECOND, ...) rounds toward zero, not down, before 1970.
                micros = sa.func.timestampdiff(
                    sa.literal_column("MICROSECOND"),
                    sa.literal_column("'1970-01-01 00:00:00'"),
                    target,
                )
                seconds = sa.func.floor(micros / sa.literal_column("1000000"))
                return sa.cast(seconds, sa.BigInteger)
            return sa.extract(field, target)
        # PostgreSQL: date_part() (EXTRACT refuses hour/minute/second of a DATE), a double
        # with the fraction of a second in "second" and "epoch".
        part = sa.func.date_part(sa.literal_column(f"'{field}'"), target)
        kind = sa.BigInteger if field == "epoch" else sa.Integer
        if field in ("second", "epoch"):
            part = sa.func.floor(part)
        return sa.cast(part, kind)

    def _interval(self, node: e.Interval) -> Any:
        raise QueryBuildError(
            "an interval is added to or subtracted from a date or timestamp: "
            "col('d') + interval(days=1)"
        )

    def _shift(self, target: Any, span: e.Interval, subtract: bool) -> Any:
        """``target`` moved by ``span``: calendar months first (kept to the month's last
        day), then seconds; a timestamp on every backend."""
        months: Any = self.bind()
        seconds: Any = self.bind()
        if self.dialect_name == "postgresql":
            shift = sa.func.make_interval(
                _ZERO, sa.cast(months, sa.Integer), _ZERO, _ZERO, _ZERO, _ZERO,
                sa.cast(seconds, sa.Float),
            )  # fmt: skip
            stamp = sa.cast(target, sa.DateTime)
            return stamp - shift if subtract else stamp + shift
        if self.dialect_name == "mysql":
            name = "date_sub" if subtract else "date_add"
            moved = getattr(sa.func, name)(
                sa.cast(target, sa.DateTime),
                sa.text(f"INTERVAL :{months.key} MONTH").bindparams(months),
            )
            return getattr(sa.func, name)(
                moved, sa.text(f"INTERVAL :{seconds.key} SECOND").bindparams(seconds)
            )
        # SQLite's '+N months' overflows into the next month (01-31 + 1 month = 03-02):
        # move to the first of the month, add the months, then the day, capped at the
        # month's last day; the time of day is kept.
        if subtract:
            months, seconds = sa.literal_column("0") - months, sa.literal_column("0") - seconds
        month_text = sa.cast(months, sa.Text).concat(sa.literal_column("' months'"))
        day = sa.cast(sa.func.strftime(sa.literal_column("'%d'"), target), sa.Integer)
        day_text = sa.cast(day - sa.literal_column("1"), sa.Text).concat(
            sa.literal_column("' days'")
        )
        start: Any = sa.literal_column("'start of month'")
        same_day = sa.func.date(target, start, month_text, day_text)
        last_day = sa.func.date(
            target,
            start,
            month_text,
            sa.literal_column("'+1 months'"),
            sa.literal_column("'-1 days'"),
        )
        moved = (
            sa.func.min(same_day, last_day)
            .concat(sa.literal_column("' '"))
            .concat(sa.func.time(target))
        )
        second_text = sa.cast(seconds, sa.Text).concat(sa.literal_column("' seconds'"))
        return sa.func.datetime(moved, second_text)

    def _datetrunc(self, node: e.DateTrunc) -> Any:
        target = self.expr(node.expr)
        unit = node.unit
        if self.dialect_name == "postgresql":
            return sa.func.date_trunc(sa.literal_column(f"'{unit}'"), sa.cast(target, sa.DateTime))
        if self.dialect_name == "mysql":
            pattern = _TRUNC_FORMAT[unit].replace("%M", "%i")
            return sa.cast(
                sa.func.date_format(target, sa.literal_column(f"'{pattern}'")), sa.DateTime
            )
        return sa.func.strftime(sa.literal_column(f"'{_TRUNC_FORMAT[unit]}'"), target)

    def _over(self, node: e.Over) -> Any:
        fn = self.expr(node.fn)
        partition = [self.expr(p) for p in node.partition_by]
        order: list[Any] = []
        for item in node.order_by:
            order.extend(self.order(item))
        return fn.over(partition_by=partition or None, order_by=order or None)

    def _cast(self, node: e.Cast) -> Any:
        target = self.expr(node.expr)
        if self.dialect_name == "mysql" and node.type_name in ("float", "real", "double"):
            return sa.type_coerce(target * 1.0, sa.Float)  # MySQL 5.7/MariaDB cannot CAST AS FLOAT
        return sa.cast(target, _CAST_TYPES[node.type_name])

    def _case(self, node: e.Case) -> Any:
        whens = [(self.expr(condition), self.expr(result)) for condition, result in node.whens]
        default = self.expr(node.default) if node.default is not None else None
        return sa.case(*whens, else_=default)

    def _subquery(self, node: e.Subquery) -> Any:
        return self.child().any_select(node.query).scalar_subquery()

    def _exists(self, node: e.Exists) -> Any:
        return sa.exists(self.child().any_select(node.subquery.query))

    def order(self, node: e.Order, target: Any = None, flagged: Any = None) -> list[Any]:
        """ORDER BY items for ``node``; ``flagged``: what MySQL tests for NULL in place of
        ``target`` (a select item's expression, when ``target`` names its alias: MySQL
        refuses an alias of an aggregate inside an expression)."""
        if target is None:
            target = self.expr(node.expr)
        ascending = node.direction == "asc"
        nulls = node.nulls
        item = target.asc() if ascending else target.desc()
        low = "first" if ascending else "last"  # where NULLs go when they sort low
        if nulls is None or (nulls == low and self.dialect_name != "postgresql"):
            # NULLs sort low everywhere; only PostgreSQL needs telling.
            if self.dialect_name != "postgresql":
                return [item]
            nulls = low
        if self.dialect_name == "mysql":
            # MySQL has no NULLS FIRST/LAST: sort on "is null" first.
            flag = (target if flagged is None else flagged).is_(sa.null())
            return [flag.desc() if nulls == "first" else flag.asc(), item]
        return [item.nulls_first() if nulls == "first" else item.nulls_last()]

    # -- statements ------------------------------------------------------------------------

    def any_select(self, query: Any) -> Any:
        if isinstance(query, q.SetQuery):
            return self.set_query(query)
        return self.select(query)

    def source(self, item: q.FromItem) -> Any:
        if isinstance(item.source, str):
            name = item.source
            if name in self.ctes:
                clause = self.ctes[name]
                clause = clause.alias(item.alias) if item.alias else clause
            else:
                self.resources.append(name)
                clause = sa.table(name)
                clause = clause.alias(item.alias) if item.alias else clause
            self.tables[item.alias or name] = clause
            return clause
        inner = self.child().any_select(item.source)
        clause = inner.subquery(item.alias)
        self.tables[item.alias or ""] = clause
        return clause

    def cte(self, cte: q.CTE) -> None:
        base = self.child().any_select(cte.query)
        if cte.columns:
            base = _rename_columns(base, cte.columns)
        if not cte.recursive:
            self.ctes[cte.name] = base.cte(cte.name)
            return
        recursive = base.cte(cte.name, recursive=True)
        self.ctes[cte.name] = recursive
        step_ctx = self.child()
        step = step_ctx.any_select(cte.step)
        combined = recursive.union_all(step) if cte.union_all else recursive.union(step)
        self.ctes[cte.name] = combined

    def select(self, query: q.SelectQuery) -> Any:
        for cte in query._ctes:
            self.cte(cte)
        if not query._from and query._joins:
            raise QueryBuildError("a join needs a from_() to join to")
        froms = [self.source(item) for item in query._from]
        joined = froms[0] if froms else None
        extra: list[Any] = []
        for join in query._joins:
            right = self.source(join.item)
            if join.kind == "cross":
                extra.append(right)
                continue
            on = self.expr(join.on)  # type: ignore[arg-type]
            assert joined is not None
            if join.kind == "inner":
                joined = sa.join(joined, right, on)
            elif join.kind == "left":
                joined = sa.join(joined, right, on, isouter=True)
            elif join.kind == "right":
                # A RIGHT JOIN B is B LEFT JOIN A: SQLAlchemy has no RIGHT JOIN.
                joined = sa.join(right, joined, on, isouter=True)
            else:
                if self.dialect_name == "mysql":
                    raise NotSupportedError("MySQL has no FULL OUTER JOIN", backend="mysql")
                joined = sa.join(joined, right, on, full=True)
        columns: list[Any] = []
        inner: list[tuple[Any, list[str]] | None] = []  # what GROUP/ORDER BY may reuse
        for column in query._columns:
            start, transforms = len(self.names), len(self.transforms)
            element = self.expr(column)
            columns.append(element)
            reusable = len(self.transforms) == transforms  # a transform applies once per name
            target = element.element if isinstance(column, e.Label) else element
            inner.append((target, self.names[start:]) if reusable else None)
        reuse = query._reuse() if query._group or query._order else ()
        statement = sa.select(*(columns or [sa.literal_column("*")]))
        if joined is not None:
            statement = statement.select_from(joined, *froms[1:], *extra)
        if query._distinct:
            statement = statement.distinct()
        if query._where is not None:
            statement = statement.where(self.expr(query._where))
        substitutes: list[tuple[tuple[Any, ...], tuple[Any, ...], Any, list[str]]] = []
        if query._group:
            groups = []
            for i, g in enumerate(query._group):
                start, transforms = len(self.names), len(self.transforms)
                groups.append(self._reused(g, reuse[i], inner))
                if g._values and len(self.transforms) == transforms:
                    substitutes.append((g._key, g._values, groups[-1], self.names[start:]))
            statement = statement.group_by(*groups)
        if self.dialect_name == "mysql":
            # MySQL resolves names in HAVING against the select list and the grouped
            # columns only: an expression equal to a labelled select item is written as
            # its label (with values: the same values, see ``SelectQuery._having_reuse``).
            quote = self.dialect.identifier_preparer.quote
            labelled: list[tuple[tuple[Any, ...], tuple[Any, ...], Any, list[str]]] = [
                (c.expr._key, c.expr._values, sa.literal_column(quote(c.name)), found[1])
                for c, found in zip(query._columns, inner, strict=True)
                if isinstance(c, e.Label)
                and not isinstance(c.expr, e.Column)
                and not (isinstance(c.expr, e.Func) and c.expr.name.lower() in _AGGREGATES)
                and found
            ]
            substitutes = labelled + substitutes
        if query._having is not None:
            # An expression of HAVING equal to a GROUP BY item (with the same values) takes
            # that item's parameters, so PostgreSQL sees the grouped expression; the shape
            # holds which ones match (``SelectQuery._having_reuse``).
            self.substitutes = substitutes
            try:
                statement = statement.having(self.expr(query._having))
            finally:
                self.substitutes = []
        offset = len(query._group)
        targets = (
            [
                self._reused(o.expr, reuse[offset + i], inner, compile_=False)
                for i, o in enumerate(query._order)
            ]
            if reuse
            else []
        )
        flags: list[Any] = []
        if self.dialect_name == "mysql":
            labels = {
                column.name: found[0]
                for column, found in zip(query._columns, inner, strict=True)
                if isinstance(column, e.Label) and found is not None
            }
            flags = [
                labels.get(o.expr.name)
                if isinstance(o.expr, e.Column) and o.expr.table is None
                else None
                for o in query._order
            ]
        statement = self._order_and_page(statement, query, targets, flags)
        if query._lock is not None:
            statement = self._lock(statement, query._lock)
        return statement

    def _lock(self, statement: Any, lock: tuple[str, bool, bool, tuple[str, ...]]) -> Any:
        """FOR UPDATE / FOR SHARE (MariaDB: LOCK IN SHARE MODE), SKIP LOCKED, NOWAIT, OF."""
        mode, skip_locked, nowait, of = lock
        if self.dialect_name == "sqlite":
            # SQLite locks the whole database, never rows: a silent no-op would let two
            # workers of a SKIP LOCKED queue take the same row, so it is refused.
            raise NotSupportedError(
                f"SQLite has no row locks (FOR {mode.upper()}): its writers lock the whole "
                "database; use a transaction that writes first",
                backend="sqlite",
            )
        if of and self.dialect_name == "mysql":
            # (SQLAlchemy's MySQL dialect would drop OF silently; MariaDB has no OF.)
            raise NotSupportedError("MariaDB has no FOR UPDATE OF: drop of=", backend="mysql")
        tables = [self.tables[name] if name in self.tables else sa.table(name) for name in of]
        return statement.with_for_update(
            read=mode == "share", nowait=nowait, skip_locked=skip_locked, of=tables or None
        )

    def _reused(
        self,
        node: e.Expr,
        index: int | None,
        inner: list[tuple[Any, list[str]] | None],
        compile_: bool = True,
    ) -> Any:
        """The select item ``index`` for ``node`` (same expression, same parameters: see
        ``SelectQuery._reuse``), its parameter names counted again; else ``node`` compiled
        (or None when ``compile_`` is false: the caller compiles it)."""
        found = inner[index] if index is not None else None
        if found is None:
            return self.expr(node) if compile_ else None
        element, names = found
        self.names.extend(names)
        return element

    def set_query(self, query: q.SetQuery) -> Any:
        parts = [self.child().any_select(part) for part in query._queries]
        if self.dialect_name == "sqlite":
            # SQLite refuses parenthesised members of a compound select.
            parts = [
                part.subquery().select() if isinstance(part, sa.CompoundSelect) else part
                for part in parts
            ]
        combine = {
            "union": sa.union,
            "union_all": sa.union_all,
            "intersect": sa.intersect,
            "except": sa.except_,
        }[query._op]
        statement = combine(*parts)
        return self._order_and_page(statement, query)

    def _order_and_page(
        self,
        statement: Any,
        query: q.SelectQuery | q.SetQuery,
        targets: Sequence[Any] = (),
        flags: Sequence[Any] = (),
    ) -> Any:
        """ORDER BY, LIMIT and OFFSET of a select, or of a set operation's result;
        ``targets[i]``, when not None, is the compiled expression of the i-th ORDER BY item
        (``flags[i]``: see ``order``)."""
        for index, order in enumerate(query._order):
            target = targets[index] if index < len(targets) else None
            flagged = flags[index] if index < len(flags) else None
            statement = statement.order_by(*self.order(order, target, flagged))
        if query._limit is not None:
            statement = statement.limit(self.expr(query._limit))
        if query._offset is not None:
            statement = statement.offset(self.expr(query._offset))
        return statement

    def _target(self, name: str, columns: Sequence[str]) -> Any:
        self.resources.append(name)
        table = sa.table(name, *[sa.column(c) for c in columns])
        self.tables[name] = table
        return table

    def _returning(self, statement: Any, returning: Sequence[e.Expr]) -> Any:
        if not returning:
            return statement
        if self.dialect_name == "mysql":
            raise NotSupportedError("MySQL has no RETURNING clause", backend="mysql")
        return statement.returning(*[self.expr(r) for r in returning])

    def insert(self, query: q.InsertQuery) -> Any:
        if not query._columns:
            raise QueryBuildError(f"INSERT into {query._table!r} has no values()")
        upsert = query._resolved_upsert() if query._upsert is not None else None
        columns = list(query._columns)
        if upsert is not None:
            columns += [c for c in upsert[0] if c not in columns]
        table = self._target(query._table, columns)
        insert_fn: Any = {
            "postgresql": sa_postgresql.insert,
            "sqlite": sa_sqlite.insert,
            "mysql": sa_mysql.insert,
        }[self.dialect_name]
        statement = insert_fn(table)
        if query._from_select is not None:
            inner = self.child().any_select(query._from_select)
            statement = statement.from_select(list(query._columns), inner)
        else:
            rows = [
                {name: self.expr(value) for name, value in zip(query._columns, row, strict=True)}
                for row in query._rows
            ]
            statement = statement.values(rows if len(rows) > 1 else rows[0])
        if upsert is not None:
            statement = self._upsert(statement, upsert)
        return self._returning(statement, query._returning)

    def _upsert(self, statement: Any, upsert: tuple[Any, Any]) -> Any:
        keys, updates = upsert
        if self.dialect_name == "mysql":
            new = statement.inserted
            values = {c: (new[c] if expr is None else self.expr(expr)) for c, expr in updates}
            if not values:  # leave the row alone: a no-op assignment
                values = {keys[0]: sa.column(keys[0])}
            return statement.on_duplicate_key_update(values)
        new = statement.excluded
        if not updates:
            return statement.on_conflict_do_nothing(index_elements=list(keys))
        values = {c: (new[c] if expr is None else self.expr(expr)) for c, expr in updates}
        return statement.on_conflict_do_update(index_elements=list(keys), set_=values)

    def update(self, query: q.UpdateQuery) -> Any:
        query._check_guard()
        if not query._set:
            raise QueryBuildError(f"UPDATE {query._table!r} has no set()")
        table = self._target(query._table, [c for c, _ in query._set])
        values = {c: self.expr(expr) for c, expr in query._set}
        statement = sa.update(table).values(values)
        if query._where is not None:
            statement = statement.where(self.expr(query._where))
        return self._returning(statement, query._returning)

    def delete(self, query: q.DeleteQuery) -> Any:
        query._check_guard()
        table = self._target(query._table, [])
        statement = sa.delete(table)
        if query._where is not None:
            statement = statement.where(self.expr(query._where))
        return self._returning(statement, query._returning)


def _rename_columns(statement: Any, names: Sequence[str]) -> Any:
    columns = list(statement.selected_columns)
    if len(columns) != len(names):
        raise QueryBuildError(
            f"the CTE names {len(names)} columns but its query selects {len(columns)}"
        )
    return statement.with_only_columns(
        *[column.label(name) for column, name in zip(columns, names, strict=True)]
    )
