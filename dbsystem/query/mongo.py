"""The MongoDB builder, and the compilation of the backend-neutral filters to Mongo filters.

    users = db.query(DatabaseType.MONGODB).collection("users")
    users.find({"status": "active"}).project("name", "email").sort("created_at", -1) \\
         .skip(20).limit(10).execute()
    users.where((col("age") > 18) & col("name").like("A%")).count().execute()
    users.where("email", "=", email).update_one({"$set": {"seen": now}}).execute()
    users.aggregate().match(col("status") == "active") \\
         .group("$country", n={"$sum": 1}).sort("n", -1).execute()

The expressions are the SQL builder's (``col``, ``&``, ``|``, ``~``, ``in_``, ``between``,
``like``, ``is_null``): ``col("age") > 18`` becomes ``{"age": {"$gt": 18}}``. They match the
documents SQL would return for the same rows, NULL and missing fields included (SQL's
three-valued logic: ``col("a") != 5`` does not match a document without ``a``). Values are
always compared with ``$eq``-style operators, so a value such as ``{"$gt": ""}`` is matched
literally and never acts as an operator. Filter dicts written by the program are used as
written, except that server-side JavaScript (``$where``, ``$function``, ``$accumulator``) is
refused everywhere. ``build()`` returns the command document; ``execute()`` runs it.

On a replica set or a sharded cluster, ``read_preference("secondaryPreferred")`` sends one
read to the members the mode picks (the pool's default comes from the URL's
``readPreference``): ``users.find(...).read_preference("nearest", tags=[{"dc": "east"}])``.

On an ``AsyncDatabaseManager`` the root is an ``AsyncMongoQuery``: the same builders and
checks, whose ``execute()`` (``all()``, ``first()``) returns a coroutine; the operation runs
on pymongo's thread-safe client from a worker thread, through the same hooks and policies.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from dbsystem.backends._mongo_access import pipeline_accesses
from dbsystem.errors import PermissionDenied, QueryBuildError
from dbsystem.kernel.hooks import _policed_for
from dbsystem.query import expr as e
from dbsystem.query._bound import BoundBuilder
from dbsystem.query.sql import _MISSING, condition

if TYPE_CHECKING:
    from dbsystem.backends.mongodb import MongoConnection

__all__ = [
    "AggregateQuery",
    "AsyncMongoQuery",
    "CollectionQuery",
    "MongoQuery",
    "compile_expr",
    "compile_filter",
]

T = TypeVar("T")

_FORBIDDEN = frozenset({"$where", "$function", "$accumulator"})
_UPDATE_OPERATORS = frozenset(
    {
        "$set",
        "$unset",
        "$inc",
        "$mul",
        "$min",
        "$max",
        "$rename",
        "$setOnInsert",
        "$currentDate",
        "$push",
        "$pull",
        "$pullAll",
        "$addToSet",
        "$pop",
        "$bit",
    }
)
# The stages an update pipeline may hold (MongoDB's own list).
_UPDATE_STAGES = frozenset(
    {"$addFields", "$set", "$project", "$unset", "$replaceRoot", "$replaceWith"}
)
# pymongo's bulk request classes -> the single operation each is.
_BULK_REQUESTS = {
    "InsertOne": "insert_one",
    "UpdateOne": "update_one",
    "UpdateMany": "update_many",
    "ReplaceOne": "replace_one",
    "DeleteOne": "delete_one",
    "DeleteMany": "delete_many",
}
_COMPARE = {"=": "$eq", "!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_UNSET: Any = object()
_READ_OPERATIONS = frozenset({"find", "count", "distinct"})


# -- filters --------------------------------------------------------------------------------


def _field(node: e.Expr) -> str:
    if not isinstance(node, e.Column) or node.name == "*":
        raise QueryBuildError("a MongoDB filter compares a field (col(...)) with a value")
    return f"{node.table}.{node.name}" if node.table else node.name


def _value(node: e.Expr) -> Any:
    if isinstance(node, e.Value):
        return node.value
    if isinstance(node, e._Null):
        return None
    raise QueryBuildError(f"MongoDB filters compare with values, not {type(node).__name__}")


def like_to_regex(pattern: str) -> str:
    """A LIKE pattern as an anchored regular expression: ``%`` and ``_`` are wildcards,
    ``\\`` makes the next character literal (as on the SQL backends), the rest is literal."""
    out = ["^"]
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    if escaped:
        out.append(re.escape("\\"))
    out.append("$")
    return "".join(out)


def compile_filter(node: e.Expr) -> dict[str, Any]:
    """A backend-neutral condition as a MongoDB filter document matching exactly the
    documents whose row SQL would return: those where the condition is TRUE under SQL's
    three-valued logic, a missing field counting as NULL.

    MongoDB's own operators are two-valued (``{"a": {"$ne": 5}}`` matches a null or missing
    ``a``; ``$nor`` matches where its operand was unknown), so each condition is compiled
    twice over: the documents where it is TRUE and those where it is FALSE (NOT swaps them;
    AND and OR combine them as De Morgan says). What is neither is SQL's UNKNOWN, and
    ``WHERE`` keeps no such row on either side.
    """
    return _when(node, True)


# Matches no document: what a condition that is never TRUE (or never FALSE) compiles to.
_NEVER: dict[str, Any] = {"_id": {"$in": []}}
_NEGATED = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_NOT_NULL: dict[str, Any] = {"$ne": None}


def _when(node: e.Expr, truth: bool) -> dict[str, Any]:
    """The filter for the documents where ``node`` is ``truth`` (TRUE or FALSE, never NULL)."""
    if isinstance(node, e.Compare):
        return _compare(node, truth)
    if isinstance(node, e.BoolOp):
        # TRUE AND: every item TRUE; FALSE AND: some item FALSE (and the dual for OR).
        parts = [_when(item, truth) for item in node.items]
        return {"$and" if (node.op == "and") == truth else "$or": parts}
    if isinstance(node, e.Unary) and node.op == "not":
        return _when(node.operand, not truth)
    if isinstance(node, e.In):
        return _in(node, truth)
    if isinstance(node, e.Between):
        low = e.Compare(">=", node.expr, node.low)
        high = e.Compare("<=", node.expr, node.high)
        return _when(e.BoolOp("and", (low, high)), truth)
    if isinstance(node, e.Like):
        pattern = _value(node.pattern)
        if not isinstance(pattern, str):
            raise QueryBuildError("like() takes a string pattern")
        field = _field(node.expr)
        regex = re.compile(like_to_regex(pattern), re.IGNORECASE if node.insensitive else 0)
        if truth != node.negate:
            return {field: regex}  # a regular expression matches strings only, never null
        return {"$and": [{field: {"$not": regex}}, {field: _NOT_NULL}]}
    raise QueryBuildError(f"{type(node).__name__} has no MongoDB filter form")


def _compare(node: e.Compare, truth: bool) -> dict[str, Any]:
    if node.op in ("is", "is not"):  # never NULL itself
        field = _field(node.left)
        return {field: None} if (node.op == "is") == truth else {field: _NOT_NULL}
    op = node.op if truth else _NEGATED[node.op]
    if isinstance(node.left, e.Extract) and not isinstance(node.right, e.Column):
        value = _value(node.right)
        if value is None:
            raise QueryBuildError(f"cannot compare with NULL using {node.op!r}: use is_null()")
        field = _field(node.left.expr)  # a date part of a null date is NULL: no match
        return {
            "$and": [
                {field: _NOT_NULL},
                {"$expr": {_COMPARE[op]: [compile_expr(node.left), value]}},
            ]
        }
    if isinstance(node.left, e.Column) and isinstance(node.right, e.Column):
        operator = _COMPARE.get(op)
        if operator is None:
            raise QueryBuildError(f"cannot compare two fields with {node.op!r}")
        left, right = _field(node.left), _field(node.right)
        # $expr compares null and missing like any value: a NULL side makes SQL's UNKNOWN.
        return {
            "$and": [
                {left: _NOT_NULL},
                {right: _NOT_NULL},
                {"$expr": {operator: [f"${left}", f"${right}"]}},
            ]
        }
    field, value = _field(node.left), _value(node.right)
    if value is None:  # as on the SQL backends (where SQLAlchemy refuses it)
        raise QueryBuildError(f"cannot compare with NULL using {node.op!r}: use is_null()")
    if op == "!=":
        return {field: {"$nin": [value, None]}}  # not null, not missing, not the value
    # $eq, $lt... with a non-null value never match null or a missing field.
    return {field: {_COMPARE[op]: value}}


_DATE_OPERATORS = {
    "year": "$year",
    "month": "$month",
    "day": "$dayOfMonth",
    "hour": "$hour",
    "minute": "$minute",
    "second": "$second",
    "doy": "$dayOfYear",
}
_EPOCH = datetime.datetime(1970, 1, 1)


def compile_expr(node: e.Expr) -> Any:
    """An expression as a MongoDB aggregation expression, for ``project``, ``group`` and
    comparisons in filters: a field is ``"$name"``, a value ``{"$literal": value}``, and
    ``extract(field, expr)`` the date operators giving the integers the SQL backends give
    (``dow`` 0 = Sunday; ``epoch`` whole seconds, rounded down), NULL for a null or missing
    date. Dates are read in UTC, as BSON stores them."""
    if isinstance(node, e.Column):
        return f"${_field(node)}"
    if isinstance(node, e.Value):
        return {"$literal": node.value}
    if isinstance(node, e._Null):
        return None
    if isinstance(node, e.Label):
        return compile_expr(node.expr)
    if isinstance(node, e.Extract):
        target = compile_expr(node.expr)
        if node.field == "dow":
            part: Any = {"$subtract": [{"$dayOfWeek": target}, 1]}  # MongoDB: 1 = Sunday
        elif node.field == "epoch":
            millis = {"$subtract": [target, _EPOCH]}
            part = {"$toLong": {"$floor": {"$divide": [millis, 1000]}}}
        else:
            part = {_DATE_OPERATORS[node.field]: target}
        return {"$cond": [{"$eq": [{"$ifNull": [target, None]}, None]}, None, part]}
    if isinstance(node, e.DateTrunc):
        target = compile_expr(node.expr)
        parts: dict[str, Any] = {}
        for unit in e.TRUNC_UNITS:  # the parts up to the unit; the rest start over
            parts[unit] = {_DATE_OPERATORS[unit]: target}
            if unit == node.unit:
                break
        truncated = {"$dateFromParts": parts}
        return {"$cond": [{"$eq": [{"$ifNull": [target, None]}, None]}, None, truncated]}
    raise QueryBuildError(f"{type(node).__name__} has no MongoDB aggregation form")


def _in(node: e.In, truth: bool) -> dict[str, Any]:
    if node.subquery is not None:
        raise QueryBuildError("MongoDB filters cannot use a SQL subquery")
    field = _field(node.expr)
    values = [_value(item) for item in node.items]
    known = [value for value in values if value is not None]
    if truth != node.negate:  # x IN (...) is TRUE: equal to one of the non-null items
        return {field: {"$in": known}} if known else _NEVER
    if len(known) < len(values):  # x IN (..., NULL) is never FALSE
        return _NEVER
    return {field: {"$nin": [*known, None]}}


def _pipeline_collections(stages: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, ...], bool]:
    """Every other collection a pipeline reads or writes (nested pipelines included), and
    whether it writes ($out, $merge), so access control checks each of them."""
    found = pipeline_accesses(stages)
    others = tuple(dict.fromkeys(r for a, r in found if a != "refused"))
    return others, any(a in ("insert", "update", "delete") for a, _ in found)


def _check_document(document: Any, what: str) -> None:
    """Refuse server-side JavaScript anywhere in a document the program passed."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            if not isinstance(key, str):
                raise QueryBuildError(f"{what}: field names are strings, not {key!r}")
            if key in _FORBIDDEN:
                raise QueryBuildError(f"{what}: {key} runs JavaScript on the server; refused")
            if "\x00" in key:
                raise QueryBuildError(f"{what}: a field name holds a NUL character")
            _check_document(value, what)
    elif isinstance(document, (list, tuple)):
        for item in document:
            _check_document(item, what)


