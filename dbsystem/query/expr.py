"""Backend-neutral expressions: the one filter language for SQL (and, later, MongoDB).

``col("age") > 18``, ``col("a.Name").like("A%") & ~col("t.Composer").is_null()``,
``func.lower(col("email"))``, ``count().as_("n")``: these build immutable trees of small
nodes. Nothing here knows a dialect; ``dbsystem.query._compile`` turns a tree into a
SQLAlchemy Core construct for the pool's dialect.

Two things every node carries, computed once at construction:

* ``_key``: the node's *shape*, a hashable tuple with no values in it. Two queries of the
  same shape compile to the same SQL, so the compiled text is cached by shape.
* ``_values``: the node's bound values, in the order the compiler meets them.

Values never become SQL text: every Python value (a ``str`` included) is a bound parameter.
Names (tables, columns, aliases, functions) are validated identifiers, refused with
``QueryBuildError`` before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from dbsystem.errors import QueryBuildError

if TYPE_CHECKING:
    from dbsystem.query.sql import SelectQuery

__all__ = [
    "Expr",
    "avg",
    "case",
    "cast",
    "col",
    "count",
    "date_trunc",
    "escape_like",
    "exists",
    "extract",
    "func",
    "interval",
    "literal",
    "max_",
    "min_",
    "not_",
    "sum_",
]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_COLUMN = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]{0,62})\.)?([A-Za-z_][A-Za-z0-9_]{0,62}|\*)")
_CAST_TYPES = frozenset(
    {
        "integer",
        "bigint",
        "smallint",
        "float",
        "real",
        "double",
        "numeric",
        "decimal",
        "text",
        "varchar",
        "char",
        "date",
        "datetime",
        "timestamp",
        "time",
        "boolean",
    }
)


def escape_like(text: str) -> str:
    """``text`` as a LIKE pattern that matches it literally (``%``, ``_``, ``\\`` escaped).

    ``col("name").like(escape_like(user_text) + "%")`` is a safe "starts with".
    """
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def check_identifier(name: object, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier; raise ``QueryBuildError`` if not."""
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise QueryBuildError(
            f"invalid {what} {name!r}: use letters, digits and _ (not starting with a digit)"
        )
    return name


def _arith(op: str, *, reflected: bool = False) -> Callable[[Expr, object], Expr]:
    """The method of an arithmetic operator: ``self OP other``, or ``other OP self`` for the
    reflected one (``1 - col("x")``)."""
    if reflected:

        def method(self: Expr, other: object) -> Expr:
            return Arith(op, coerce(other), self)

    else:

        def method(self: Expr, other: object) -> Expr:
            return Arith(op, self, coerce(other))

    return method


