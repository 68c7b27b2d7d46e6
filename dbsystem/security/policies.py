"""Row-level policies: a grant's row predicate applied to the builders of a user session.

    acl.create_role(Role(
        "tenant_user",
        grants={"orders": "SELECT|INSERT|UPDATE|DELETE"},
        policies={"orders": lambda ctx: col("tenant_id") == ctx.attrs["tenant"]},
    ))
    session = db.for_user("ann", attrs={"tenant": 7})
    session.query().select().from_("orders").all()          # ... WHERE tenant_id = 7

The predicate is the backend-neutral filter language, so one policy serves SQL (a WHERE)
and MongoDB (a filter document). It is ANDed into every select, update, delete, count and
find on the table; every inserted row, and every update that sets a policy column, must
satisfy it (evaluated here, before the round trip). Where the predicate cannot be applied
faithfully (right and full joins, subqueries, set operations, upserts, INSERT ... SELECT,
aggregation pipelines, raw SQL or raw MongoDB operations on the table), the statement is
denied: the policy fails closed. Inner, left and cross joins carry each joined table's
policy, qualified by its alias. A role granting the table without a policy leaves the user
unrestricted on it; two roles with policies give the rows either allows (OR).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import reduce
from typing import Any

from dbsystem.errors import PermissionDenied
from dbsystem.query import expr as e

__all__ = ["restrict_mongo", "restrict_query", "restrict_sql"]


def _access_control(conn: Any) -> Any:
    from dbsystem.security.rbac import AccessControl

    for hook in conn._pool.hooks.hooks:
        if isinstance(hook, AccessControl):
            return hook
    return None


def _session(conn: Any) -> tuple[Any, Any] | None:
    """(access control, session context) if this connection's statements need policies."""
    context = getattr(conn, "_context", None)
    if context is None:
        return None
    acl = _access_control(conn)
    if acl is None or not acl.has_policies(context.user):
        return None
    return acl, context


def _deny(conn: Any, table: str, why: str) -> PermissionDenied:
    backend = getattr(conn, "backend", None) or getattr(conn, "_backend", None)
    return PermissionDenied(
        f"a row policy applies to {table!r}: {why}", backend=getattr(backend, "name", None)
    )


def restrict_query(query: Any, conn: Any) -> tuple[Any, bool]:
    """A SQL or MongoDB builder with the session's row policies applied, and whether any
    applied: ``AccessControl.restrict``, which the builders reach through the hook chain."""
    from dbsystem.query.mongo import CollectionQuery

    if isinstance(query, CollectionQuery):
        return restrict_mongo(query, conn)
    return restrict_sql(query, conn)


def restrict_sql(query: Any, conn: Any) -> tuple[Any, bool]:
    """The query with the session's row policies applied, and whether any applied."""
    found = _session(conn)
    if found is None:
        return query, False
    acl, context = found
    from dbsystem.query.sql import DeleteQuery, InsertQuery, SelectQuery, UpdateQuery

    compiled = query.compiled(conn.backend.dialect)
    action, resources = compiled.action, compiled.resources
    ruled = [t for t in resources if acl.policy_applies(context.user, action, t)]
    ruled += [
        t for t in resources if t not in ruled and acl.policy_applies(context.user, "select", t)
    ]
    if not ruled:
        return query, False
    if isinstance(query, SelectQuery):
        return _restrict_select(query, conn, acl, context, ruled, resources), True
    if isinstance(query, (UpdateQuery, DeleteQuery, InsertQuery)):
        table = query._table
        if tuple(resources) != (table,):
            raise _deny(conn, ruled[0], "the statement reads other tables")
        predicate = acl.row_filter(context, action, table)
        if predicate is None:
            return query, True
        if isinstance(query, InsertQuery):
            if query._from_select is not None or query._upsert is not None:
                raise _deny(conn, table, "INSERT ... SELECT and upserts cannot be checked")
            for row in query._rows:
                values = {c: _bound(v) for c, v in zip(query._columns, row, strict=True)}
                _check_row(conn, table, predicate, values)
            return query, True
        if isinstance(query, UpdateQuery):
            _check_assignments(conn, table, predicate, dict(query._set))
        return query.where(predicate), True
    raise _deny(conn, ruled[0], f"a {type(query).__name__} cannot carry it")