def _filter(where: object, op: str | None, value: object) -> dict[str, Any]:
    if isinstance(where, Mapping) and op is None:
        _check_document(where, "filter")
        return dict(where)
    if where is None:
        return {}
    return compile_filter(condition(where, op, _MISSING if value is _UNSET else value))


def _and_filters(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    if not first:
        return second
    if not second:
        return first
    return {"$and": [first, second]}


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise QueryBuildError(f"{what} must be a non-negative int, not {value!r}")
    return value


def _direction(direction: object) -> int:
    if direction in (1, "asc", "ASC"):
        return 1
    if direction in (-1, "desc", "DESC"):
        return -1
    raise QueryBuildError(f"sort direction must be 1, -1, 'asc' or 'desc', not {direction!r}")


def _field_name(name: object) -> str:
    if not isinstance(name, str) or not name or name.startswith("$") or "\x00" in name:
        raise QueryBuildError(f"invalid field name {name!r}")
    return name


# -- builders -------------------------------------------------------------------------------


class MongoQuery(BoundBuilder):
    """What ``db.query(DatabaseType.MONGODB)`` returns: ``.collection(name)``
    (``AsyncMongoQuery``: ``execute()`` returns a coroutine)."""

    _what = "MongoDB query"

    def collection(self, name: str) -> CollectionQuery:
        """Operations on one collection."""
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,119}", name):
            raise QueryBuildError(f"invalid collection name {name!r}")
        return CollectionQuery(self, name)

    def _connection(self, conn: MongoConnection | None) -> MongoConnection:
        if conn is not None:
            return conn
        connection: MongoConnection = self._borrow()
        return connection

    def _run(self, run: Callable[[MongoConnection], T], conn: Any) -> T:
        """``run(connection)`` on ``conn`` or a connection of the bound manager; on an async
        manager, a coroutine that runs it on a worker thread."""
        if self.is_async:
            return self._run_async(run, conn)  # type: ignore[return-value]
        return run(self._connection(conn))

    async def _run_async(self, run: Callable[[MongoConnection], T], conn: Any) -> T:
        if conn is not None:  # a connection of AsyncDatabaseManager.connection()
            result: T = await conn.in_thread(run)
            return result
        async with self._borrow() as borrowed:
            found: T = await borrowed.in_thread(run)
            return found