class Expr:
    """Base of every expression node. Immutable; combine with operators and methods."""

    __slots__ = ("_key", "_values")

    _key: tuple[Any, ...]
    _values: tuple[Any, ...]

    # -- comparisons and boolean logic -----------------------------------------------------

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        if other is None:
            return Compare("is", self, NULL)
        return Compare("=", self, coerce(other))

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        if other is None:
            return Compare("is not", self, NULL)
        return Compare("!=", self, coerce(other))

    def __lt__(self, other: object) -> Compare:
        return Compare("<", self, coerce(other))

    def __le__(self, other: object) -> Compare:
        return Compare("<=", self, coerce(other))

    def __gt__(self, other: object) -> Compare:
        return Compare(">", self, coerce(other))

    def __ge__(self, other: object) -> Compare:
        return Compare(">=", self, coerce(other))

    def __and__(self, other: object) -> Expr:
        return BoolOp("and", (self, coerce(other)))

    def __or__(self, other: object) -> Expr:
        return BoolOp("or", (self, coerce(other)))

    def __invert__(self) -> Expr:
        return Unary("not", self)

    __hash__ = None  # type: ignore[assignment]  # == builds an expression, not a bool

    def __bool__(self) -> bool:
        raise QueryBuildError(
            "an expression has no truth value: combine conditions with & | ~, not and/or/not"
        )

    # -- arithmetic ------------------------------------------------------------------------

    __add__ = _arith("+")
    __radd__ = _arith("+", reflected=True)
    __sub__ = _arith("-")
    __rsub__ = _arith("-", reflected=True)
    __mul__ = _arith("*")
    __rmul__ = _arith("*", reflected=True)
    __truediv__ = _arith("/")  # true division on every backend (3 / 2 is 1.5, never 1)
    __rtruediv__ = _arith("/", reflected=True)
    __mod__ = _arith("%")

    def __neg__(self) -> Expr:
        return Unary("neg", self)

    # -- predicates ------------------------------------------------------------------------

    def like(self, pattern: object) -> Expr:
        """Case-sensitive LIKE on every backend: ``%`` any text, ``_`` one character, ``\\``
        makes the next character literal. ``escape_like(text)`` quotes user text."""
        return Like(self, coerce(pattern), insensitive=False, negate=False)

    def not_like(self, pattern: object) -> Expr:
        """NOT LIKE, case-sensitive."""
        return Like(self, coerce(pattern), insensitive=False, negate=True)

    def ilike(self, pattern: object) -> Expr:
        """Case-insensitive LIKE on every backend (same pattern syntax as ``like``)."""
        return Like(self, coerce(pattern), insensitive=True, negate=False)

    def in_(self, values: Iterable[object] | SelectQuery) -> Expr:
        """IN a list of values (each bound) or a subquery."""
        return In(self, values, negate=False)

    def not_in(self, values: Iterable[object] | SelectQuery) -> Expr:
        """NOT IN a list of values or a subquery."""
        return In(self, values, negate=True)

    def between(self, low: object, high: object) -> Expr:
        """BETWEEN low AND high (both ends included)."""
        return Between(self, coerce(low), coerce(high))

    def is_null(self) -> Expr:
        """IS NULL."""
        return Compare("is", self, NULL)

    def is_not_null(self) -> Expr:
        """IS NOT NULL."""
        return Compare("is not", self, NULL)

    def concat(self, *others: object) -> Expr:
        """String concatenation (``||``, or CONCAT() on MySQL)."""
        return Concat((self, *(coerce(o) for o in others)))

    # -- naming and ordering ---------------------------------------------------------------

    def as_(self, name: str) -> Label:
        """Name the expression in a select list (``AS name``)."""
        return Label(self, check_identifier(name, "alias"))

    def asc(self, nulls: str | None = None) -> Order:
        """Ascending order; ``nulls="first"`` or ``"last"`` (default: NULLs sort first)."""
        return Order(self, "asc", nulls)

    def desc(self, nulls: str | None = None) -> Order:
        """Descending order; ``nulls="first"`` or ``"last"`` (default: NULLs sort last)."""
        return Order(self, "desc", nulls)

    def over(
        self,
        partition_by: Sequence[object] | object = (),
        order_by: Sequence[object] | object = (),
    ) -> Expr:
        """A window function: ``func.rank().over(partition_by="dept", order_by=...)``."""
        return Over(self, _as_list(partition_by), _as_list(order_by))


def _as_list(value: Sequence[object] | object) -> list[object]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None else [value]


def _join_values(nodes: Iterable[Expr]) -> tuple[Any, ...]:
    out: tuple[Any, ...] = ()
    for node in nodes:
        out += node._values
    return out


class Column(Expr):
    """A column, optionally qualified by its table or alias: ``col("a.Name")``."""

    __slots__ = ("name", "table")

    def __init__(self, name: str, table: str | None = None) -> None:
        self.name = name
        self.table = table
        self._key = ("col", table, name)
        self._values = ()


_COLUMN_CACHE: dict[str, Column] = {}


def col(name: str) -> Column:
    """A column by name: ``"email"``, ``"u.email"`` (alias-qualified), ``"*"`` or ``"u.*"``."""
    found = _COLUMN_CACHE.get(name) if isinstance(name, str) else None
    if found is not None:
        return found
    match = _COLUMN.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise QueryBuildError(
            f"invalid column {name!r}: use name or table.name (letters, digits, _)"
        )
    column = Column(match.group(2), match.group(1))
    if len(_COLUMN_CACHE) < 4096:
        _COLUMN_CACHE[name] = column
    return column


