"""The differential query fuzzer (issue 21): generated builder queries over generated data,
run on SQLite, PostgreSQL and MariaDB, must give the same answers.

Data: two small tables (``t`` and ``u``, joined by ``u.t_id = t.id``) with NULLs,
duplicates, mixed-case and non-ASCII text, integers, decimals, dates and timestamps.
Queries: selects of typed expressions (arithmetic, true division, CASE, COALESCE,
LOWER/UPPER/SUBSTR, concatenation, date parts, date_trunc, interval arithmetic), filters
with AND/OR/NOT, comparisons, IN/NOT IN (lists with NULL; subqueries), LIKE/ILIKE/NOT LIKE,
IS NULL, BETWEEN, EXISTS; joins of every kind; GROUP BY with aggregates and HAVING;
DISTINCT; ORDER BY with NULLs, LIMIT and OFFSET; UNION/UNION ALL/INTERSECT/EXCEPT; scalar
subqueries.

Answers are compared after ``normalise`` (the one place where documented dialect
differences are smoothed, listed in docs/QUERY.md): numbers as floats within 1e-3 (SQLite
computes decimals in floating point; MySQL rounds a quotient to four decimals), dates and
timestamps as ISO text (SQLite stores them as text), booleans as 0/1. Text columns use
each server's binary collation (PostgreSQL ``"C"``, MariaDB ``utf8mb4_nopad_bin``,
SQLite's ``BINARY``): the builder does not choose collations, the table does. Order
matters only where the query orders; the generator then orders by every output column
after its own keys, so a LIMIT picks the same rows everywhere.

A fifth test is the ternary-logic-partitioning oracle (SQLancer's) on every backend: for
any generated predicate p, the rows where p, NOT p and p IS NULL are the table, once each.

Profiles: the CI profile is derandomized (the same queries every run): four tests of 800
generated queries each (3,200 in all), plus 400 predicates through the oracle.
``DBSYSTEM_FUZZ_PROFILE=long`` (or a registered ``long`` Hypothesis profile) searches with fresh
random seeds and no time limit, for nightly runs:
``DBSYSTEM_FUZZ_PROFILE=long pytest -m differential tests/differential``.
"""

from __future__ import annotations

import datetime
import math
import os
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dbsystem import DatabaseManager, DBSystemError, NotSupportedError, PoolConfig
from dbsystem.query import (
    avg,
    case,
    col,
    count,
    date_trunc,
    exists,
    extract,
    func,
    interval,
    literal,
    max_,
    min_,
    select,
    sum_,
)
from dbsystem.query.expr import Expr
from tests.backend_params import SQL_TYPES

LONG = os.environ.get("DBSYSTEM_FUZZ_PROFILE") == "long" or (
    getattr(settings, "_current_profile", None) == "long"
)
QUERIES_PER_EXAMPLE = 20
EXAMPLES = 40  # per test; four tests of 40 * 20 queries: 3,200 queries in the CI profile

pytestmark = [pytest.mark.differential, pytest.mark.timeout(0 if LONG else 120)]

SETTINGS = settings(
    max_examples=1_000_000 if LONG else EXAMPLES,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    # CI reports the failing query with its data (the assertion says both); shrinking a
    # batch of twenty queries would take minutes. The long profile shrinks.
    phases=list(Phase) if LONG else [Phase.explicit, Phase.reuse, Phase.generate],
    report_multiple_bugs=False,
)

# -- the tables ----------------------------------------------------------------------------

TEXT = {  # binary collations: the table chooses them, as an application would
    "sqlite": "VARCHAR(20)",
    "postgres": 'VARCHAR(20) COLLATE "C"',
    "mysql": "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
}
TIMESTAMP = {"sqlite": "TIMESTAMP", "postgres": "TIMESTAMP", "mysql": "DATETIME"}