class AsyncMongoQuery(MongoQuery):
    """``adb.query(DatabaseType.MONGODB)``: ``MongoQuery``'s builders, whose ``execute()``
    (``all()``, ``first()``) returns a coroutine."""

    is_async = True


class CollectionQuery:
    """An immutable MongoDB operation on one collection; ``execute()`` runs it."""

    def __init__(self, root: MongoQuery, collection: str) -> None:
        self._root = root
        self._collection = collection
        self._filter: dict[str, Any] = {}
        self._projection: dict[str, int] | None = None
        self._sort: tuple[tuple[str, int], ...] = ()
        self._skip = 0
        self._limit = 0
        self._op = "find"
        self._args: dict[str, Any] = {}
        self._all = False
        self._ids_as_str = False
        self._read_preference: Any = None

    def _copy(self, **changes: Any) -> CollectionQuery:
        new = object.__new__(CollectionQuery)
        new.__dict__ = {**self.__dict__, **changes}
        return new

    # -- reading ---------------------------------------------------------------------------

    def find(self, filter: Mapping[str, Any] | e.Expr | None = None) -> CollectionQuery:
        """Find documents matching a filter document or an expression."""
        return self._copy(
            _filter=_and_filters(self._filter, _filter(filter, None, _UNSET)), _op="find"
        )

    def where(self, left: object, op: str | None = None, value: object = _UNSET) -> CollectionQuery:
        """Add a condition (ANDed): ``where("age", ">", 18)`` or an expression."""
        if op is None and not isinstance(left, e.Expr):
            raise QueryBuildError("where() takes an expression, or a field, operator and value")
        return self._copy(_filter=_and_filters(self._filter, _filter(left, op, value)))

    def read_preference(
        self,
        mode: str,
        *,
        tags: Sequence[Mapping[str, str]] | None = None,
        max_staleness: int = -1,
    ) -> CollectionQuery:
        """Run this read on the replica-set members ``mode`` picks, overriding the pool's
        default: ``primary``, ``primaryPreferred``, ``secondary``, ``secondaryPreferred``
        or ``nearest``; ``tags`` narrow the members (``[{"dc": "east"}, {}]``) and
        ``max_staleness`` (seconds, 90 or more) skips secondaries that lag further.

        Reads only (find, count, distinct, aggregate without $out/$merge); a transaction's
        reads always go to the primary, so MongoDB refuses another mode inside one.
        """
        return self._copy(_read_preference=_read_preference(mode, tags, max_staleness))

    def project(self, *fields: str) -> CollectionQuery:
        """Return only these fields (and ``_id``)."""
        return self._copy(_projection={_field_name(f): 1 for f in fields})

    def sort(self, field: str, direction: int | str = 1) -> CollectionQuery:
        """Sort by a field; 1/"asc" or -1/"desc". Several calls add keys."""
        return self._copy(_sort=(*self._sort, (_field_name(field), _direction(direction))))

    def skip(self, count: int) -> CollectionQuery:
        """Skip this many documents."""
        return self._copy(_skip=_count(count, "skip"))

    def limit(self, count: int) -> CollectionQuery:
        """Return at most this many documents."""
        return self._copy(_limit=_count(count, "limit"))

    def ids_as_str(self) -> CollectionQuery:
        """Return ``_id`` values as strings instead of ObjectId."""
        return self._copy(_ids_as_str=True)

    def count(self) -> CollectionQuery:
        """Count the matching documents."""
        return self._copy(_op="count")

    def distinct(self, field: str) -> CollectionQuery:
        """The distinct values of a field among the matching documents."""
        return self._copy(_op="distinct", _args={"key": _field_name(field)})

    def aggregate(self, pipeline: Sequence[Mapping[str, Any]] = ()) -> AggregateQuery:
        """An aggregation pipeline: pass stages, or add them with the stage methods."""
        _check_document(list(pipeline), "pipeline")
        stages = [dict(stage) for stage in pipeline]
        if self._filter:
            stages.insert(0, {"$match": self._filter})
        return AggregateQuery(self, stages)

    # -- writing ---------------------------------------------------------------------------

    def insert_one(self, document: Mapping[str, Any]) -> CollectionQuery:
        """Insert one document; ``execute()`` returns its ``_id``."""
        _check_fields(document)
        return self._copy(_op="insert_one", _args={"document": dict(document)})

    def insert_many(self, documents: Sequence[Mapping[str, Any]]) -> CollectionQuery:
        """Insert documents in order; ``execute()`` returns their ``_id``s."""
        if not documents:
            raise QueryBuildError("insert_many() needs at least one document")
        for document in documents:
            _check_fields(document)
        return self._copy(_op="insert_many", _args={"documents": [dict(d) for d in documents]})

    def update_one(
        self, update: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, upsert: bool = False
    ) -> CollectionQuery:
        """Apply update operators (``{"$set": ...}``) to the first matching document, or an
        update pipeline (a list of ``$set``/``$addFields``/``$unset``/``$project``/
        ``$replaceRoot``/``$replaceWith`` stages)."""
        return self._copy(
            _op="update_one", _args={"update": _check_update(update), "upsert": upsert}
        )

    def update_many(
        self, update: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, upsert: bool = False
    ) -> CollectionQuery:
        """Apply update operators (or an update pipeline) to every matching document."""
        return self._copy(
            _op="update_many", _args={"update": _check_update(update), "upsert": upsert}
        )

    def replace_one(self, document: Mapping[str, Any], *, upsert: bool = False) -> CollectionQuery:
        """Replace the first matching document."""
        _check_fields(document)
        return self._copy(
            _op="replace_one", _args={"replacement": dict(document), "upsert": upsert}
        )

    def delete_one(self) -> CollectionQuery:
        """Delete the first matching document."""
        return self._copy(_op="delete_one")

    def delete_many(self) -> CollectionQuery:
        """Delete every matching document."""
        return self._copy(_op="delete_many")

    def all_documents(self) -> CollectionQuery:
        """Allow an update or delete with no filter (every document, on purpose)."""
        return self._copy(_all=True)

    def create_index(
        self,
        keys: Sequence[tuple[str, int | str]] | str,
        *,
        unique: bool = False,
        name: str | None = None,
        expire_after_seconds: int | None = None,
    ) -> CollectionQuery:
        """Create an index (compound: a list of (field, direction)); TTL with
        ``expire_after_seconds``; ``execute()`` returns the index name."""
        pairs = [(keys, 1)] if isinstance(keys, str) else list(keys)
        spec = [(_field_name(field), _direction(direction)) for field, direction in pairs]
        options: dict[str, Any] = {"unique": unique}
        if name is not None:
            options["name"] = name
        if expire_after_seconds is not None:
            options["expireAfterSeconds"] = _count(expire_after_seconds, "expire_after_seconds")
        return self._copy(_op="create_index", _args={"keys": spec, **options})

    def bulk_write(self, operations: Sequence[Any], *, ordered: bool = True) -> CollectionQuery:
        """pymongo bulk operations (InsertOne, UpdateOne, UpdateMany, ReplaceOne, DeleteOne,
        DeleteMany), in one round trip. Each is read and checked as the single operation
        of the same name is: server-side JavaScript refused, update operators known, and on
        a user session the grants and row policies of each."""
        if not operations:
            raise QueryBuildError("bulk_write() needs at least one operation")
        requests = list(operations)
        return self._copy(
            _op="bulk_write",
            _args={
                "requests": requests,
                "ops": [_bulk_request(r) for r in requests],
                "ordered": ordered,
            },
        )

    # -- running ---------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        """The command document (the shape MongoDB's command of the same name has)."""
        command = self._build()
        if self._read_preference is not None:
            if self._op not in _READ_OPERATIONS:
                raise QueryBuildError(
                    f"read_preference() applies to reads; {self._op} always goes to the primary"
                )
            command["$readPreference"] = self._read_preference.document
        return command

    def _build(self) -> dict[str, Any]:
        op, coll = self._op, self._collection
        if op == "find":
            command: dict[str, Any] = {"find": coll, "filter": self._filter}
            if self._projection is not None:
                command["projection"] = self._projection
            if self._sort:
                command["sort"] = dict(self._sort)
            if self._skip:
                command["skip"] = self._skip
            if self._limit:
                command["limit"] = self._limit
            return command
        if op == "count":
            return {"count": coll, "query": self._filter}
        if op == "distinct":
            return {"distinct": coll, "key": self._args["key"], "query": self._filter}
        if op in ("insert_one", "insert_many"):
            docs = [self._args["document"]] if op == "insert_one" else self._args["documents"]
            return {"insert": coll, "documents": docs}
        if op in ("update_one", "update_many", "replace_one"):
            self._guard()
            change = self._args.get("update", self._args.get("replacement"))
            return {
                "update": coll,
                "updates": [
                    {
                        "q": self._filter,
                        "u": change,
                        "multi": op == "update_many",
                        "upsert": self._args["upsert"],
                    }
                ],
            }
        if op in ("delete_one", "delete_many"):
            self._guard()
            return {
                "delete": coll,
                "deletes": [{"q": self._filter, "limit": 1 if op == "delete_one" else 0}],
            }
        if op == "create_index":
            args = dict(self._args)
            return {"createIndexes": coll, "indexes": [{"key": dict(args.pop("keys")), **args}]}
        return {"bulkWrite": coll, "ops": self._args["ops"], "ordered": self._args["ordered"]}

    def _guard(self) -> None:
        if not self._filter and not self._all:
            raise QueryBuildError(
                f"{self._op} on {self._collection!r} has no filter: call .all_documents() if "
                "every document is meant"
            )

    def execute(self, conn: MongoConnection | None = None) -> Any:
        """Run the operation (see the methods for what each returns); on an async manager,
        a coroutine."""
        return self._root._run(self._execute_policed, conn)

    def _execute_policed(self, connection: MongoConnection) -> Any:
        if connection._context is not None:  # a user session: its row policies, if any
            try:
                query, applied = connection._pool.hooks.restrict(self, connection)
            except PermissionDenied as denied:  # through the hooks: audited as denied
                connection.refuse(self._op, self._collection, self._build(), denied)
            if applied:
                with _policed_for(None):  # the one operation _execute runs
                    return query._execute(connection)
        return self._execute(connection)

    def _execute(self, connection: MongoConnection) -> Any:
        command = self.build()
        session = connection.session
        op, args, flt = self._op, self._args, self._filter

        def call(collection: Any) -> Any:
            kwargs = {"session": session} if session is not None else {}
            if op == "find":
                cursor = collection.find(
                    flt,
                    self._projection,
                    skip=self._skip,
                    limit=self._limit,
                    sort=list(self._sort) or None,
                    **kwargs,
                )
                return [_shape(doc, self._ids_as_str) for doc in cursor]
            if op == "count":
                return collection.count_documents(flt, **kwargs)
            if op == "distinct":
                return collection.distinct(args["key"], flt, **kwargs)
            if op == "insert_one":
                return _id(
                    collection.insert_one(args["document"], **kwargs).inserted_id, self._ids_as_str
                )
            if op == "insert_many":
                result = collection.insert_many(args["documents"], **kwargs)
                return [_id(i, self._ids_as_str) for i in result.inserted_ids]
            if op in ("update_one", "update_many", "replace_one"):
                method = getattr(collection, op)
                change = args.get("update", args.get("replacement"))
                result = method(flt, change, upsert=args["upsert"], **kwargs)
                return {
                    "matched": result.matched_count,
                    "modified": result.modified_count,
                    "upserted_id": _id(result.upserted_id, self._ids_as_str),
                }
            if op in ("delete_one", "delete_many"):
                return getattr(collection, op)(flt, **kwargs).deleted_count
            if op == "create_index":
                options = {k: v for k, v in args.items() if k != "keys"}
                return collection.create_index(args["keys"], **options, **kwargs)
            result = collection.bulk_write(args["requests"], ordered=args["ordered"], **kwargs)
            return {
                "inserted": result.inserted_count,
                "matched": result.matched_count,
                "modified": result.modified_count,
                "deleted": result.deleted_count,
                "upserted": result.upserted_count,
            }

        return connection.run(
            op, self._collection, command, call, read_preference=self._read_preference
        )

    def all(self, conn: MongoConnection | None = None) -> list[dict[str, Any]]:
        """Every matching document."""
        documents: list[dict[str, Any]] = self._copy(_op="find").execute(conn)
        return documents

    def first(self, conn: MongoConnection | None = None) -> dict[str, Any] | None:
        """The first matching document, or None."""
        query = self._copy(_op="find", _limit=1)
        return self._root._run(lambda c: _first(query._execute_policed(c)), conn)

    def __repr__(self) -> str:
        return f"<CollectionQuery {self._op} {self._collection}>"