def _restrict_select(
    query: Any, conn: Any, acl: Any, context: Any, ruled: list[str], resources: tuple[str, ...]
) -> Any:
    """A select over tables joined by inner, left or cross joins, each table's policy applied.

    A single table takes its predicate as written. With joins each predicate is qualified by
    its table's alias (or name): a FROM table's goes into WHERE, an inner or left join's into
    its ON (so a left join still keeps the rows of the left side, without the joined rows the
    policy hides), a cross join's into WHERE. Right and full joins keep rows of both sides
    whatever ON says, CTEs and subqueries hide the tables they read: those are denied.
    """
    from dbsystem.query.sql import Join

    items = [*query._from, *(join.item for join in query._joins)]
    if (
        not query._from
        or query._ctes
        or not all(isinstance(item.source, str) for item in items)
        or set(resources) != {item.source for item in items}
        or _has_subquery(query.shape())  # (one can read a policy table the WHERE hides)
    ):
        raise _deny(conn, ruled[0], "subqueries, CTEs and set operations cannot carry it")
    if not query._joins and len(query._from) == 1:
        predicate = acl.row_filter(context, "select", ruled[0])
        return query if predicate is None else query.where(predicate)

    def qualified(item: Any) -> e.Expr | None:
        predicate = acl.row_filter(context, "select", item.source)
        if predicate is None:
            return None
        try:
            return _qualify(predicate, item.alias or item.source)
        except _Unknown:
            raise _deny(conn, item.source, "its predicate cannot be qualified for a join") from None

    restricted = query
    for item in query._from:
        predicate = qualified(item)
        if predicate is not None:
            restricted = restricted.where(predicate)
    joins = []
    for join in query._joins:
        predicate = qualified(join.item)
        if predicate is not None:
            if join.kind in ("right", "full"):
                raise _deny(conn, join.item.source, f"a {join.kind} join cannot carry it")
            if join.kind == "cross":
                restricted = restricted.where(predicate)
            else:
                join = Join(join.kind, join.item, join.on & predicate)
        elif join.kind in ("right", "full") and any(
            qualified(item) is not None for item in query._from
        ):
            raise _deny(conn, ruled[0], f"a {join.kind} join cannot carry it")
        joins.append(join)
    return restricted._copy(_joins=tuple(joins))


def _has_subquery(shape: Any) -> bool:
    """True if a query's shape holds a subquery anywhere (select list, WHERE, HAVING...)."""
    if not isinstance(shape, tuple):
        return False
    if shape and shape[0] == "subquery":
        return True
    return any(_has_subquery(part) for part in shape)


def _qualify(node: Any, table: str) -> e.Expr:
    """The predicate with its unqualified columns qualified by ``table``."""
    if isinstance(node, e.Column):
        return node if node.table is not None else e.Column(node.name, table)
    if isinstance(node, e.Value) or node is e.NULL:
        return node
    if isinstance(node, e.Compare):
        return e.Compare(node.op, _qualify(node.left, table), _qualify(node.right, table))
    if isinstance(node, e.BoolOp):
        return e.BoolOp(node.op, [_qualify(item, table) for item in node.items])
    if isinstance(node, e.Unary):
        return e.Unary(node.op, _qualify(node.operand, table))
    if isinstance(node, e.Arith):
        return e.Arith(node.op, _qualify(node.left, table), _qualify(node.right, table))
    if isinstance(node, e.Like):
        return e.Like(
            _qualify(node.expr, table),
            _qualify(node.pattern, table),
            insensitive=node.insensitive,
            negate=node.negate,
        )
    if isinstance(node, e.In) and node.subquery is None:
        return e.In(
            _qualify(node.expr, table), [_qualify(i, table) for i in node.items], negate=node.negate
        )
    if isinstance(node, e.Between):
        return e.Between(
            _qualify(node.expr, table), _qualify(node.low, table), _qualify(node.high, table)
        )
    raise _Unknown


def restrict_mongo(query: Any, conn: Any) -> tuple[Any, bool]:
    """A MongoDB collection query with the session's row policies applied."""
    found = _session(conn)
    if found is None:
        return query, False
    acl, context = found
    from dbsystem.backends.mongodb import operation_action

    op, collection = query._op, query._collection
    if op == "bulk_write":
        return _restrict_bulk(query, conn, acl, context)
    action = operation_action(op)
    if not acl.policy_applies(context.user, action, collection):
        return query, False
    predicate = acl.row_filter(context, action, collection)
    if predicate is None:
        return query, True
    if op in ("insert_one", "insert_many"):
        docs = [query._args["document"]] if op == "insert_one" else query._args["documents"]
        for doc in docs:
            _check_row(conn, collection, predicate, _Document(doc))
        return query, True
    if op in (
        "find",
        "count",
        "distinct",
        "update_one",
        "update_many",
        "delete_one",
        "delete_many",
        "replace_one",
    ):
        if query._args.get("upsert"):
            raise _deny(conn, collection, "upserts cannot be checked")
        _check_mongo_write(conn, collection, predicate, op, query._args)
        return query._copy(_filter=_mongo_and(query._filter, predicate)), True
    raise _deny(conn, collection, f"{op} cannot carry it")


