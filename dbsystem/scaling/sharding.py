"""``ShardedPool``: one logical database over N pools of one backend type, split by a key.

    for n in range(3):
        db.create_pool(DatabaseType.POSTGRES, f"postgresql://app@db/shop_{n}", name=f"s{n}")
    shards = ShardedPool(db, DatabaseType.POSTGRES, ["s0", "s1", "s2"], key="customer_id")
    q = shards.query()
    q.insert_into("orders").values(rows).execute()         # each row to its customer's shard
    q.select("*").from_("orders").where(col("customer_id") == 7).all()   # one shard
    q.select("*").from_("orders").order_by("id").limit(10).all()   # every shard, merged
    shards.explain_route(q.select("*").from_("orders"))    # Route(shards=[...], ...)

A builder whose WHERE pins the key (``col(key) == v``, ``col(key).in_([...])``, ANDed with
anything, or ORs of such) runs on the shards that own those values; contradictory values
(``(k == 1) & (k == 11)``) run on one shard, which finds no row. An insert sends each row to
its shard. Without the key, a select runs on every shard and the rows are merged to the
answer one database gives: ORDER BY (any expression; one not selected is fetched under a
hidden name and dropped) with the builder's NULL rule (NULLs low), OFFSET and LIMIT after
the merge (each shard sends its first OFFSET + LIMIT rows), DISTINCT, and GROUP BY with
COUNT/SUM/MIN/MAX/AVG combined per group (AVG from each shard's SUM and COUNT, in the
dialect's type and scale). Updates and deletes run on every shard.

Refused with ``NotSupportedError`` (never answered differently): HAVING, COUNT/SUM/AVG
DISTINCT and expressions of aggregates across shards; a join not on the key (``a.key =
b.key``) unless the joined table is declared ``replicated=[...]`` (held whole by every
shard); subqueries and CTEs; set operations; an update that would move a row to another
shard (a move is a delete and an insert on two shards, which one transaction cannot make
atomic: delete and re-insert instead); transactions spanning shards (use
``TransactionCoordinator``). Raw SQL is not routed. ``shards.for_user(...)`` routes the
same statements through a user session: each is access-checked with the row policies.

Strategies: ``"hash"`` (a stable hash of the key's text, the same in every process and
release), ``"range"`` (``bounds=[100, 200]``: below 100 to shard 0, below 200 to shard 1,
the rest to shard 2), or a function of the key returning a shard index. Resharding is not
done for you; docs/SCALING.md says how to add shards with consistent hashing.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from dbsystem.errors import InterfaceError, NotSupportedError, QueryBuildError
from dbsystem.kernel.types import DatabaseType
from dbsystem.query import expr as e
from dbsystem.query.sql import (
    DeleteQuery,
    InsertQuery,
    QueryFactory,
    SelectQuery,
    UpdateQuery,
    _same_values,
    select,
)

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["Route", "ShardedPool"]


@dataclass(frozen=True)
class Route:
    """Where a query runs: the shards (pool names), whether it fans out, and why."""

    shards: tuple[str | None, ...]
    fan_out: bool
    reason: str


class _ShardedFactory(QueryFactory):
    """``shards.query()``: the usual builders; their ``execute()`` goes through the router."""

    __slots__ = ()
    sharded = True


def stable_hash(value: Any) -> int:
    """A hash of ``value``'s text that every process and release agrees on."""
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "big")