class AggregateQuery:
    """An aggregation pipeline on a collection; stage methods return new queries."""

    def __init__(self, base: CollectionQuery, stages: list[dict[str, Any]]) -> None:
        self._base = base
        self._stages = stages

    def _add(self, stage: dict[str, Any]) -> AggregateQuery:
        _check_document(stage, "pipeline")
        return AggregateQuery(self._base, [*self._stages, stage])

    def match(
        self, where: Mapping[str, Any] | e.Expr, op: str | None = None, value: object = _UNSET
    ) -> AggregateQuery:
        """$match with a filter document or an expression."""
        return self._add({"$match": _filter(where, op, value)})

    def group(self, key: Any, **accumulators: Mapping[str, Any]) -> AggregateQuery:
        """$group by ``key`` ("$field", a dict, None, or an expression such as
        ``extract("year", "at")``) with named accumulators."""
        if isinstance(key, e.Expr):
            key = compile_expr(key)
        return self._add({"$group": {"_id": key, **accumulators}})

    def sort(self, field: str, direction: int | str = 1) -> AggregateQuery:
        """$sort by a field."""
        return self._add({"$sort": {_field_name(field): _direction(direction)}})

    def project(self, **fields: Any) -> AggregateQuery:
        """$project: ``project(name=1, total="$amount", year=extract("year", "at"))``
        (an expression is compiled by ``compile_expr``)."""
        compiled = {k: compile_expr(v) if isinstance(v, e.Expr) else v for k, v in fields.items()}
        return self._add({"$project": compiled})

    def lookup(self, from_: str, local_field: str, foreign_field: str, as_: str) -> AggregateQuery:
        """$lookup: join documents of another collection."""
        return self._add(
            {
                "$lookup": {
                    "from": from_,
                    "localField": local_field,
                    "foreignField": foreign_field,
                    "as": as_,
                }
            }
        )

    def unwind(self, path: str) -> AggregateQuery:
        """$unwind an array field (``"$items"``)."""
        return self._add({"$unwind": path})

    def limit(self, count: int) -> AggregateQuery:
        """$limit."""
        return self._add({"$limit": _count(count, "limit")})

    def skip(self, count: int) -> AggregateQuery:
        """$skip."""
        return self._add({"$skip": _count(count, "skip")})

    def build(self) -> dict[str, Any]:
        """The aggregate command document."""
        command: dict[str, Any] = {"aggregate": self._base._collection, "pipeline": self._stages}
        preference = self._base._read_preference
        if preference is not None:
            if _pipeline_collections(self._stages)[1]:
                raise QueryBuildError("read_preference() applies to reads; $out/$merge write")
            command["$readPreference"] = preference.document
        return command

    def execute(self, conn: MongoConnection | None = None) -> list[dict[str, Any]]:
        """Run the pipeline; the result documents (on an async manager, a coroutine)."""
        return self._base._root._run(self._execute, conn)

    def _execute(self, connection: MongoConnection) -> list[dict[str, Any]]:
        session = connection.session
        stages = self._stages
        others, writes = _pipeline_collections(stages)
        as_str = self._base._ids_as_str

        def call(collection: Any) -> list[dict[str, Any]]:
            kwargs = {"session": session} if session is not None else {}
            return [_shape(doc, as_str) for doc in collection.aggregate(stages, **kwargs)]

        operation = "aggregate_write" if writes else "aggregate"
        result: list[dict[str, Any]] = connection.run(
            operation,
            self._base._collection,
            self.build(),
            call,
            resources=others,
            read_preference=self._base._read_preference,
        )
        return result