class Value(Expr):
    """A bound value. Strings included: a value is never SQL."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value
        self._key = ("val",)
        self._values = (value,)


def literal(value: object) -> Value:
    """An explicit bound value, where an expression is expected (``select(literal(1))``)."""
    return Value(value)


class _Null(Expr):
    __slots__ = ()

    def __init__(self) -> None:
        self._key = ("null",)
        self._values = ()


NULL = _Null()


def coerce(value: object) -> Expr:
    """Expressions stay; a select builder becomes a subquery; anything else a bound value."""
    if isinstance(value, Expr):
        return value
    from dbsystem.query.sql import SelectQuery, SetQuery

    if isinstance(value, (SelectQuery, SetQuery)):
        return Subquery(value)
    if value is None:
        return NULL
    return Value(value)


class _Binary(Expr):
    """``left OP right``; its shape is tagged with the node kind (``_tag``)."""

    __slots__ = ("left", "op", "right")
    _tag: ClassVar[str]

    def __init__(self, op: str, left: Expr, right: Expr) -> None:
        self.op, self.left, self.right = op, left, right
        self._key = (self._tag, op, left._key, right._key)
        self._values = left._values + right._values


class Compare(_Binary):
    """A comparison: = != < <= > >= is / is not (NULL)."""

    __slots__ = ()
    _tag = "cmp"


class BoolOp(Expr):
    """AND / OR over two or more conditions (nested ones of the same kind are flattened)."""

    __slots__ = ("items", "op")
    items: tuple[Expr, ...]
    op: str

    def __init__(self, op: str, items: Sequence[Expr]) -> None:
        flat: list[Expr] = []
        for item in items:
            if isinstance(item, BoolOp) and item.op == op:
                flat.extend(item.items)
            else:
                flat.append(item)
        self.op, self.items = op, tuple(flat)
        self._key = ("bool", op, *(i._key for i in self.items))
        self._values = _join_values(self.items)


class Unary(Expr):
    """NOT x, or -x."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Expr) -> None:
        self.op, self.operand = op, operand
        self._key = ("unary", op, operand._key)
        self._values = operand._values


def not_(condition: Expr) -> Expr:
    """NOT condition (the same as ``~condition``)."""
    return Unary("not", condition)


class Arith(_Binary):
    """Arithmetic: + - * / %."""

    __slots__ = ()
    _tag = "arith"