class ShardedPool:
    """N pools of ``db`` (by name) holding one logical database, split by ``key``."""

    def __init__(
        self,
        db: DatabaseManager,
        db_type: DatabaseType,
        names: Sequence[str | None],
        *,
        key: str,
        strategy: str | Callable[[Any], int] = "hash",
        bounds: Sequence[Any] = (),
        replicated: Sequence[str] = (),
    ) -> None:
        if len(names) < 2:
            raise InterfaceError("a sharded pool needs at least two pools")
        for name in names:
            db.backend(db_type, name)  # each must exist (a manager's or a session's)
        if strategy == "range" and len(bounds) != len(names) - 1:
            raise InterfaceError(
                f"range sharding over {len(names)} pools needs {len(names) - 1} bounds"
            )
        if not callable(strategy) and strategy not in ("hash", "range"):
            raise InterfaceError("strategy must be 'hash', 'range' or a function")
        self.db, self.db_type, self.names = db, db_type, list(names)
        self.key = key
        self.strategy = strategy
        self.bounds = list(bounds)
        self.replicated = frozenset(replicated)

    def for_user(
        self, user: str, *, session_id: str | None = None, attrs: Mapping[str, Any] | None = None
    ) -> ShardedPool:
        """The same shards seen by ``user``: every statement routed to a shard runs through
        ``db.for_user(...)``, so each one is access-checked, audited and carries the
        user's row policies."""
        if getattr(self.db, "user_session", False):
            raise InterfaceError("this sharded pool already belongs to a user session")
        manager: Any = self.db
        session = manager.for_user(user, session_id=session_id, attrs=attrs)
        strategy = self.strategy
        return ShardedPool(
            session,
            self.db_type,
            self.names,
            key=self.key,
            strategy=strategy,
            bounds=self.bounds,
            replicated=tuple(self.replicated),
        )

    def shard_of(self, value: Any) -> str | None:
        """The pool name that owns ``value`` of the key."""
        strategy = self.strategy
        if callable(strategy):
            index = strategy(value)
        elif strategy == "range":
            index = bisect.bisect_right(self.bounds, value)
        else:
            index = stable_hash(value) % len(self.names)
        if not 0 <= index < len(self.names):
            raise InterfaceError(f"the sharding function gave {index} for {value!r}")
        return self.names[index]

    def query(self, db_type: DatabaseType | None = None, *, name: str | None = None) -> Any:
        """The query builders, routed by the key (the arguments are the manager's, for the
        ORM; a sharded pool has one type and routes by itself)."""
        return _ShardedFactory(self, self.db_type, self.names[0])  # type: ignore[arg-type]

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The backend of the shards (they share one type)."""
        return self.db.backend(self.db_type, self.names[0])

    # -- what the ORM asks of a database: entities persist to a sharded pool ---------------

    @property
    def mode(self) -> DatabaseType:
        """The shards' database type."""
        return self.db_type

    def bound_connection(
        self, db_type: DatabaseType | None = None, name: str | None = None
    ) -> None:
        """None: no transaction spans the shards, so every statement is routed."""
        return None

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a transaction cannot span shards (``TransactionCoordinator`` can, with
        two-phase commit, on the pools themselves)."""
        raise NotSupportedError(
            "transactions spanning shards are not supported; run one per shard "
            "(db.transaction(type, name=shard)) or use TransactionCoordinator"
        )

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a connection is one shard's; borrow it from the manager by name."""
        raise NotSupportedError(
            "a sharded pool lends no connection: use db.connection(type, name=shard_of(key))"
        )

    def create_tables(
        self, entities: Sequence[type[Any]], *, db_type: DatabaseType | None = None
    ) -> None:
        """Create the entities' tables on every shard (idempotent)."""
        from dbsystem.orm.schema import create_tables

        for name in self.names:
            create_tables(_OneShard(self.db, self.db_type, name), entities)  # type: ignore[arg-type]

    def drop_tables(
        self, entities: Sequence[type[Any]], *, db_type: DatabaseType | None = None
    ) -> None:
        """Drop the entities' tables on every shard, if they exist."""
        from dbsystem.orm.schema import drop_tables

        for name in self.names:
            drop_tables(_OneShard(self.db, self.db_type, name), entities)  # type: ignore[arg-type]

    # -- routing ---------------------------------------------------------------------------

    def explain_route(self, query: Any) -> Route:
        """Where ``query`` would run, and why (refusing what would answer wrong)."""
        if isinstance(query, InsertQuery):
            if query._from_select is not None:
                raise NotSupportedError("INSERT ... SELECT across shards is not supported")
            owners = tuple(dict.fromkeys(self.shard_of(v) for v in self._row_keys(query)))
            return Route(owners, len(owners) > 1, f"each row by its {self.key}")
        if not isinstance(query, (SelectQuery, UpdateQuery, DeleteQuery)):
            raise NotSupportedError(
                f"a {type(query).__name__} cannot be routed across shards "
                "(set operations: run each select and combine the rows)"
            )
        self._check_local(query)
        values = _pinned(query._where, self.key)
        if values is None:
            return Route(tuple(self.names), True, f"no condition on {self.key}: every shard")
        if not values:  # (k = 1) AND (k = 11): no row can match; one shard says so
            return Route(
                (self.names[0],), False, f"no value of {self.key} can match: one shard answers"
            )
        owners = tuple(dict.fromkeys(self.shard_of(v) for v in values))
        return Route(owners, len(owners) > 1, f"{self.key} in {sorted(values, key=repr)!r}")

    def _check_local(self, query: SelectQuery | UpdateQuery | DeleteQuery) -> None:
        """Refuse what a shard cannot answer alone: a join or subquery that would read
        rows another shard holds (see the module docstring for what is allowed)."""
        alternative = (
            f"join on the shard key ({self.key} = {self.key}), declare the table "
            "replicated=[...] if every shard holds all of it, or run one query per table "
            "and combine the rows"
        )
        nodes: list[Any] = [query._where]
        if isinstance(query, SelectQuery):
            if query._ctes:
                raise NotSupportedError("WITH (a common table expression) is not routed")
            for item in query._from:
                if not isinstance(item.source, str):
                    raise NotSupportedError("a subquery in FROM is not routed across shards")
            tables = [item.source for item in query._from]
            if len([t for t in tables if t not in self.replicated]) > 1:
                raise NotSupportedError(
                    f"several sharded tables in FROM would miss rows on other shards: {alternative}"
                )
            seen = [str(item.alias or item.source) for item in query._from]
            for join in query._joins:
                source = join.item.source
                if not isinstance(source, str):
                    raise NotSupportedError("a subquery in JOIN is not routed across shards")
                name = join.item.alias or source
                if source not in self.replicated and not _joins_on_key(
                    join.on, self.key, name, seen
                ):
                    raise NotSupportedError(
                        f"a {join.kind} join of {source!r} not on {self.key} would miss the "
                        f"rows held by other shards: {alternative}"
                    )
                seen.append(name)
                nodes.append(join.on)
            nodes += [*query._columns, *query._group, query._having, *query._order]
        else:
            nodes += list(query._returning)
            if isinstance(query, UpdateQuery):
                nodes += [value for _, value in query._set]
        for node in nodes:
            if node is not None and any(isinstance(n, e.Subquery) for n in _walk(node)):
                raise NotSupportedError(
                    "a subquery reads only its own shard's rows, so it is not routed across "
                    "shards: run it first and pass its values (in_([...]))"
                )

    def _row_keys(self, query: InsertQuery) -> list[Any]:
        if self.key not in query._columns:
            raise QueryBuildError(f"rows inserted into a sharded table need {self.key!r}")
        at = query._columns.index(self.key)
        keys = []
        for row in query._rows:
            value = row[at]
            if not isinstance(value, e.Value):
                raise QueryBuildError(f"the shard key {self.key!r} must be a plain value")
            keys.append(value.value)
        return keys

    def run(self, query: Any) -> Any:
        """Run a builder on the shards that own its rows (``execute()`` comes here)."""
        route = self.explain_route(query)
        if isinstance(query, InsertQuery):
            return self._insert(query)
        if isinstance(query, UpdateQuery):
            return self._update(query, route)
        if not route.fan_out:
            return self._on(route.shards[0], query)
        if isinstance(query, SelectQuery):
            return self._select_everywhere(query, route.shards)
        return self._sum_counts(query, route.shards)

    def _on(self, name: str | None, query: Any) -> Any:
        with self.db.connection(self.db_type, name=name) as conn:
            return query.execute(conn)

    def _sum_counts(self, query: Any, names: Sequence[str | None]) -> Any:
        results = [self._on(name, query) for name in names]
        if query._returning:
            return [row for result in results for row in result]
        return sum(int(result) for result in results)

    def _insert(self, query: InsertQuery) -> Any:
        groups: dict[str | None, list[tuple[e.Expr, ...]]] = {}
        for value, row in zip(self._row_keys(query), query._rows, strict=True):
            groups.setdefault(self.shard_of(value), []).append(row)
        results = [self._on(name, query._copy(_rows=tuple(rows))) for name, rows in groups.items()]
        if query._returning:
            return [row for result in results for row in result]
        return sum(int(result) for result in results)

    def _update(self, query: UpdateQuery, route: Route) -> Any:
        """An update; one that sets the shard key runs only where no row would change shard.

        Moving a row is a delete on one shard and an insert on another, which one shard's
        transaction cannot make atomic (SQLite has no two-phase commit), so it is refused
        before anything is written: delete and re-insert the rows yourself (in a
        ``TransactionCoordinator`` block where the backend supports it).
        """
        new_key = [value for column, value in query._set if column == self.key]
        if not new_key:
            return self._sum_counts(query, route.shards)
        value = new_key[-1]
        if not isinstance(value, (e.Value, type(e.NULL))):
            raise NotSupportedError(
                f"setting the shard key {self.key!r} to an expression would move rows between "
                "shards: delete and re-insert them instead"
            )
        owner = self.shard_of(value.value if isinstance(value, e.Value) else None)
        probe = select(e.literal(1).as_("moved")).from_(query._table)
        probe = probe._copy(_where=query._where).limit(1)
        for name in route.shards:
            if name != owner and self._on(name, probe):
                raise NotSupportedError(
                    f"setting the shard key {self.key!r} would move rows from shard {name!r} "
                    f"to {owner!r}; a move is not atomic across shards, so nothing was "
                    "changed: delete the rows and insert them with the new key"
                )
        if owner not in route.shards:
            return [] if query._returning else 0
        return self._sum_counts(query, (owner,))

    # -- fan-out selects: the shards' rows merged as one database would answer ----------

    def _select_everywhere(self, query: SelectQuery, names: Sequence[str | None]) -> list[Any]:
        if query._group or query._having is not None or _aggregates(query):
            return self._aggregate_everywhere(query, names)
        orders, local, hidden = _order_keys(query)
        if query._distinct and hidden:
            raise NotSupportedError(
                "SELECT DISTINCT ordered by a column it does not select is refused across "
                "shards (PostgreSQL refuses it too): select the column"
            )
        offset = _count(query._offset) or 0
        limit = _count(query._limit)
        local = local._copy(_offset=None, _limit=None)
        if limit is not None and (orders or not query._distinct):
            # Each shard's first offset + limit rows are enough for the merged page.
            local = local._copy(_limit=e.Value(limit + offset))
        rows = [row for name in names for row in self._on(name, local)]
        if query._distinct:
            rows = _unique(rows)
        return _page(rows, orders, offset, limit, hidden)

    def _aggregate_everywhere(self, query: SelectQuery, names: Sequence[str | None]) -> list[Any]:
        """GROUP BY and COUNT/SUM/MIN/MAX/AVG across shards: each shard's partial results,
        combined per group (AVG from each shard's SUM and COUNT)."""
        if query._having is not None:
            raise NotSupportedError(
                "HAVING across shards is not supported: filter the merged groups yourself, "
                f"or name the shard key ({self.key}) so that one shard answers"
            )
        width = len(query._columns)
        plan: list[tuple[str, int | None]] = []  # per select item: how to merge, extra column
        extra: list[e.Expr] = []
        groups: list[int] = []  # select items that are group expressions
        for index, item in enumerate(query._columns):
            inner = item.expr if isinstance(item, e.Label) else item
            kind = _merge_kind(inner, query._group)
            if kind is None:
                raise NotSupportedError(
                    "across shards, a grouped select takes GROUP BY expressions and COUNT, "
                    "SUM, MIN, MAX or AVG of expressions (not DISTINCT, not expressions of "
                    f"aggregates): {self.key!r} in the WHERE runs it on one shard"
                )
            at: int | None = None
            if kind == "avg":
                assert isinstance(inner, e.Func)
                at = width + len(extra)
                extra += [
                    e.Func("sum", inner.args).as_(f"_shard_{at}"),
                    e.Func("count", inner.args).as_(f"_shard_{at + 1}"),
                ]
            if kind == "group":
                groups.append(index)
            plan.append((kind, at))
        group_at: list[int] = []
        for group in query._group:
            found = _matching(query._columns, group)
            if found is None:
                found = width + len(extra)
                extra.append(group.as_(f"_shard_{found}"))
            group_at.append(found)
        local = query._copy(_columns=query._columns + tuple(extra))
        local = local._copy(_order=(), _limit=None, _offset=None)
        merged: dict[tuple[Any, ...], list[Any]] = {}
        labels: list[str] = []
        for name in names:
            for row in self._on(name, local):
                values = list(row.values())
                if len(values) != width + len(extra):
                    raise NotSupportedError(
                        "two select items share one name: name each with as_() to merge them "
                        "across shards"
                    )
                labels = list(row)
                group_key = tuple(values[i] for i in group_at)
                found_row = merged.get(group_key)
                if found_row is None:
                    merged[group_key] = values
                else:
                    _combine(found_row, values, plan)
        rows = []
        for values in merged.values():
            for index, (kind, at) in enumerate(plan):
                if kind == "avg":
                    assert at is not None
                    values[index] = _average(values[at], values[at + 1], self.db_type)
            rows.append(dict(zip(labels[:width], values[:width], strict=True)))
        orders = []
        for order in query._order:
            found = _matching(query._columns, order.expr)
            if found is None:
                raise NotSupportedError(
                    "across shards, a grouped select is ordered by its select items only"
                )
            orders.append((labels[found] if labels else "", order))
        if query._distinct:
            rows = _unique(rows)
        return _page(rows, orders, _count(query._offset) or 0, _count(query._limit), ())


