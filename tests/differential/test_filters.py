"""One filter language, one answer: generated filters on generated rows, run on SQLite and
MongoDB (mongomock), and on PostgreSQL and MariaDB when their URLs are set; the sets of row
ids must be equal (issue 21).

Rows hold small integers, NULLs and (on MongoDB) missing fields, which SQL sees as NULL.
Filters combine comparisons (with values, NULL and other fields), IS [NOT] NULL, [NOT] IN
(with NULL among the items), BETWEEN, AND, OR and NOT. A second property is the
ternary-logic-partitioning oracle (SQLancer's): for any predicate p, the rows where p, where
NOT p, and where p IS NULL are disjoint and together the whole table.

Fixed seed (``derandomize``) and a bounded number of examples: the same cases every run, in
well under a minute. ``--hypothesis-seed`` and a larger ``max_examples`` search further.
"""

from __future__ import annotations

import operator
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.query import col
from dbsystem.query.expr import Expr
from dbsystem.query.mongo import compile_filter
from tests.backend_params import SQL_TYPES

pytestmark = pytest.mark.differential

FIELDS = ("a", "b")
MISSING = "missing"  # the field is absent from the MongoDB document (NULL in SQL)
SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- generated data -------------------------------------------------------------------------

cells = st.one_of(st.integers(0, 3), st.none(), st.just(MISSING))
tables = st.lists(st.fixed_dictionaries(dict.fromkeys(FIELDS, cells)), min_size=0, max_size=8)
values = st.one_of(st.integers(0, 3), st.none())
fields = st.sampled_from(FIELDS)
comparisons = st.sampled_from(
    [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]
)


def _compare(field: str, compare: Any, value: Any) -> Expr:
    return compare(col(field), value)


atoms = st.one_of(
    st.builds(_compare, fields, comparisons, st.integers(0, 3)),
    # == None and != None are IS NULL and IS NOT NULL; < None is refused everywhere.
    st.builds(_compare, fields, st.sampled_from([operator.eq, operator.ne]), st.none()),
    st.builds(lambda f, c, g: c(col(f), col(g)), fields, comparisons, fields),
    st.builds(lambda f: col(f).is_null(), fields),
    st.builds(lambda f: col(f).is_not_null(), fields),
    st.builds(lambda f, v: col(f).in_(v), fields, st.lists(values, min_size=1, max_size=3)),
    st.builds(lambda f, v: col(f).not_in(v), fields, st.lists(values, min_size=1, max_size=3)),
    # More than 32 values: bound as one list, expanded (or = ANY) by the connection.
    st.builds(lambda f, v: col(f).in_(v), fields, st.lists(values, min_size=33, max_size=36)),
    st.builds(
        lambda f, v: col(f).not_in(v), fields, st.lists(st.integers(0, 3), min_size=33, max_size=36)
    ),
    st.builds(
        lambda f, lo, hi: col(f).between(lo, hi), fields, st.integers(0, 3), st.integers(0, 3)
    ),
)
predicates = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(operator.and_, inner, inner),
        st.builds(operator.or_, inner, inner),
        st.builds(operator.invert, inner),
    ),
    max_leaves=6,
)

# -- backends -------------------------------------------------------------------------------


class SQLSide:
    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.manager = DatabaseManager()
        self.manager.create_pool(SQL_TYPES[kind], PoolConfig(url=url, max_size=1))
        self.table = f"diff_{uuid.uuid4().hex[:8]}"
        self.manager.execute(
            f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)"
        )

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.manager.execute(f"DELETE FROM {self.table}")
        if rows:
            self.manager.insert_many(
                self.table,
                [
                    {"id": i, **{f: None if r[f] == MISSING else r[f] for f in FIELDS}}
                    for i, r in enumerate(rows)
                ],
            )

    def ids(self, predicate: Expr) -> set[int]:
        query = self.manager.query().select("id").from_(self.table).where(predicate)
        return {row["id"] for row in query.all()}

    def close(self) -> None:
        self.manager.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.manager.close_all()


class MongoSide:
    kind = "mongomock"

    def __init__(self) -> None:
        self.manager = DatabaseManager()
        self.manager.create_pool(DatabaseType.MONGODB, PoolConfig(url="mongodb+mock://"))
        self.collection = self.manager.query(DatabaseType.MONGODB).collection("diff")

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.collection.all_documents().delete_many().execute()
        documents = [
            {"id": i, **{f: r[f] for f in FIELDS if r[f] != MISSING}} for i, r in enumerate(rows)
        ]
        if documents:
            self.collection.insert_many(documents).execute()

    def ids(self, predicate: Expr) -> set[int]:
        return {doc["id"] for doc in self.collection.where(predicate).project("id").all()}

    def close(self) -> None:
        self.manager.close_all()


@pytest.fixture(scope="module")
def sides(request, tmp_path_factory):
    made: list[Any] = [SQLSide("sqlite", f"sqlite:///{tmp_path_factory.mktemp('d')}/d.db")]
    made.append(MongoSide())
    for kind in ("postgres", "mysql"):
        try:
            url = request.getfixturevalue(f"{kind}_url")
        except pytest.skip.Exception:
            continue
        made.append(SQLSide(kind, url))
    yield made
    for side in made:
        side.close()


def _describe(predicate: Expr) -> str:
    from dbsystem.query import select

    sql, params = select("id").from_("t").where(predicate).build(dialect="sqlite")
    return f"{sql} {params}\nmongo: {compile_filter(predicate)}"


@SETTINGS
@given(rows=tables, filters=st.lists(predicates, min_size=1, max_size=6))
def test_every_backend_returns_the_same_rows(sides, rows, filters):
    for side in sides:
        side.load(rows)
    reference = sides[0]
    for predicate in filters:
        expected = reference.ids(predicate)
        for side in sides[1:]:
            got = side.ids(predicate)
            assert got == expected, (
                f"{side.kind} returned {sorted(got)}, sqlite {sorted(expected)} for rows "
                f"{rows}\n{_describe(predicate)}"
            )


@SETTINGS
@given(rows=tables, predicate=predicates)
def test_ternary_logic_partitioning_on_sqlite(sides, rows, predicate):
    sqlite = sides[0]
    sqlite.load(rows)
    true, false, unknown = (
        sqlite.ids(predicate),
        sqlite.ids(~predicate),
        sqlite.ids(predicate.is_null()),
    )
    assert not (true & false) and not (true & unknown) and not (false & unknown), _describe(
        predicate
    )
    assert true | false | unknown == set(range(len(rows))), _describe(predicate)


@SETTINGS
@given(rows=tables, predicate=predicates)
def test_not_p_on_mongodb_is_sqls_not_p(sides, rows, predicate):
    """NOT p, where MongoDB's own $nor would also match the rows where p is UNKNOWN."""
    sqlite, mongo = sides[0], sides[1]
    for side in (sqlite, mongo):
        side.load(rows)
    assert mongo.ids(~predicate) == sqlite.ids(~predicate), _describe(~predicate)