def _ddl(kind: str, t: str, u: str) -> list[str]:
    return [
        f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, d DECIMAL(8,2), "
        f"s {TEXT[kind]}, dt DATE, ts {TIMESTAMP[kind]})",
        f"CREATE TABLE {u} (id INTEGER PRIMARY KEY, t_id INTEGER, c INTEGER, s {TEXT[kind]})",
    ]


# -- generated data ------------------------------------------------------------------------

INTS = st.one_of(st.none(), st.integers(-3, 3))
DECIMALS = st.one_of(
    st.none(),
    st.sampled_from(
        [Decimal("-1.50"), Decimal("0.00"), Decimal("0.25"), Decimal("2.10"), Decimal("10.00")]
    ),
)
LETTERS = ["a", "A", "b", "B", "日", " ", "%", "_"]
TEXTS = st.one_of(st.none(), st.text(alphabet=LETTERS, max_size=3))
DAYS = [
    datetime.date(2024, 2, 29),
    datetime.date(2023, 12, 31),
    datetime.date(1969, 7, 20),
    datetime.date(2000, 1, 1),
]
DATES = st.one_of(st.none(), st.sampled_from(DAYS))
MOMENTS = [
    datetime.datetime(2024, 2, 29, 23, 59, 58),
    datetime.datetime(2023, 12, 31, 0, 0, 0),
    datetime.datetime(1969, 7, 20, 20, 17, 40),
    datetime.datetime(2000, 1, 1, 12, 30, 5),
]
TIMESTAMPS = st.one_of(st.none(), st.sampled_from(MOMENTS))

t_rows = st.lists(
    st.fixed_dictionaries(
        {"a": INTS, "b": INTS, "d": DECIMALS, "s": TEXTS, "dt": DATES, "ts": TIMESTAMPS}
    ),
    max_size=8,
)
u_rows = st.lists(
    st.fixed_dictionaries({"t_id": st.one_of(st.none(), st.integers(0, 8)), "c": INTS, "s": TEXTS}),
    max_size=6,
)

# -- generated expressions, by type --------------------------------------------------------
# Every expression is built for a source alias ("t" or "u"); columns are qualified.

COLUMNS = {
    "t": {"int": ["a", "b", "id"], "dec": ["d"], "text": ["s"], "date": ["dt"], "ts": ["ts"]},
    "u": {"int": ["c", "t_id", "id"], "dec": [], "text": ["s"], "date": [], "ts": []},
}
CONSTANTS = {
    "int": st.integers(-3, 3),
    "dec": st.sampled_from([Decimal("0.25"), Decimal("-1.50"), Decimal("2.10")]),
    "text": st.text(alphabet=LETTERS, max_size=2),
    "date": st.sampled_from(DAYS),
    "ts": st.sampled_from(MOMENTS),
}
PATTERNS = st.text(alphabet=["a", "A", "b", "日", "%", "_"], min_size=0, max_size=3)
PARTS = ["year", "month", "day", "hour", "minute", "second", "dow", "doy", "epoch"]
TRUNC_UNITS = ["year", "month", "day", "hour", "minute", "second"]
SPANS = ["years", "months", "days", "hours", "minutes", "seconds"]


def column(draw: Any, alias: str, kind: str) -> Expr | None:
    names = COLUMNS[alias][kind]
    return col(f"{alias}.{draw(st.sampled_from(names))}") if names else None