_AGGREGATES = ("count", "sum", "min", "max", "avg")


def _merge_kind(node: e.Expr, group: Sequence[e.Expr]) -> str | None:
    """How a select item merges across shards: ``group`` (a GROUP BY expression), an
    aggregate's name, or None when it cannot be merged."""
    if any(node._key == g._key and _same_values(node._values, g._values) for g in group):
        return "group"
    if not isinstance(node, e.Func) or node.name.lower() not in _AGGREGATES:
        return None
    name = node.name.lower()
    if node.distinct and name not in ("min", "max"):
        return None  # COUNT/SUM/AVG(DISTINCT x): shards may hold the same value
    if any(_has_function(arg, only=_AGGREGATES) for arg in node.args):
        return None
    return name


def _matching(columns: Sequence[e.Expr], node: e.Expr) -> int | None:
    """The index of the select item that is ``node`` (or is labelled as ``node`` names)."""
    for index, item in enumerate(columns):
        inner = item.expr if isinstance(item, e.Label) else item
        if inner._key == node._key and _same_values(inner._values, node._values):
            return index
        if (
            isinstance(item, e.Label)
            and isinstance(node, e.Column)
            and node.table is None
            and node.name == item.name
        ):
            return index
    return None


def _combine(into: list[Any], values: list[Any], plan: Sequence[tuple[str, int | None]]) -> None:
    for index, (kind, at) in enumerate(plan):
        if kind == "count":
            into[index] = (into[index] or 0) + (values[index] or 0)
        elif kind == "sum":
            into[index] = _add(into[index], values[index])
        elif kind == "min":
            into[index] = _pick(into[index], values[index], min)
        elif kind == "max":
            into[index] = _pick(into[index], values[index], max)
        elif kind == "avg":
            assert at is not None
            into[at] = _add(into[at], values[at])
            into[at + 1] = (into[at + 1] or 0) + (values[at + 1] or 0)


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _pick(a: Any, b: Any, choose: Callable[[Any, Any], Any]) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