class Concat(Expr):
    """String concatenation of two or more expressions."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Expr]) -> None:
        self.items = tuple(items)
        self._key = ("concat", *(i._key for i in self.items))
        self._values = _join_values(self.items)


class Like(Expr):
    """[NOT] LIKE / ILIKE."""

    __slots__ = ("expr", "insensitive", "negate", "pattern")

    def __init__(self, expr: Expr, pattern: Expr, *, insensitive: bool, negate: bool) -> None:
        self.expr, self.pattern, self.insensitive, self.negate = expr, pattern, insensitive, negate
        self._key = ("like", insensitive, negate, expr._key, pattern._key)
        self._values = expr._values + pattern._values


LIST_BIND_THRESHOLD = 32
"""``in_()`` with more values than this binds them as one list parameter."""


class In(Expr):
    """[NOT] IN (values...) or [NOT] IN (subquery); more than ``LIST_BIND_THRESHOLD`` plain
    values are bound as one list (``IN :p0``), which every SQL connection expands."""

    __slots__ = ("as_list", "expr", "items", "negate", "subquery")

    def __init__(self, expr: Expr, values: Iterable[object] | SelectQuery, *, negate: bool) -> None:
        from dbsystem.query.sql import SelectQuery, SetQuery

        self.expr, self.negate = expr, negate
        self.as_list = False
        if isinstance(values, (SelectQuery, SetQuery)):
            self.subquery: Subquery | None = Subquery(values)
            self.items: tuple[Expr, ...] = ()
            self._key = ("in", negate, expr._key, self.subquery._key)
            self._values = expr._values + self.subquery._values
            return
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise QueryBuildError("in_() takes a list of values or a subquery")
        self.subquery = None
        self.items = tuple(coerce(v) for v in values)
        if not self.items:
            raise QueryBuildError("in_() needs at least one value")
        if len(self.items) > LIST_BIND_THRESHOLD and all(
            type(i) is Value or i is NULL for i in self.items
        ):
            # One parameter holding the list, whatever its length: the connection makes it
            # portable (``backends._params.expand_lists``), and the shape does not grow.
            self.as_list = True
            self._key = ("in", negate, expr._key, "list")
            items = [i.value if type(i) is Value else None for i in self.items]
            self._values = (*expr._values, items)
            return
        self._key = ("in", negate, expr._key, *(i._key for i in self.items))
        self._values = expr._values + _join_values(self.items)


class Between(Expr):
    """x BETWEEN low AND high."""

    __slots__ = ("expr", "high", "low")

    def __init__(self, expr: Expr, low: Expr, high: Expr) -> None:
        self.expr, self.low, self.high = expr, low, high
        self._key = ("between", expr._key, low._key, high._key)
        self._values = expr._values + low._values + high._values


class Label(Expr):
    """expr AS name."""

    __slots__ = ("expr", "name")

    def __init__(self, expr: Expr, name: str) -> None:
        self.expr, self.name = expr, name
        self._key = ("label", name, expr._key)
        self._values = expr._values


class Order(Expr):
    """An ORDER BY item: expression, direction, where NULLs go."""

    __slots__ = ("direction", "expr", "nulls")

    def __init__(self, expr: Expr, direction: str, nulls: str | None) -> None:
        direction = direction.lower() if isinstance(direction, str) else direction
        if direction not in ("asc", "desc"):
            raise QueryBuildError(f"sort direction must be 'asc' or 'desc', not {direction!r}")
        if nulls is not None:
            nulls = nulls.lower() if isinstance(nulls, str) else nulls
            if nulls not in ("first", "last"):
                raise QueryBuildError(f"nulls must be 'first' or 'last', not {nulls!r}")
        self.expr, self.direction, self.nulls = expr, direction, nulls
        self._key = ("order", direction, nulls, expr._key)
        self._values = expr._values


class Func(Expr):
    """A SQL function call by name: ``func.lower(col("x"))``, ``count()``."""

    __slots__ = ("args", "distinct", "name")

    def __init__(self, name: str, args: Sequence[Expr], distinct: bool = False) -> None:
        self.name, self.args, self.distinct = name, tuple(args), distinct
        self._key = ("func", name, distinct, *(a._key for a in self.args))
        self._values = _join_values(self.args)


class _FuncFactory:
    """``func.NAME(*args)`` for any SQL function; the name is a validated identifier.
    ``func.extract(field, expr)`` is ``extract()`` (the field is a keyword, not a value)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        check_identifier(name, "function name")
        if name.lower() == "extract":
            return extract

        def call(*args: object, distinct: bool = False) -> Func:
            return Func(name, [coerce(a) for a in args], distinct)

        return call


func = _FuncFactory()
"""Any SQL function by name: ``func.lower(col("email"))``. Arguments that are not
expressions are bound values (as in SQLAlchemy): name columns with ``col()``."""


def count(expr: object = None, *, distinct: bool = False) -> Func:
    """COUNT(*) with no argument, else COUNT(expr) (``distinct=True`` for COUNT(DISTINCT ...))."""
    if expr is None:
        return Func("count", (), distinct)
    return Func("count", (_column_or_expr(expr),), distinct)


def sum_(expr: object) -> Func:
    """SUM(expr)."""
    return Func("sum", (_column_or_expr(expr),))


def avg(expr: object) -> Func:
    """AVG(expr)."""
    return Func("avg", (_column_or_expr(expr),))


def min_(expr: object) -> Func:
    """MIN(expr)."""
    return Func("min", (_column_or_expr(expr),))


def max_(expr: object) -> Func:
    """MAX(expr)."""
    return Func("max", (_column_or_expr(expr),))