def _read_preference(
    mode: str, tags: Sequence[Mapping[str, str]] | None, max_staleness: int
) -> Any:
    try:
        from pymongo.errors import ConfigurationError as MongoConfigurationError
        from pymongo.read_preferences import make_read_preference, read_pref_mode_from_name
    except ImportError:  # pragma: no cover - mongomock brings pymongo
        raise QueryBuildError(
            "read_preference() needs pymongo: pip install dbsystem[mongodb]"
        ) from None
    modes = ("primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest")
    if mode not in modes:
        raise QueryBuildError(f"unknown read preference {mode!r}; use one of {', '.join(modes)}")
    try:  # pymongo checks the rest: tags with primary, a max_staleness under 90 s ...
        return make_read_preference(
            read_pref_mode_from_name(mode),
            [dict(t) for t in tags] if tags is not None else None,
            max_staleness,
        )
    except (ValueError, TypeError, MongoConfigurationError) as exc:
        raise QueryBuildError(f"invalid read preference {mode!r}: {exc}") from None


def _check_fields(document: Mapping[str, Any]) -> None:
    if not isinstance(document, Mapping):
        raise QueryBuildError("a document is a mapping")
    for key in document:
        if not isinstance(key, str) or key.startswith("$") or "\x00" in key:
            raise QueryBuildError(f"invalid field name in a document: {key!r}")
    _check_document(document, "document")