def _average(total: Any, count: Any, db_type: DatabaseType) -> Any:
    """SUM / COUNT as the dialect's AVG gives it: a float on SQLite and for floats; else a
    Decimal with the dialect's scale (MySQL: the sum's scale + 4; PostgreSQL: at least 16
    significant digits, its numeric division rule), rounded half away from zero."""
    if not count or total is None:
        return None
    if isinstance(total, float) or db_type == DatabaseType.SQLITE:
        return float(total) / int(count)
    total = Decimal(total)
    scale = max(0, -int(total.as_tuple().exponent))
    if db_type == DatabaseType.POSTGRES:
        scale = max(scale, _pg_division_scale(total, Decimal(int(count))))
    else:
        scale += 4
    with localcontext() as context:
        context.prec = 1000
        quotient = total / Decimal(int(count))
        return quotient.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def _pg_division_scale(dividend: Decimal, divisor: Decimal) -> int:
    """PostgreSQL's ``select_div_scale``: the result scale of numeric division, from the
    operands' weights and first digits in base 10,000."""

    def weight_and_first(value: Decimal) -> tuple[int, int]:
        value = abs(value)
        if value == 0:
            return 0, 0
        weight = 0
        while value >= 10000:
            value /= 10000
            weight += 1
        while value < 1:
            value *= 10000
            weight -= 1
        return weight, int(value)

    weight1, first1 = weight_and_first(dividend)
    weight2, first2 = weight_and_first(divisor)
    qweight = weight1 - weight2
    if first1 <= first2:
        qweight -= 1
    return min(max(16 - qweight * 4, 0), 1000)