def _column_or_expr(value: object) -> Expr:
    return col(value) if isinstance(value, str) else coerce(value)


class Over(Expr):
    """fn OVER (PARTITION BY ... ORDER BY ...)."""

    __slots__ = ("fn", "order_by", "partition_by")

    def __init__(self, fn: Expr, partition_by: list[object], order_by: list[object]) -> None:
        self.fn = fn
        self.partition_by = tuple(_column_or_expr(p) for p in partition_by)
        self.order_by = tuple(order_item(o) for o in order_by)
        self._key = (
            "over",
            fn._key,
            tuple(p._key for p in self.partition_by),
            tuple(o._key for o in self.order_by),
        )
        self._values = fn._values + _join_values(self.partition_by) + _join_values(self.order_by)


def order_item(value: object, direction: str = "asc", nulls: str | None = None) -> Order:
    """An ORDER BY item from a column name, an expression, or an ``Order``."""
    if isinstance(value, Order):
        return value
    return Order(_column_or_expr(value), direction, nulls)


class Cast(Expr):
    """CAST(expr AS type), for a small set of portable type names."""

    __slots__ = ("expr", "type_name")

    def __init__(self, expr: Expr, type_name: str) -> None:
        if type_name not in _CAST_TYPES:
            raise QueryBuildError(f"cast to {type_name!r}: use one of {sorted(_CAST_TYPES)}")
        self.expr, self.type_name = expr, type_name
        self._key = ("cast", type_name, expr._key)
        self._values = expr._values


def cast(expr: object, type_name: str) -> Cast:
    """CAST(expr AS type_name); type names: integer, bigint, float, numeric, text, date..."""
    return Cast(_column_or_expr(expr), type_name.lower())


class Case(Expr):
    """CASE WHEN cond THEN value ... ELSE value END."""

    __slots__ = ("default", "whens")

    def __init__(self, whens: Sequence[tuple[Expr, Expr]], default: Expr | None) -> None:
        if not whens:
            raise QueryBuildError("case() needs at least one (condition, value) pair")
        self.whens, self.default = tuple(whens), default
        self._key = (
            "case",
            tuple((c._key, v._key) for c, v in self.whens),
            default._key if default is not None else None,
        )
        values: tuple[Any, ...] = ()
        for condition, result in self.whens:
            values += condition._values + result._values
        self._values = values + (default._values if default is not None else ())


def case(*whens: tuple[object, object], else_: object = None) -> Case:
    """CASE WHEN ... THEN ... ELSE ... END: ``case((col("x") > 1, "big"), else_="small")``."""
    pairs = [(coerce(condition), coerce(result)) for condition, result in whens]
    return Case(pairs, coerce(else_) if else_ is not None else None)


class Subquery(Expr):
    """A select used as an expression: scalar, or the right side of IN, or EXISTS."""

    __slots__ = ("query",)

    def __init__(self, query: Any) -> None:
        self.query = query
        self._key = ("subquery", query.shape())
        self._values = query.bound_values()


class Exists(Expr):
    """EXISTS (subquery)."""

    __slots__ = ("subquery",)

    def __init__(self, query: Any) -> None:
        self.subquery = Subquery(query)
        self._key = ("exists", self.subquery._key)
        self._values = self.subquery._values


def exists(query: Any) -> Exists:
    """EXISTS (subquery): ``exists(db.query(t).select("*").from_("orders").where(...))``."""
    return Exists(query)


DATE_PARTS = ("year", "month", "day", "hour", "minute", "second", "dow", "doy", "epoch")
"""The fields ``extract`` knows, each an integer on every backend."""


class Extract(Expr):
    """One part of a date or timestamp, as an integer (see ``extract``)."""

    __slots__ = ("expr", "field")

    def __init__(self, field: str, expr: Expr) -> None:
        self.field, self.expr = field, expr
        self._key = ("extract", field, expr._key)
        self._values = expr._values