def value(draw: Any, alias: str, kind: str, depth: int = 0) -> Expr:
    """An expression of ``kind`` (int, dec, text, date, ts) over ``alias``'s columns."""
    base = column(draw, alias, kind)
    if base is None or depth > 1:
        return base if base is not None else literal(draw(CONSTANTS[kind]))
    if draw(st.integers(0, 9)) <= 3:
        return base
    options: list[Callable[[], Expr]] = []
    if kind == "int":

        def other() -> Expr:
            return value(draw, alias, "int", depth + 1)

        def small() -> Any:
            return draw(CONSTANTS["int"])

        options = [
            lambda: base + other(),
            lambda: base - other(),
            lambda: base * draw(st.integers(-2, 2)),
            lambda: base % draw(st.sampled_from([2, 3])),
            lambda: -base,
            lambda: func.coalesce(base, small()),
            lambda: func.abs(base),
            lambda: case((base > small(), other()), else_=small()),
        ]
        if alias == "t":
            options += [
                lambda: extract(draw(st.sampled_from(PARTS)), col("t.ts")),
                lambda: extract(draw(st.sampled_from(PARTS)), value(draw, "t", "ts", depth + 1)),
                lambda: extract(draw(st.sampled_from(PARTS[:3] + PARTS[6:])), col("t.dt")),
            ]
    elif kind == "dec":

        def ints() -> Expr:
            return value(draw, alias, "int", depth + 1)

        options = [
            lambda: base + ints(),
            lambda: base * draw(st.sampled_from([2, -1])),
            lambda: ints() / draw(st.sampled_from([2, 4, 5, 8])),
            lambda: base / draw(st.sampled_from([2, 4])),
            lambda: func.coalesce(base, draw(CONSTANTS["dec"])),
        ]
    elif kind == "text":
        options = [
            lambda: func.lower(base),
            lambda: func.upper(base),
            lambda: base.concat(draw(CONSTANTS["text"])),
            lambda: func.coalesce(base, draw(CONSTANTS["text"])),
            lambda: func.substr(base, draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        ]
    elif kind == "ts":
        source = st.sampled_from(["t.ts", "t.dt"]).map(col)  # names: an Expr has no ==

        def span() -> Any:
            amounts = st.integers(-40, 40)
            keys = draw(st.lists(st.sampled_from(SPANS), min_size=1, max_size=3, unique=True))
            return interval(**{key: draw(amounts) for key in keys})

        options = [
            lambda: date_trunc(draw(st.sampled_from(TRUNC_UNITS)), draw(source)),
            lambda: draw(source) + span(),
            lambda: draw(source) - span(),
        ]
    if not options:
        return base
    return draw(st.sampled_from(options))()


def predicate(draw: Any, alias: str, depth: int = 0, outer: str | None = None) -> Expr:
    """A condition over ``alias`` (and, in a correlated subquery, ``outer``)."""
    choice = draw(st.integers(0, 13 if depth < 2 else 9))
    kind = draw(st.sampled_from([k for k, names in COLUMNS[alias].items() if names]))
    left = value(draw, alias, kind)
    if choice <= 2:
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        right = literal(draw(CONSTANTS[kind])) if draw(st.booleans()) else value(draw, alias, kind)
        return {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[op]
    if choice == 3:
        return left.is_null() if draw(st.booleans()) else left.is_not_null()
    if choice == 4:
        # Up to 3 values, or more than 32: one list parameter the connection expands.
        size = draw(st.sampled_from([(1, 3), (1, 3), (33, 36)]))
        items = draw(
            st.lists(st.one_of(st.none(), CONSTANTS[kind]), min_size=size[0], max_size=size[1])
        )
        return left.in_(items) if draw(st.booleans()) else left.not_in(items)
    if choice == 5:
        low, high = draw(CONSTANTS[kind]), draw(CONSTANTS[kind])
        return left.between(low, high)
    if choice == 6:
        text = value(draw, alias, "text")
        pattern = draw(PATTERNS)
        how = draw(st.sampled_from(["like", "ilike", "not_like"]))  # names: Expr has no ==
        result: Expr = getattr(text, how)(pattern)
        return result
    if choice == 7 and outer is not None:  # correlated: compare with the outer row
        return col(f"{alias}.{draw(st.sampled_from(COLUMNS[alias]['int']))}") == col(
            f"{outer}.{draw(st.sampled_from(COLUMNS[outer]['int']))}"
        )
    if choice <= 9:
        return left == left if choice == 8 else left.is_not_null()
    if choice == 10:
        return predicate(draw, alias, depth + 1, outer) & predicate(draw, alias, depth + 1, outer)
    if choice == 11:
        return predicate(draw, alias, depth + 1, outer) | predicate(draw, alias, depth + 1, outer)
    if choice == 12:
        return ~predicate(draw, alias, depth + 1, outer)
    # A subquery on the other table: IN (uncorrelated) or EXISTS (correlated).
    other = "u" if alias == "t" else "t"
    if draw(st.booleans()):
        inner = (
            select(value(draw, other, "int").as_("x"))
            .from_(TABLES[other], alias=other)
            .where(predicate(draw, other, depth + 1))
        )
        target = value(draw, alias, "int")
        return target.in_(inner) if draw(st.booleans()) else target.not_in(inner)
    inner = (
        select(literal(1).as_("one"))
        .from_(TABLES[other], alias=other)
        .where(predicate(draw, other, depth + 1, outer=alias))
    )
    return exists(inner)


TABLES = {"t": "fz_t", "u": "fz_u"}  # set per run by the fixture (unique names)


def _ordered(draw: Any, query: Any, labels: list[str], page: bool) -> tuple[Any, bool]:
    """ORDER BY some output columns (direction, NULLs), then all of them as tie-breakers;
    LIMIT/OFFSET only when ordered."""
    if not draw(st.booleans()):
        return query, False
    for label in draw(st.lists(st.sampled_from(labels), min_size=1, max_size=2, unique=True)):
        query = query.order_by(
            label,
            draw(st.sampled_from(["asc", "desc"])),
            nulls=draw(st.sampled_from([None, "first", "last"])),
        )
    for label in labels:
        query = query.order_by(label)
    if page and draw(st.booleans()):
        query = query.limit(draw(st.integers(0, 5)))
        if draw(st.booleans()):
            query = query.offset(draw(st.integers(0, 4)))
    return query, True


@st.composite
def plain_selects(draw: Any) -> tuple[Any, bool]:
    """SELECT typed expressions FROM t [WHERE] [DISTINCT] [ORDER BY ... LIMIT/OFFSET]."""
    items = []
    for index in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["int", "dec", "text", "date", "ts"]))
        items.append(value(draw, "t", kind).as_(f"c{index}"))
    query = select(*items).from_(TABLES["t"], alias="t")
    if draw(st.booleans()):
        query = query.where(predicate(draw, "t"))
    if draw(st.integers(0, 4)) == 0:
        query = query.distinct()
    return _ordered(draw, query, [f"c{i}" for i in range(len(items))], page=True)