def _unique(rows: list[Any]) -> list[Any]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for row in rows:
        marker = tuple(row.values())
        if marker not in seen:
            seen.add(marker)
            out.append(row)
    return out


_Orders = list[tuple[str, e.Order]]


def _order_keys(query: SelectQuery) -> tuple[_Orders, SelectQuery, tuple[str, ...]]:
    """The row key each ORDER BY item sorts on; an item that is not selected is added to
    the shards' select list under a hidden name, removed after the merge."""
    orders: list[tuple[str, e.Order]] = []
    extra: list[e.Expr] = []
    for order in query._order:
        found = _matching(query._columns, order.expr)
        item = query._columns[found] if found is not None else None
        if isinstance(item, e.Label):
            orders.append((item.name, order))
        elif isinstance(item, e.Column) and item.name != "*":
            orders.append((item.name, order))
        else:
            name = f"_shard_order_{len(extra)}"
            extra.append(order.expr.as_(name))
            orders.append((name, order))
    local = query._copy(_columns=query._columns + tuple(extra)) if extra else query
    return orders, local, tuple(x.name for x in extra if isinstance(x, e.Label))


def _page(
    rows: list[Any],
    orders: Sequence[tuple[str, e.Order]],
    offset: int,
    limit: int | None,
    hidden: Sequence[str],
) -> list[Any]:
    """Sort as the builder orders (NULLs low unless ``nulls=`` says otherwise), then
    OFFSET and LIMIT, then drop the hidden order columns."""
    for name, order in reversed(orders):  # stable sorts, last key first
        rows.sort(key=_sort_key(name, order), reverse=order.direction == "desc")
    page = rows[offset : offset + limit] if limit is not None else rows[offset:]
    if hidden:
        page = [{k: v for k, v in row.items() if k not in hidden} for row in page]
    return page