def _check_update(update: Any) -> Any:
    """An update document (operators) or an update pipeline (a list of stages), checked."""
    if isinstance(update, (list, tuple)):
        if not update:
            raise QueryBuildError("an update pipeline needs at least one stage")
        for stage in update:
            if (
                not isinstance(stage, Mapping)
                or len(stage) != 1
                or next(iter(stage)) not in _UPDATE_STAGES
            ):
                raise QueryBuildError(
                    f"an update pipeline holds one stage per document, of "
                    f"{sorted(_UPDATE_STAGES)}, not {stage!r}"
                )
        _check_document(list(update), "update")
        return [dict(stage) for stage in update]
    if not isinstance(update, Mapping) or not update:
        raise QueryBuildError("an update is a mapping of update operators ({'$set': {...}})")
    for key in update:
        if key not in _UPDATE_OPERATORS:
            raise QueryBuildError(
                f"{key!r} is not an update operator; use one of {sorted(_UPDATE_OPERATORS)} "
                "(replace_one() replaces a whole document)"
            )
    _check_document(update, "update")
    return dict(update)


def _bulk_request(request: Any) -> dict[str, Any]:
    """A pymongo bulk request as the single operation it is (``{"op": "update_one", "q":
    filter, "u": update, "upsert": False}``), checked as that operation is."""
    op = _BULK_REQUESTS.get(type(request).__name__)
    if op is None:
        raise QueryBuildError(
            f"bulk_write() takes pymongo's {', '.join(_BULK_REQUESTS)}, "
            f"not {type(request).__name__}"
        )
    if getattr(request, "_namespace", None) is not None:
        raise QueryBuildError("bulk_write(): a request with a namespace writes elsewhere")
    if op == "insert_one":
        _check_fields(request._doc)
        return {"op": op, "document": request._doc}
    flt = request._filter
    if not isinstance(flt, Mapping):
        raise QueryBuildError("bulk_write(): a filter is a mapping")
    _check_document(flt, "filter")
    entry: dict[str, Any] = {"op": op, "q": dict(flt)}
    if op.startswith("update"):
        entry["u"] = _check_update(request._doc)
        _check_document(getattr(request, "_array_filters", None), "array filters")
    elif op == "replace_one":
        _check_fields(request._doc)
        entry["u"] = dict(request._doc)
    if op in ("update_one", "update_many", "replace_one"):
        entry["upsert"] = bool(request._upsert)
    return entry


def _first(documents: list[dict[str, Any]]) -> dict[str, Any] | None:
    return documents[0] if documents else None


def _id(value: Any, as_str: bool) -> Any:
    return str(value) if as_str and value is not None else value


def _shape(document: Mapping[str, Any], ids_as_str: bool) -> dict[str, Any]:
    result = dict(document)
    if ids_as_str and "_id" in result:
        result["_id"] = str(result["_id"])
    return result