def _mongo_and(flt: Any, predicate: e.Expr) -> dict[str, Any]:
    from dbsystem.query.mongo import compile_filter

    policy = compile_filter(predicate)
    return {"$and": [flt, policy]} if flt else policy


def _check_mongo_write(
    conn: Any, collection: str, predicate: e.Expr, op: str, args: Mapping[str, Any]
) -> None:
    """A replacement must satisfy the policy; an update may not move a document out."""
    if op == "replace_one":
        _check_row(conn, collection, predicate, _Document(args["replacement"]))
    elif op.startswith("update"):
        _check_mongo_update(conn, collection, predicate, args["update"])


def _restrict_bulk(query: Any, conn: Any, acl: Any, context: Any) -> tuple[Any, bool]:
    """``bulk_write``: each request checked and filtered as its single operation is."""
    import copy

    from dbsystem.backends.mongodb import operation_action

    collection = query._collection
    requests, ops, applied = [], [], False
    for request, entry in zip(query._args["requests"], query._args["ops"], strict=True):
        op = entry["op"]
        action = operation_action(op)
        if not acl.policy_applies(context.user, action, collection):
            requests.append(request)
            ops.append(entry)
            continue
        applied = True
        predicate = acl.row_filter(context, action, collection)
        if predicate is None:
            requests.append(request)
            ops.append(entry)
            continue
        if op == "insert_one":
            _check_row(conn, collection, predicate, _Document(entry["document"]))
            requests.append(request)
            ops.append(entry)
            continue
        if entry.get("upsert"):
            raise _deny(conn, collection, "upserts cannot be checked")
        args = {"update": entry.get("u"), "replacement": entry.get("u")}
        _check_mongo_write(conn, collection, predicate, op, args)
        restricted = copy.copy(request)
        restricted._filter = _mongo_and(entry["q"], predicate)
        requests.append(restricted)
        ops.append({**entry, "q": restricted._filter})
    if not applied:
        return query, False
    return query._copy(_args={**query._args, "requests": requests, "ops": ops}), True


def combine(predicates: list[e.Expr]) -> e.Expr:
    """Several policies allow the rows any of them allows."""
    return reduce(lambda a, b: a | b, predicates)


# -- evaluating a predicate on a row, before it is written ----------------------------------


class _Unknown(Exception):
    """The predicate needs something a row in hand cannot answer."""


def _bound(node: Any) -> Any:
    if isinstance(node, e.Value):
        return node.value
    if node is e.NULL:
        return None
    raise _Unknown


def _columns(node: Any, *, paths: bool = False) -> set[str]:
    """The columns a predicate reads; ``paths``: as MongoDB field paths (``meta.tenant``)."""
    if isinstance(node, e.Column):
        return {f"{node.table}.{node.name}" if paths and node.table else node.name}
    found: set[str] = set()
    for name in ("left", "right", "operand", "expr"):
        child = getattr(node, name, None)
        if isinstance(child, e.Expr):
            found |= _columns(child, paths=paths)
    for item in getattr(node, "items", None) or ():
        found |= _columns(item, paths=paths)
    return found


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b and a is not None and b is not None,
    "<": lambda a, b: a is not None and b is not None and a < b,
    "<=": lambda a, b: a is not None and b is not None and a <= b,
    ">": lambda a, b: a is not None and b is not None and a > b,
    ">=": lambda a, b: a is not None and b is not None and a >= b,
    "is": lambda a, b: a is b,
    "is not": lambda a, b: a is not b,
}


class _Document:
    """A MongoDB document as ``_evaluate`` reads it: a policy column is a field path
    (``col("meta.tenant")`` is ``meta.tenant``), looked up in the nested documents with
    MongoDB's exact letter case; ``flat``: the keys are the paths already."""

    def __init__(self, document: Mapping[str, Any], *, flat: bool = False) -> None:
        self._document, self._flat = document, flat

    def find(self, path: str) -> Any:
        """The value at ``path``, or ``_MISSING``."""
        if self._flat:
            return self._document.get(path, _MISSING)
        value: Any = self._document
        for step in path.split("."):
            if not isinstance(value, Mapping) or step not in value:
                return _MISSING
            value = value[step]
        return value