def _sort_key(column: str, order: e.Order) -> Callable[[Any], tuple[int, Any]]:
    """The builder's NULL rule: NULLs first ascending, last descending, unless ``nulls``."""
    descending = order.direction == "desc"
    nulls_first = order.nulls == "first" if order.nulls is not None else not descending
    # The sort is reversed for DESC: a NULL must then rank high to come first.
    null_rank = 1 if nulls_first == descending else 0

    def key(row: Any) -> tuple[int, Any]:
        value = row[column]
        if value is None:
            return null_rank, 0
        return 1 - null_rank, value

    return key


def _count(node: Any) -> int | None:
    if node is None:
        return None
    if isinstance(node, e.Value) and isinstance(node.value, int):
        return node.value
    raise NotSupportedError("across shards, LIMIT and OFFSET must be plain numbers")


class _OneShard:
    """One shard's pool seen as a database, for the schema functions."""

    def __init__(self, db: DatabaseManager, db_type: DatabaseType, name: str | None) -> None:
        self.db, self.mode, self.name = db, db_type, name

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        return self.db.backend(self.mode, self.name)

    def connection(self, db_type: DatabaseType | None = None, **kwargs: Any) -> Any:
        return self.db.connection(self.mode, name=self.name)

    def query(self, db_type: DatabaseType | None = None, *, name: str | None = None) -> Any:
        manager: Any = self.db  # the public manager, whose query() the builders add
        return manager.query(self.mode, name=self.name)