@st.composite
def grouped_selects(draw: Any) -> tuple[Any, bool]:
    """SELECT group keys, aggregates FROM t [WHERE] GROUP BY [HAVING] [ORDER BY ...]."""
    keys = [
        value(draw, "t", draw(st.sampled_from(["int", "text", "date"])))
        for _ in range(draw(st.integers(0, 2)))
    ]
    items: list[Any] = [key.as_(f"g{i}") for i, key in enumerate(keys)]
    aggregates: list[Expr] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["int", "dec", "text", "date"]))
        target = value(draw, "t", kind)
        choices: list[Callable[[], Expr]] = [
            lambda: count(),
            lambda t=target: count(t),
            lambda t=target: count(t, distinct=True),
            lambda t=target: min_(t),
            lambda t=target: max_(t),
        ]
        if kind in ("int", "dec"):
            choices += [lambda t=target: sum_(t), lambda t=target: avg(t)]
        aggregates.append(draw(st.sampled_from(choices))())
    items += [agg.as_(f"v{i}") for i, agg in enumerate(aggregates)]
    query = select(*items).from_(TABLES["t"], alias="t")
    if draw(st.booleans()):
        query = query.where(predicate(draw, "t"))
    if keys:
        query = query.group_by(*keys)
    if keys and draw(st.booleans()):
        having = count() > draw(st.integers(0, 2))
        if draw(st.booleans()):
            having = having | (max_(col("t.a")) == draw(CONSTANTS["int"]))
        if draw(st.booleans()):  # a grouped expression (maybe holding values) in HAVING
            having = having & keys[draw(st.integers(0, len(keys) - 1))].is_not_null()
        query = query.having(having)
    labels = [f"g{i}" for i in range(len(keys))] + [f"v{i}" for i in range(len(aggregates))]
    return _ordered(draw, query, labels, page=True)