def _evaluate(node: Any, row: Mapping[str, Any] | _Document) -> Any:
    if isinstance(node, e.Column):
        if isinstance(row, _Document):
            value = row.find(next(iter(_columns(node, paths=True))))
        else:
            value = row.get(node.name, _MISSING)
        if value is _MISSING:
            raise _Unknown
        return value
    if isinstance(node, (e.Value, type(e.NULL))):
        return _bound(node)
    if isinstance(node, e.Compare) and node.op in _COMPARE:
        left, right = _evaluate(node.left, row), _evaluate(node.right, row)
        if node.op == "=" and (left is None or right is None):
            return False
        return _COMPARE[node.op](left, right)
    if isinstance(node, e.BoolOp):
        results = [bool(_evaluate(item, row)) for item in node.items]
        return all(results) if node.op == "and" else any(results)
    if isinstance(node, e.Unary) and node.op == "not":
        return not _evaluate(node.operand, row)
    if isinstance(node, e.In) and node.subquery is None:
        value = _evaluate(node.expr, row)
        found = value in [_evaluate(item, row) for item in node.items]
        return found != node.negate
    raise _Unknown


def _check_row(
    conn: Any, table: str, predicate: e.Expr, row: Mapping[str, Any] | _Document
) -> None:
    try:
        allowed = bool(_evaluate(predicate, row))
    except _Unknown:
        raise _deny(conn, table, "the row cannot be checked against it") from None
    if not allowed:
        raise _deny(conn, table, "the row is outside what it allows")


def _touches(fields: set[str], names: Any) -> bool:
    """Whether any of ``names`` (``a``, ``a.b``; any letter case: SQLite and MariaDB fold
    it, and refusing more is the safe side) is one of the policy's ``fields``."""
    lowered = {field.lower() for field in fields}
    return any(str(name).split(".")[0].lower() in lowered for name in names)


_POSITIONAL = re.compile(r"^(\$(\[[^\]]*\])?|\d+)$")  # $, $[], $[id], an index


def _overlap(path: str, field: str) -> str | None:
    """How an update path meets a policy field (any letter case, positional segments as
    wildcards): ``"same"``, ``"parent"`` (the path holds the field), ``"inside"`` (the
    path is below the field, or only a wildcard makes it the field) or None."""
    steps, wanted = str(path).lower().split("."), field.lower().split(".")
    wild = False
    for step, part in zip(steps, wanted, strict=False):
        if _POSITIONAL.match(step):
            wild = True
        elif step != part:
            return None
    if len(steps) < len(wanted):
        return "inside" if wild else "parent"
    if len(steps) > len(wanted) or wild:
        return "inside"
    return "same"


def _literal(value: Any) -> Any:
    """The value of an update pipeline's expression, when it is a constant."""
    if isinstance(value, str) and value.startswith("$"):
        raise _Unknown  # a field path: another field's value
    if isinstance(value, Mapping):
        if set(value) == {"$literal"}:
            return value["$literal"]
        if any(str(k).startswith("$") for k in value):
            raise _Unknown  # an operator expression
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_literal(v) for v in value]
    return value


def _dig(value: Any, rest: list[str]) -> Any:
    """The part of ``value`` (a document set whole) at the path ``rest``, or _MISSING."""
    for step in rest:
        if not isinstance(value, Mapping):
            return _MISSING
        if step not in value:  # (MongoDB's exact letter case)
            return _MISSING
        value = value[step]
    return value


_MISSING: Any = object()


def _assigned(
    conn: Any, collection: str, fields: set[str], assignments: Any, what: str, *, pipeline: bool
) -> dict[str, Any]:
    """The policy fields ``$set`` (or a pipeline's ``$set``/``$addFields``) gives a value."""
    values: dict[str, Any] = {}
    if not isinstance(assignments, Mapping):
        raise _deny(conn, collection, f"{what} is not a document")
    for path, value in assignments.items():
        for field in fields:
            how = _overlap(str(path), field)
            if how is None:
                continue
            if how == "inside":
                raise _deny(conn, collection, f"{what} into the policy field {field!r}")
            try:
                value = _literal(value) if pipeline else value
            except _Unknown:
                raise _deny(
                    conn, collection, f"{what} gives {field!r} a value known only when it runs"
                ) from None
            if how == "parent":
                rest = field.split(".")[len(str(path).split(".")) :]
                found = _dig(value, rest)
                if found is _MISSING:
                    raise _deny(conn, collection, f"{what} removes the policy field {field!r}")
                value = found
            values[field] = value
    return values