def _aggregates(query: SelectQuery) -> bool:
    return any(_has_function(column, only=_AGGREGATES) for column in query._columns)


def _has_function(node: Any, only: Sequence[str] | None = None) -> bool:
    """Whether ``node`` calls a function (of the names ``only``, if given) or a window."""
    for part in _walk(node):
        if isinstance(part, e.Over):
            return True
        if isinstance(part, e.Func) and (only is None or part.name.lower() in only):
            return True
    return False


def _walk(node: Any) -> Any:
    """``node`` and every expression inside it (not inside subqueries)."""
    if isinstance(node, e.Expr):
        yield node
        for cls in type(node).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if slot in ("_key", "_values"):
                    continue
                yield from _walk(getattr(node, slot, None))
    elif isinstance(node, tuple):
        for item in node:
            yield from _walk(item)


def _joins_on_key(on: Any, key: str, joined: str, earlier: Sequence[str]) -> bool:
    """Whether ``on`` requires ``joined.key = other.key`` for an earlier table (ANDed with
    anything): rows that match then live on the same shard."""
    if isinstance(on, e.BoolOp) and on.op == "and":
        return any(_joins_on_key(item, key, joined, earlier) for item in on.items)
    if not (isinstance(on, e.Compare) and on.op == "="):
        return False
    left, right = on.left, on.right
    if not (isinstance(left, e.Column) and isinstance(right, e.Column)):
        return False
    if left.name != key or right.name != key:
        return False
    tables = {left.table, right.table}
    return joined in tables and any(t in earlier for t in tables - {joined})


def _pinned(where: Any, key: str) -> set[Any] | None:
    """The key's values a WHERE allows, if it pins them (``key = v``, ``key IN (...)``,
    ANDed with anything, or ORs of such); None if any value may match. An empty set: no
    value can match."""
    if where is None:
        return None
    if isinstance(where, e.BoolOp) and where.op == "and":
        found: set[Any] | None = None
        for item in where.items:
            values = _pinned(item, key)
            if values is not None:
                if found is None:
                    found = values
                else:  # compared as the shard function sees them (1 and "1" agree)
                    texts = {str(v) for v in values}
                    found = {v for v in found if str(v) in texts}
        return found
    if isinstance(where, e.BoolOp) and where.op == "or":
        union: set[Any] = set()
        for item in where.items:
            values = _pinned(item, key)
            if values is None:
                return None
            union |= values
        return union
    if isinstance(where, e.Compare) and where.op == "=":
        for column, value in ((where.left, where.right), (where.right, where.left)):
            if isinstance(column, e.Column) and column.name == key and isinstance(value, e.Value):
                return {value.value}
    if (
        isinstance(where, e.In)
        and not where.negate
        and where.subquery is None
        and isinstance(where.expr, e.Column)
        and where.expr.name == key
        and all(isinstance(item, e.Value) for item in where.items)
    ):
        return {item.value for item in where.items}  # type: ignore[attr-defined]
    return None