@st.composite
def joined_selects(draw: Any) -> tuple[Any, bool]:
    """t JOIN u (inner, left, right, full, cross) with columns of both sides, or a scalar
    subquery per row."""
    kind = draw(st.sampled_from(["inner", "left", "right", "full", "cross", "scalar"]))
    query = select().from_(TABLES["t"], alias="t")
    if kind == "scalar":
        inner = (
            select(count().as_("n"))
            .from_(TABLES["u"], alias="u")
            .where((col("u.t_id") == col("t.id")) & predicate(draw, "u"))
        )
        query = query.select(col("t.id").as_("c0"), inner.as_("c1"))
        labels = ["c0", "c1"]
    else:
        on = None
        if kind != "cross":
            on = col("u.t_id") == col("t.id")
            if draw(st.booleans()):
                on = on & predicate(draw, "u")
        query = query.join(TABLES["u"], on, alias="u", kind=kind)
        query = query.select(
            value(draw, "t", draw(st.sampled_from(["int", "text"]))).as_("c0"),
            value(draw, "u", draw(st.sampled_from(["int", "text"]))).as_("c1"),
            col("u.id").as_("c2"),
        )
        labels = ["c0", "c1", "c2"]
    if draw(st.booleans()):
        query = query.where(predicate(draw, "t"))
    return _ordered(draw, query, labels, page=True)


@st.composite
def set_operations(draw: Any) -> tuple[Any, bool]:
    """SELECT x FROM t ... UNION/UNION ALL/INTERSECT/EXCEPT SELECT y FROM u ..."""
    kind = draw(st.sampled_from(["int", "text"]))
    left = select(value(draw, "t", kind).as_("c0")).from_(TABLES["t"], alias="t")
    right = select(value(draw, "u", kind).as_("c0")).from_(TABLES["u"], alias="u")
    if draw(st.booleans()):
        left = left.where(predicate(draw, "t"))
    if draw(st.booleans()):
        right = right.where(predicate(draw, "u"))
    op = draw(st.sampled_from(["union", "union_all", "intersect", "except_"]))
    return _ordered(draw, getattr(left, op)(right), ["c0"], page=True)


# -- running and comparing -----------------------------------------------------------------


def normalise(cell: Any) -> Any:
    """The one place where documented dialect differences are smoothed (docs/QUERY.md)."""
    if isinstance(cell, bool):
        return int(cell)
    if isinstance(cell, int | float | Decimal):
        return float(cell)
    if isinstance(cell, datetime.datetime):
        return cell.isoformat(" ")  # as sqlite3 stores it (text)
    if isinstance(cell, datetime.date):
        return cell.isoformat()
    return cell


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        (0, 0)
        if cell is None
        else (1, round(cell, 2))
        if isinstance(cell, float)
        else (2, str(cell))
        for cell in row
    )


