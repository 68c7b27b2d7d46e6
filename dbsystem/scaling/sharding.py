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
anything) runs on the shards that own those values; an insert sends each row to its
shard. Without the key a select runs on every shard and the rows are merged, with ORDER BY
(on plain columns), OFFSET and LIMIT applied after the merge; updates and deletes run on
every shard. Aggregates, GROUP BY and DISTINCT across shards, joins of rows on different
shards, and transactions spanning shards are not supported (``NotSupportedError``; use
``TransactionCoordinator`` for the last). Raw SQL is not routed.

Strategies: ``"hash"`` (a stable hash of the key's text, the same in every process and
release), ``"range"`` (``bounds=[100, 200]``: below 100 to shard 0, below 200 to shard 1,
the rest to shard 2), or a function of the key returning a shard index. Resharding is not
done for you; docs/SCALING.md says how to add shards with consistent hashing.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    ) -> None:
        if len(names) < 2:
            raise InterfaceError("a sharded pool needs at least two pools")
        for name in names:
            db.get_pool(db_type, name)  # each must exist
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
        """Where ``query`` would run, and why."""
        if isinstance(query, InsertQuery):
            if query._from_select is not None:
                raise NotSupportedError("INSERT ... SELECT across shards is not supported")
            owners = tuple(dict.fromkeys(self.shard_of(v) for v in self._row_keys(query)))
            return Route(owners, len(owners) > 1, f"each row by its {self.key}")
        if not isinstance(query, (SelectQuery, UpdateQuery, DeleteQuery)):
            raise NotSupportedError(f"a {type(query).__name__} cannot be routed across shards")
        values = _pinned(query._where, self.key)
        if values is None:
            return Route(tuple(self.names), True, f"no condition on {self.key}: every shard")
        owners = tuple(dict.fromkeys(self.shard_of(v) for v in values))
        return Route(owners, len(owners) > 1, f"{self.key} in {sorted(values, key=repr)!r}")

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
        if not route.fan_out:
            return self._on(route.shards[0], query)
        if isinstance(query, SelectQuery):
            return self._select_everywhere(query, route.shards)
        return sum(int(self._on(name, query)) for name in route.shards)

    def _on(self, name: str | None, query: Any) -> Any:
        with self.db.connection(self.db_type, name=name) as conn:
            return query.execute(conn)

    def _insert(self, query: InsertQuery) -> Any:
        groups: dict[str | None, list[tuple[e.Expr, ...]]] = {}
        for value, row in zip(self._row_keys(query), query._rows, strict=True):
            groups.setdefault(self.shard_of(value), []).append(row)
        results = [self._on(name, query._copy(_rows=tuple(rows))) for name, rows in groups.items()]
        if query._returning:
            return [row for result in results for row in result]
        return sum(int(result) for result in results)

    def _select_everywhere(self, query: SelectQuery, names: Sequence[str | None]) -> list[Any]:
        if _lone_count(query):  # COUNT(*) or COUNT(column): each shard's count, summed
            counts = [row for name in names for row in self._on(name, query)]
            label = next(iter(counts[0]))
            return [{label: sum(int(row[label] or 0) for row in counts)}]
        if query._group or query._having is not None or query._distinct or _aggregates(query):
            raise NotSupportedError(
                "aggregates, GROUP BY and DISTINCT across shards are not supported: "
                f"name the shard key ({self.key}) or aggregate per shard"
            )
        orders = []
        for order in query._order:
            if not isinstance(order.expr, e.Column):
                raise NotSupportedError("across shards, ORDER BY takes plain columns only")
            orders.append((order.expr.name, order.direction == "desc"))
        offset = _count(query._offset)
        limit = _count(query._limit)
        local = query._copy(_offset=None)
        if limit is not None:  # each shard's first offset + limit rows are enough
            local = local._copy(_limit=e.Value(limit + (offset or 0)))
        rows = [row for name in names for row in self._on(name, local)]
        for column, descending in reversed(orders):  # stable sorts, last key first
            rows.sort(key=_sort_key(column), reverse=descending)
        start = offset or 0
        return rows[start : start + limit] if limit is not None else rows[start:]


def _sort_key(column: str) -> Callable[[Any], tuple[bool, Any]]:
    """NULLs last, as PostgreSQL sorts them ascending."""

    def key(row: Any) -> tuple[bool, Any]:
        return row[column] is None, row[column]

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


def _lone_count(query: SelectQuery) -> bool:
    """True for a select of one COUNT (not DISTINCT) and nothing else to merge."""
    if len(query._columns) != 1 or query._group or query._having is not None:
        return False
    column = query._columns[0]
    func = column.expr if isinstance(column, e.Label) else column
    return (
        isinstance(func, e.Func)
        and func.name.lower() == "count"
        and not func.distinct
        and not query._distinct
        and query._offset is None
    )


def _aggregates(query: SelectQuery) -> bool:
    return any(_has_function(column) for column in query._columns)


def _has_function(node: Any) -> bool:
    if isinstance(node, (e.Func, e.Over)):
        return True
    inner = getattr(node, "expr", None)
    return isinstance(inner, e.Expr) and _has_function(inner)


def _pinned(where: Any, key: str) -> set[Any] | None:
    """The key's values a WHERE allows, if it pins them (``key = v``, ``key IN (...)``,
    ANDed with anything); None if any value may match."""
    if where is None:
        return None
    if isinstance(where, e.BoolOp) and where.op == "and":
        found: set[Any] | None = None
        for item in where.items:
            values = _pinned(item, key)
            if values is not None:
                found = values if found is None else found & values
        return found
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