def _check_mongo_update(conn: Any, collection: str, predicate: e.Expr, change: Any) -> None:
    """A MongoDB update may give a policy field only a value the policy allows, with
    ``$set`` (or ``$setOnInsert``), whole or through a parent document: ``$inc``,
    ``$rename`` (either side), ``$unset``, ``$mul``, ``$max``, ``$push``... on it would move
    or strip the document out of the policy, and are refused. An update pipeline may
    ``$set``/``$addFields`` it to a constant, ``$project`` it only by keeping it, and
    ``$replaceWith``/``$replaceRoot`` only with a document giving it an allowed constant."""
    fields = _columns(predicate, paths=True)
    if isinstance(change, (list, tuple)):
        for stage in change:
            for name, spec in stage.items():
                _check_update_stage(conn, collection, predicate, fields, name, spec)
        return
    if not isinstance(change, Mapping):
        raise _deny(conn, collection, "the update cannot be read")
    values: dict[str, Any] = {}
    for operator, part in change.items():
        if operator in ("$set", "$setOnInsert"):
            values.update(_assigned(conn, collection, fields, part, operator, pipeline=False))
            continue
        names = list(part) if isinstance(part, Mapping) else [part]
        if operator == "$rename" and isinstance(part, Mapping):
            names += list(part.values())
        for name in names:
            if any(_overlap(str(name), field) for field in fields):
                raise _deny(conn, collection, f"{operator} on a policy field cannot be checked")
    _check_values(conn, collection, predicate, fields, values)


def _check_values(
    conn: Any, collection: str, predicate: e.Expr, fields: set[str], values: Mapping[str, Any]
) -> None:
    """The policy fields an update gives a value must all be given one the policy allows."""
    if not values:
        return
    if set(values) != fields:
        raise _deny(conn, collection, "an update setting some of its fields cannot be checked")
    _check_row(conn, collection, predicate, _Document(values, flat=True))


def _check_update_stage(
    conn: Any, collection: str, predicate: e.Expr, fields: set[str], name: str, spec: Any
) -> None:
    what = f"the update stage {name}"
    if name in ("$set", "$addFields"):
        values = _assigned(conn, collection, fields, spec, what, pipeline=True)
        _check_values(conn, collection, predicate, fields, values)
    elif name == "$unset":
        paths = [spec] if isinstance(spec, str) else list(spec or ())
        if any(_overlap(str(path), field) for path in paths for field in fields):
            raise _deny(conn, collection, f"{what} removes a policy field")
    elif name == "$project":
        if not isinstance(spec, Mapping):
            raise _deny(conn, collection, f"{what} cannot be read")
        excluding = all(v in (0, False) for k, v in spec.items() if k != "_id")
        for field in fields:
            touching = [k for k in spec if _overlap(str(k), field)]
            kept = all(spec[k] in (1, True) and _overlap(str(k), field) == "same" for k in touching)
            if (touching and not kept) or (not touching and not excluding):
                raise _deny(conn, collection, f"{what} drops or changes the policy field {field!r}")
    elif name in ("$replaceWith", "$replaceRoot"):
        root = spec.get("newRoot") if name == "$replaceRoot" and isinstance(spec, Mapping) else spec
        try:
            document = _literal(root) if isinstance(root, Mapping) else _literal(str(root))
        except _Unknown:
            why = f"{what} builds a document known only when it runs"
            raise _deny(conn, collection, why) from None
        if not isinstance(document, Mapping):
            raise _deny(conn, collection, f"{what} cannot be read")
        values = {}
        for field in fields:
            found = _dig(document, field.split("."))
            if found is _MISSING:
                raise _deny(conn, collection, f"{what} removes the policy field {field!r}")
            values[field] = found
        _check_values(conn, collection, predicate, fields, values)
    else:
        raise _deny(conn, collection, f"{what} cannot be checked")


def _check_assignments(
    conn: Any, table: str, predicate: e.Expr, assignments: Mapping[str, Any]
) -> None:
    """An update may not move a row out of what the policy allows."""
    fields = _columns(predicate)
    if not _touches(fields, assignments):
        return
    try:
        values = {k: _bound(v) for k, v in assignments.items() if k in fields}
    except _Unknown:
        raise _deny(conn, table, "the new value of a policy column cannot be checked") from None
    if set(values) != fields:
        raise _deny(conn, table, "an update setting some of its columns cannot be checked")
    _check_row(conn, table, predicate, values)