def _same_cell(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-3)
    return a == b


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]], ordered: bool) -> bool:
    if len(a) != len(b):
        return False
    if not ordered:
        a, b = sorted(a, key=_sort_key), sorted(b, key=_sort_key)
    return all(
        len(x) == len(y) and all(_same_cell(p, q) for p, q in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


class Side:
    """One backend: its manager, the two tables, and how it answers a query."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.manager = DatabaseManager()
        self.manager.create_pool(SQL_TYPES[kind], PoolConfig(url=url, max_size=1))
        for ddl in _ddl(kind, TABLES["t"], TABLES["u"]):
            self.manager.execute(ddl)

    def load(self, t: list[dict[str, Any]], u: list[dict[str, Any]]) -> None:
        for table, rows in ((TABLES["t"], t), (TABLES["u"], u)):
            self.manager.execute(f"DELETE FROM {table}")
            if rows:
                self.manager.insert_many(table, [{"id": i, **r} for i, r in enumerate(rows)])

    def answer(self, query: Any) -> list[tuple[Any, ...]] | DBSystemError:
        try:
            with self.manager.connection() as conn:
                rows = query.execute(conn)
        except DBSystemError as exc:
            return exc
        return [tuple(normalise(v) for v in row.values()) for row in rows]

    def close(self) -> None:
        for table in TABLES.values():
            self.manager.execute(f"DROP TABLE IF EXISTS {table}")
        self.manager.close_all()


@pytest.fixture(scope="module")
def sides(request, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    TABLES.update(t=f"fz_t_{suffix}", u=f"fz_u_{suffix}")
    made = [Side("sqlite", f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/f.db")]
    for kind in ("postgres", "mysql"):
        made.append(Side(kind, request.getfixturevalue(f"{kind}_url")))
    yield made
    for side in made:
        side.close()


def _check(sides: list[Side], t: list[Any], u: list[Any], queries: list[Any]) -> None:
    for side in sides:
        side.load(t, u)
    for query, ordered in queries:
        answers = {side.kind: side.answer(query) for side in sides}
        usable = {k: v for k, v in answers.items() if not isinstance(v, NotSupportedError)}
        errors = {k: v for k, v in usable.items() if isinstance(v, DBSystemError)}
        sql, params = query.build(dialect="sqlite")
        where = f"\n{sql}\n{params}\nt={t}\nu={u}"
        assert not errors, f"{errors} {where}"
        reference = usable["sqlite"]
        for kind, got in usable.items():
            assert _same(got, reference, ordered), (  # type: ignore[arg-type]
                f"{kind}: {got}\nsqlite: {reference}{where}"
            )


def _fuzz(family: Any) -> Any:
    @SETTINGS
    @given(
        t=t_rows,
        u=u_rows,
        queries=st.lists(family(), min_size=QUERIES_PER_EXAMPLE, max_size=QUERIES_PER_EXAMPLE),
    )
    def run(sides: list[Side], t: list[Any], u: list[Any], queries: list[Any]) -> None:
        _check(sides, t, u, queries)

    return run


test_plain_selects = _fuzz(plain_selects)
test_grouped_selects = _fuzz(grouped_selects)
test_joins_and_subqueries = _fuzz(joined_selects)
test_set_operations = _fuzz(set_operations)


@st.composite
def where_clauses(draw: Any) -> Expr:
    return predicate(draw, "t")


@SETTINGS
@given(t=t_rows, u=u_rows, predicates=st.lists(where_clauses(), min_size=10, max_size=10))
def test_ternary_logic_partitioning(sides: list[Side], t: Any, u: Any, predicates: Any) -> None:
    """SQLancer's oracle on every backend: for any predicate p, the rows where p, where
    NOT p and where p IS NULL are together exactly the table, each row once."""
    for side in sides:
        side.load(t, u)
    everything = select(col("t.id").as_("id")).from_(TABLES["t"], alias="t")
    for p in predicates:
        for side in sides:
            parts = [side.answer(everything.where(w)) for w in (p, ~p, p.is_null())]
            assert not any(isinstance(part, DBSystemError) for part in parts), (side.kind, parts)
            ids = sorted(row for part in parts for row in part)  # type: ignore[union-attr]
            sql, params = everything.where(p).build(dialect="sqlite")
            assert ids == [(float(i),) for i in range(len(t))], (
                f"{side.kind}: {sql} {params} t={t} u={u}"
            )