def extract(field: str, expr: object) -> Extract:
    """A part of a date or timestamp, the same integer on SQLite, PostgreSQL and MySQL.

    ``field`` is one of ``year``, ``month``, ``day``, ``hour``, ``minute``, ``second``
    (whole seconds: a fraction is dropped), ``dow`` (day of week, 0 = Sunday to 6 = Saturday,
    PostgreSQL's convention), ``doy`` (day of year, 1 to 366) and ``epoch`` (whole seconds
    since 1970-01-01 00:00:00, the value read as UTC). ``expr`` is a column name or an
    expression: ``extract("year", "created_at")``, ``extract("dow", col("o.day"))``.
    A NULL gives NULL.
    """
    if not isinstance(field, str) or field.lower() not in DATE_PARTS:
        raise QueryBuildError(f"extract: field must be one of {list(DATE_PARTS)}, not {field!r}")
    return Extract(field.lower(), _column_or_expr(expr))


TRUNC_UNITS = ("year", "month", "day", "hour", "minute", "second")
"""The units ``date_trunc`` knows."""


class DateTrunc(Expr):
    """A date or timestamp cut down to the start of its unit (see ``date_trunc``)."""

    __slots__ = ("expr", "unit")

    def __init__(self, unit: str, expr: Expr) -> None:
        self.unit, self.expr = unit, expr
        self._key = ("date_trunc", unit, expr._key)
        self._values = expr._values


def date_trunc(unit: str, expr: object) -> DateTrunc:
    """The timestamp at the start of the ``unit`` holding a date or timestamp, the same on
    SQLite, PostgreSQL and MySQL: ``date_trunc("month", "created_at")`` gives
    2024-02-01 00:00:00 for 2024-02-29 13:14:15.

    ``unit`` is one of ``year``, ``month``, ``day``, ``hour``, ``minute``, ``second``. The
    result is a timestamp (``datetime``; on SQLite the text ``YYYY-MM-DD HH:MM:SS``), also
    for a date. A NULL gives NULL.
    """
    if not isinstance(unit, str) or unit.lower() not in TRUNC_UNITS:
        raise QueryBuildError(f"date_trunc: unit must be one of {list(TRUNC_UNITS)}, not {unit!r}")
    return DateTrunc(unit.lower(), _column_or_expr(expr))


class Interval(Expr):
    """A span of calendar months and seconds, added to or subtracted from a date or a
    timestamp with ``+`` and ``-`` (see ``interval``). Both amounts are bound values."""

    __slots__ = ("months", "seconds")

    def __init__(self, months: int, seconds: int) -> None:
        self.months, self.seconds = months, seconds
        self._key = ("interval",)
        self._values = (months, seconds)

    def __add__(self, other: object) -> Expr:
        return Arith("+", coerce(other), self)  # the date or timestamp on the left

    def __sub__(self, other: object) -> Expr:
        raise QueryBuildError("subtract an interval from a date (x - interval(...)), not x")


def interval(
    *,
    years: int = 0,
    months: int = 0,
    days: int = 0,
    hours: int = 0,
    minutes: int = 0,
    seconds: int = 0,
) -> Interval:
    """A span to add to or subtract from a date or timestamp, the same on SQLite, PostgreSQL
    and MySQL: ``col("due") + interval(days=3)``, ``col("at") - interval(months=1, hours=2)``.

    Years and months move the calendar month, keeping the day, or the month's last day when
    it has fewer (2024-01-31 + 1 month is 2024-02-29, as PostgreSQL and MySQL do); then days,
    hours, minutes and seconds add their length. The result is a timestamp (``datetime``;
    on SQLite the text ``YYYY-MM-DD HH:MM:SS``, whole seconds), also for a date. Amounts are
    whole numbers, negative ones allowed.
    """
    amounts = {
        "years": years,
        "months": months,
        "days": days,
        "hours": hours,
        "minutes": minutes,
        "seconds": seconds,
    }
    for name, amount in amounts.items():
        if type(amount) is not int:
            raise QueryBuildError(f"interval: {name} must be a whole number, not {amount!r}")
    return Interval(years * 12 + months, ((days * 24 + hours) * 60 + minutes) * 60 + seconds)
