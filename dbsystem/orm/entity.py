"""Typed entities: pydantic models that persist to any SQL backend or to MongoDB.

    class User(Entity, table="users"):
        id: int | None = Field(default=None, primary_key=True, auto_increment=True)
        username: str = Field(max_length=50, index=True)
        email: str = Field(unique=True)
        age: int = 0

    db.create_tables([User])
    u = User(username="ada", email="ada@example.com", age=36)
    u.save(db)                                    # INSERT; u.id is filled in
    User.get(db, u.id)
    User.query(db).where(User.age > 18).order_by("username").limit(10).all()

``User.age`` on the class is a column expression (the backend-neutral filter language),
so the same query runs on SQLite, PostgreSQL, MySQL and MongoDB. Entities validate on
construction and on assignment (pydantic). ``save`` inserts a new entity and updates a
loaded one, sending only the fields that changed; a ``version=True`` field makes updates
check that nobody changed the row meanwhile (``ConflictError``). Every operation is a
query builder call, so it goes through the pool, the hooks and the one execution path,
and joins the transaction of ``db.transaction(...)`` when one is open.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import typing
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

import pydantic
from pydantic._internal._model_construction import ModelMetaclass

from dbsystem.errors import ConflictError, InterfaceError, NotSupportedError, SchemaError
from dbsystem.kernel.types import DatabaseType
from dbsystem.orm._loader import loader
from dbsystem.orm.fields import (
    ColumnSpec,
    Field,
    RelationOptions,
    column_spec,
    portable_type,
    relation_options,
)
from dbsystem.query.expr import Column, Expr, check_identifier, col, order_item
from dbsystem.query.sql import keyset_after

__all__ = ["Entity", "EntityQuery", "Metadata", "Runner"]


class Runner(Protocol):
    """What entities persist through (typing only): a ``DatabaseManager``, a user session
    (``db.for_user(...)``), a ``ShardedPool``, the ``run_sync`` bridge of the async manager."""

    @property
    def mode(self) -> DatabaseType | None:
        """The default database type."""
        ...

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The backend (or what a session may know of it) behind a pool."""
        ...

    def bound_connection(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The connection of the open ``transaction()`` block, or None."""
        ...


class Metadata:
    """What an entity class knows about its table or collection."""

    def __init__(self, cls: type[Entity], table: str, versioned: bool = False) -> None:
        self.table = check_identifier(table, "table name")
        self.versioned = versioned
        """Keep every previous version in ``<table>_history`` (time travel)."""
        self.history_table = check_identifier(f"{table}_history", "table name")
        self.relations: dict[str, RelationOptions] = {}
        self.columns: list[ColumnSpec] = []
        for name, info in cls.model_fields.items():
            relation = relation_options(info)
            if relation is not None:
                self.relations[name] = relation
            else:
                self.columns.append(column_spec(name, info))
        keys = [c for c in self.columns if c.options.primary_key]
        if len(keys) != 1:
            raise SchemaError(f"{cls.__name__} needs exactly one Field(primary_key=True)")
        self.primary_key = keys[0]
        versions = [c for c in self.columns if c.options.version]
        if len(versions) > 1:
            raise SchemaError(f"{cls.__name__} has more than one version field")
        self.version = versions[0] if versions else None
        for spec in self.columns:
            check_identifier(spec.column, "column name")
        self.by_field = {c.field: c for c in self.columns}
        self.by_column = {c.column: c for c in self.columns}
        self.renamed = any(c.field != c.column for c in self.columns)
        self.datetime_fields = [c.field for c in self.columns if c.python_type is datetime.datetime]
        self.json_fields = [
            c.field
            for c in self.columns
            if (typing.get_origin(c.python_type) or c.python_type) in (dict, list)
        ]
        self.loaders: dict[tuple[str, ...], Callable[[list[dict[str, Any]]], list[Any]] | None]
        self.loaders = {}
        """Row shape (its keys) -> the function making entities of such rows (``_loader``)."""
        _check_concepts(cls, self)


# Entities by table name, for checking foreign keys when their class is defined; and the
# foreign keys whose target table had no entity yet: checked when one is defined.
_TABLES: dict[str, Metadata] = {}
# Where rows of one result may differ in their keys (documents), or come one at a time.
_UNSHAPED = frozenset({"mongodb", "redis"})
_PENDING_KEYS: dict[str, list[tuple[str, str, str]]] = {}


def _unresolved(annotation: Any) -> bool:
    """True if ``annotation`` still holds a forward reference (a name defined later)."""
    if isinstance(annotation, (str, typing.ForwardRef)):
        return True
    return any(_unresolved(arg) for arg in typing.get_args(annotation))


def _check_concepts(cls: type[Entity], meta: Metadata) -> None:
    """Refuse, when the class is defined, an entity that could not work (``SchemaError``):
    a field type with no column type, an index, unique or key on a JSON column, a version
    or auto-increment field that is not an ``int``, a foreign key that is not
    ``"table.column"`` or names a column its (already defined) entity lacks, a relation
    whose ``local_key`` is not a field or whose type names something else than an entity.

    A foreign key to a table no entity has declared yet is checked when one does (that
    class's definition fails, naming the field that points at it); a table no entity ever
    declares (made by a migration or by hand) is left to the database. A relation to a
    class defined later (a forward reference) is checked when it is first loaded.
    """
    name = cls.__name__
    for spec in meta.columns:
        if _unresolved(spec.python_type):
            continue  # a forward reference, resolved later by pydantic
        kind = portable_type(spec)  # SchemaError: no column type for it
        keyed = spec.options.primary_key or spec.options.unique or spec.options.index
        if kind == "json" and keyed:
            raise SchemaError(
                f"{name}.{spec.field}: a JSON column cannot be a key, unique or indexed"
            )
        integral = kind == "bigint" and spec.python_type is not bool
        if spec.options.version and not integral:
            raise SchemaError(f"{name}.{spec.field}: a version=True field must be an int")
        if spec.options.auto_increment and not integral:
            raise SchemaError(f"{name}.{spec.field}: an auto_increment field must be an int")
        target = spec.options.foreign_key
        if target is not None:
            table, dot, column = target.partition(".")
            if not dot:
                raise SchemaError(
                    f"{name}.{spec.field}: foreign_key={target!r} must be 'table.column'"
                )
            check_identifier(table, "foreign key table")
            check_identifier(column, "foreign key column")
            known = _TABLES.get(table)
            if known is None:
                _PENDING_KEYS.setdefault(table, []).append((f"{name}.{spec.field}", target, column))
            elif column not in known.by_column:
                raise SchemaError(
                    f"{name}.{spec.field}: foreign_key={target!r} names no column of "
                    f"{table!r} (its columns: {sorted(known.by_column)})"
                )
    for field, relation in meta.relations.items():
        if relation.local_key is not None and relation.local_key not in meta.by_field:
            raise SchemaError(
                f"{name}.{field}: Relation(local_key={relation.local_key!r}) names no field "
                f"of {name} (fields: {sorted(meta.by_field)})"
            )
        if not _unresolved(cls.model_fields[field].annotation):
            _related_class(cls, field)  # SchemaError: the type names no entity
    for referrer, target, column in _PENDING_KEYS.pop(meta.table, []):
        if column not in meta.by_column:
            raise SchemaError(
                f"{referrer}: foreign_key={target!r} names no column of {meta.table!r} as "
                f"{name} declares it (its columns: {sorted(meta.by_column)})"
            )
    _TABLES[meta.table] = meta


@typing.dataclass_transform(
    kw_only_default=True,
    field_specifiers=(pydantic.Field, pydantic.PrivateAttr, Field),
)
class _EntityMeta(ModelMetaclass):
    """Lets ``User.age`` (on the class) be the column expression of the field.

    For the type checkers ``User.age`` keeps the field's declared type (``int``), as in
    SQLModel: ``User.age > 18`` is then a ``bool`` to them, which ``where()`` accepts, a
    comparison with the wrong type stays an error, and an unknown name (``User.agee``) is
    one; hence the ``__getattr__`` below exists at run time only. The
    ``dataclass_transform`` repeats pydantic's with this package's ``Field`` as a field
    specifier, so that the constructor is checked field by field (``Relation(...)`` is
    not one: to the checkers it is a default, and a relation is optional in the
    constructor, as at run time).
    """

    if not TYPE_CHECKING:  # an untyped __getattr__ would accept any name

        def __getattr__(cls, name: str) -> Any:
            meta = cls.__dict__.get("__dbsystem__")
            if meta is not None and name in meta.by_field:
                return col(meta.by_field[name].column)
            if meta is not None and name in meta.relations:
                return _RelationRef(cls, name)  # for include(User.posts)
            return super().__getattr__(name)


class Entity(pydantic.BaseModel, metaclass=_EntityMeta):
    """Base class of persistent entities; subclass with ``table="name"``."""

    model_config = pydantic.ConfigDict(validate_assignment=True, from_attributes=False)

    __dbsystem__: ClassVar[Metadata]
    __dbsystem_table__: ClassVar[str]
    __dbsystem_versioned__: ClassVar[bool]
    __dbsystem_rows__: ClassVar[pydantic.TypeAdapter[Any]]

    def __init_subclass__(
        cls, table: str | None = None, versioned: bool = False, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.__dbsystem_table__ = table or cls.__name__.lower()
        cls.__dbsystem_versioned__ = versioned

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Fields are known only now (after pydantic built the model).
        super().__pydantic_init_subclass__(**kwargs)
        cls.__dbsystem__ = Metadata(cls, cls.__dbsystem_table__, cls.__dbsystem_versioned__)
        # Validates a whole result at once, in pydantic-core (twice as fast as one by one).
        cls.__dbsystem_rows__ = pydantic.TypeAdapter(list[cls])  # type: ignore[valid-type]

    # -- persisted state -------------------------------------------------------------------
    # pydantic records in __pydantic_fields_set__ every field assigned (validate_assignment).
    # A loaded or saved entity gets an empty _Persisted set there: the set says "this row
    # exists", and what pydantic adds to it is exactly what changed since. (A private
    # attribute would do the same at three times the cost of validating a row.)

    def _mark_persisted(self) -> None:
        object.__setattr__(self, "__pydantic_fields_set__", _Persisted())

    @property
    def is_persisted(self) -> bool:
        """True once the entity was loaded from or saved to the database."""
        return isinstance(self.__pydantic_fields_set__, _Persisted)

    # -- mapping between entities and rows -------------------------------------------------

    def _row(self) -> dict[str, Any]:
        """This entity as column -> value, with datetimes made aware (naive means UTC)."""
        meta = self.__dbsystem__
        values = self.__dict__
        row = {spec.column: values[spec.field] for spec in meta.columns}
        for name in meta.datetime_fields:
            column = meta.by_field[name].column
            value = row[column]
            if isinstance(value, datetime.datetime) and value.tzinfo is None:
                row[column] = value.replace(tzinfo=datetime.UTC)
        return row

    @classmethod
    def _from_rows(cls, rows: list[dict[str, Any]], dialect: str) -> list[Self]:
        meta = cls.__dbsystem__
        if meta.renamed:
            rows = [
                {meta.by_column[k].field if k in meta.by_column else k: v for k, v in row.items()}
                for row in rows
            ]
        fix_zone = dialect in ("mysql", "mongodb") and bool(meta.datetime_fields)
        if fix_zone or meta.json_fields:
            for row in rows:
                if fix_zone:  # their datetimes keep no zone: the ORM wrote UTC
                    for name in meta.datetime_fields:
                        value = row.get(name)
                        if isinstance(value, datetime.datetime) and value.tzinfo is None:
                            row[name] = value.replace(tzinfo=datetime.UTC)
                for name in meta.json_fields:  # SQLite and MySQL give JSON back as text
                    value = row.get(name)
                    if isinstance(value, (str, bytes)):
                        row[name] = json.loads(value)
        if rows and dialect not in _UNSHAPED:
            shape = tuple(rows[0])
            try:
                load = meta.loaders[shape]
            except KeyError:
                load = meta.loaders[shape] = loader(
                    cls, shape, frozenset(meta.relations), _Persisted, cls._validated
                )
            if load is not None:
                return load(rows)
        entities: list[Self] = cls.__dbsystem_rows__.validate_python(rows)
        for entity in entities:
            object.__setattr__(entity, "__pydantic_fields_set__", _Persisted())
        return entities

    @classmethod
    def _validated(cls, row: dict[str, Any]) -> Self:
        """A row validated by pydantic, marked persisted (what the fast path lets pass)."""
        entity = cls.model_validate(row)
        entity._mark_persisted()
        return entity

    # -- persistence -----------------------------------------------------------------------

    @classmethod
    def _target(cls, db: Runner, db_type: DatabaseType | None) -> Any:
        return _Target(db, db_type)

    def save(self, db: Runner, *, db_type: DatabaseType | None = None) -> Self:
        """Insert this entity, or update the fields that changed since it was loaded."""
        target = self._target(db, db_type)
        assigned = self.__pydantic_fields_set__
        if target.kind == "kv":
            persisted = isinstance(assigned, _Persisted)
            changed = [n for n in assigned if n in self.__dbsystem__.by_field]
            target.kv_save(self, changed if persisted else None)
        elif not isinstance(assigned, _Persisted):
            target.insert(self)
        elif assigned:
            meta = self.__dbsystem__
            row = self._row()
            columns = [meta.by_field[name].column for name in assigned if name in meta.by_field]
            target.update(self, {column: row[column] for column in columns})
        self._mark_persisted()
        return self

    @classmethod
    def save_all(
        cls, db: Runner, entities: Sequence[Self], *, db_type: DatabaseType | None = None
    ) -> None:
        """Insert many new entities at once (``insert_many``: COPY on PostgreSQL).

        Entities whose key is numbered by the database get their keys back only from
        ``save``; ``save_all`` leaves them None, so give keys or reload when you need them.
        """
        if not entities:
            return
        target = cls._target(db, db_type)
        target.insert_many(cls, entities)
        for entity in entities:
            entity._mark_persisted()

    def delete(self, db: Runner, *, db_type: DatabaseType | None = None) -> None:
        """Delete this entity's row (or document, or Redis hash)."""
        target = self._target(db, db_type)
        if target.kind == "kv":
            target.kv_delete(self)
        else:
            target.delete(self)
        object.__setattr__(self, "__pydantic_fields_set__", set())

    def refresh(self, db: Runner, *, db_type: DatabaseType | None = None) -> Self:
        """Reload every field from the database."""
        meta = self.__dbsystem__
        key = getattr(self, meta.primary_key.field)
        fresh = type(self).get(db, key, db_type=db_type)
        if fresh is None:
            raise InterfaceError(f"{type(self).__name__} {key!r} no longer exists")
        for spec in meta.columns:
            self.__dict__[spec.field] = fresh.__dict__[spec.field]
        self._mark_persisted()
        return self

    @classmethod
    def get(cls, db: Runner, key: Any, *, db_type: DatabaseType | None = None) -> Self | None:
        """The entity with this primary key, or None."""
        meta = cls.__dbsystem__
        target = cls._target(db, db_type)
        if target.kind == "kv":
            found: Self | None = target.kv_get(cls, key)
            return found
        return EntityQuery(cls, target).where(col(meta.primary_key.column) == key).first()

    @classmethod
    def history(
        cls, db: Runner, key: Any, *, db_type: DatabaseType | None = None
    ) -> list[tuple[Self, datetime.datetime, datetime.datetime | None]]:
        """Every version of one row, oldest first: (entity, valid_from, valid_to).

        The current version (if the row exists) comes last with ``valid_to`` None. Only for
        entities declared ``versioned=True``.
        """
        versions: list[tuple[Self, datetime.datetime, datetime.datetime | None]]
        versions = cls._target(db, db_type).history(cls, key)
        return versions

    @classmethod
    def restore(
        cls,
        db: Runner,
        key: Any,
        *,
        as_of: datetime.datetime | None = None,
        db_type: DatabaseType | None = None,
    ) -> Self:
        """Bring a deleted row back: the version valid at ``as_of`` (default: the last)."""
        if cls.get(db, key, db_type=db_type) is not None:
            raise InterfaceError(f"{cls.__name__} {key!r} exists: nothing to restore")
        versions = cls.history(db, key, db_type=db_type)
        if as_of is not None:
            moment = as_of if as_of.tzinfo else as_of.replace(tzinfo=datetime.UTC)
            moment = moment.astimezone(datetime.UTC)  # as stamped (see as_of)
            versions = [v for v in versions if v[1] <= moment and (v[2] is None or moment < v[2])]
        if not versions:
            raise InterfaceError(f"{cls.__name__} {key!r} has no version to restore")
        entity = versions[-1][0].model_copy()
        object.__setattr__(entity, "__pydantic_fields_set__", set())
        return entity.save(db, db_type=db_type)

    @classmethod
    def query(cls, db: Runner, *, db_type: DatabaseType | None = None) -> EntityQuery[Self]:
        """A query over this entity: ``where``, ``order_by``, ``limit``, ``all``, ``first``."""
        target = cls._target(db, db_type)
        if target.kind == "kv":
            raise NotSupportedError(
                "Redis keeps entities by key: use get, save and delete", backend="redis"
            )
        return EntityQuery(cls, target)


E = TypeVar("E", bound="Entity")


class EntityQuery(Generic[E]):
    """An immutable query returning entities; SQL or MongoDB underneath."""

    def __init__(
        self,
        entity: type[E],
        target: _Target,
        where: Expr | None = None,
        order: tuple[tuple[str, str], ...] = (),
        limit: int | None = None,
        offset: int | None = None,
        include: tuple[str, ...] = (),
        as_of: datetime.datetime | None = None,
        lock: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        self._entity, self._target = entity, target
        self._where, self._order, self._limit, self._offset = where, order, limit, offset
        self._include = include
        self._as_of = as_of
        self._lock = lock

    def _copy(self, **changes: Any) -> EntityQuery[E]:
        state = {
            "where": self._where,
            "order": self._order,
            "limit": self._limit,
            "offset": self._offset,
            "include": self._include,
            "as_of": self._as_of,
            "lock": self._lock,
            **changes,
        }
        return EntityQuery(self._entity, self._target, **state)

    def include(self, *relations: str | Entity | Sequence[Entity] | None) -> EntityQuery[E]:
        """Load these relations too: one more query per relation, never one per entity.

        A relation is named (``"books"``) or given as the class attribute
        (``Author.books``, typed ``list[Book]`` to the checkers, so a field that is no
        relation, such as ``Author.id``, is flagged by them).
        """
        known = self._entity.__dbsystem__.relations
        names: list[str] = []
        for relation in relations:
            name: object = relation
            if isinstance(relation, _RelationRef) and relation.owner is self._entity:
                name = relation.name
            if not isinstance(name, str) or name not in known:
                raise InterfaceError(
                    f"{self._entity.__name__} has no relation {name!r}; "
                    f"relations: {sorted(known) or 'none'}"
                )
            names.append(name)
        return self._copy(include=(*self._include, *names))

    def where(self, condition: Expr | bool) -> EntityQuery[E]:
        """Add a condition (``User.age > 18``); several are ANDed.

        ``bool`` is in the signature for the type checkers only, which see ``User.age``
        as an ``int`` and so ``User.age > 18`` as a ``bool``; at run time it is an
        expression, and a real ``True``/``False`` is refused (``InterfaceError``).
        """
        if not isinstance(condition, Expr):
            raise InterfaceError("where() takes an expression such as User.age > 18")
        new = condition if self._where is None else self._where & condition
        return self._copy(where=new)

    def order_by(self, field: object, direction: str = "asc") -> EntityQuery[E]:
        """Order by a field: its name (``"name"``), or the class attribute (``User.name``).

        ``field`` is typed ``object`` because the type checkers see ``User.age`` as the
        field's type (an ``int``); anything but a field name or a field of the entity is
        refused at run time (``InterfaceError``).
        """
        meta = self._entity.__dbsystem__
        if isinstance(field, Column):
            column = field.name
        elif isinstance(field, str) and field in meta.by_field:
            column = meta.by_field[field].column
        else:
            raise InterfaceError(f"{self._entity.__name__} has no field {field!r}")
        return self._copy(order=(*self._order, (column, direction)))

    def as_of(self, moment: datetime.datetime) -> EntityQuery[E]:
        """The rows as they were at ``moment`` (``versioned=True`` entities only).

        After SQL:2011's ``FOR SYSTEM_TIME AS OF``: current rows valid since before then,
        and previous versions that were valid then.
        """
        if not self._entity.__dbsystem__.versioned:
            raise InterfaceError(f"{self._entity.__name__} is not versioned=True")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        # In UTC, as the versions are stamped: SQLite compares the stamps as text, where
        # 12:00+02:00 would sort after 11:00+00:00 although it is the earlier instant.
        return self._copy(as_of=moment.astimezone(datetime.UTC))

    def limit(self, count: int) -> EntityQuery[E]:
        """At most ``count`` entities."""
        return self._copy(limit=count)

    def offset(self, count: int) -> EntityQuery[E]:
        """Skip ``count`` entities."""
        return self._copy(offset=count)

    def for_update(self, *, skip_locked: bool = False, nowait: bool = False) -> EntityQuery[E]:
        """Lock the entities' rows until the transaction ends (``SelectQuery.for_update``:
        ``skip_locked``, ``nowait``); SQL databases with row locks only (not SQLite, not
        MongoDB: ``NotSupportedError``). Use it inside ``db.transaction(...)``."""
        return self._locked("update", skip_locked, nowait)

    def for_share(self, *, skip_locked: bool = False, nowait: bool = False) -> EntityQuery[E]:
        """Lock the entities' rows against changes by others until the transaction ends."""
        return self._locked("share", skip_locked, nowait)

    def _locked(self, mode: str, skip_locked: bool, nowait: bool) -> EntityQuery[E]:
        if self._target.kind == "document":
            raise NotSupportedError("MongoDB has no row locks", backend="mongodb")
        if self._as_of is not None:
            raise InterfaceError("as_of() reads past versions: they cannot be locked")
        return self._copy(lock=(mode, {"skip_locked": skip_locked, "nowait": nowait}))

    def paginate(self, *, limit: int, after: Any = None) -> EntityPage[E]:
        """One page of at most ``limit`` entities after the one whose ordering values are
        ``after`` (``page.next`` of the page before; None: the first page): keyset
        pagination, in the query's ``order_by`` (any mix of directions) followed by the
        primary key, so the order is unique. Ordering fields must not be None.
        """
        if type(limit) is not int or limit < 1:
            raise InterfaceError(f"paginate(limit=...) must be an int of at least 1, not {limit!r}")
        if self._offset is not None or self._limit is not None:
            raise InterfaceError("paginate() pages by key: drop limit() and offset()")
        meta = self._entity.__dbsystem__
        key = meta.primary_key.column
        order = self._order
        if all(column != key for column, _ in order):
            order = (*order, (key, "asc"))
        keys = [(column, order_item(column, direction)) for column, direction in order]
        query = self._copy(order=order, limit=limit + 1)
        if after is not None:
            query = query.where(keyset_after(keys, after))
        found = query.all()
        if len(found) <= limit:
            return EntityPage(found, None)
        found = found[:limit]
        last = found[-1]
        cursor = tuple(getattr(last, meta.by_column[column].field) for column, _ in order)
        if any(value is None for value in cursor):
            raise InterfaceError("paginate(): the last entity's ordering field is None")
        return EntityPage(found, cursor)

    def all(self) -> list[E]:
        """Every matching entity (with the included relations loaded)."""
        entities = self._target.select(self._entity, self)
        for name in self._include:
            _load_relation(self._entity, name, entities, self._target)
        return entities

    def first(self) -> E | None:
        """The first matching entity, or None."""
        found = self._copy(limit=1).all()
        return found[0] if found else None

    def count(self) -> int:
        """How many entities match."""
        return self._target.count(self._entity, self)


@dataclass(frozen=True, slots=True)
class EntityPage(Generic[E]):
    """One page of ``EntityQuery.paginate()``: its entities, and the next page's cursor."""

    entities: list[E]
    next: tuple[Any, ...] | None
    """``after=`` for the next page; None on the last page."""

    @property
    def has_more(self) -> bool:
        """True when another page follows."""
        return self.next is not None


class _Target:
    """Runs entity operations on one of the manager's pools, SQL or MongoDB."""

    def __init__(self, db: Runner, db_type: DatabaseType | None) -> None:
        self.db: Any = db  # (what else it offers depends on its kind: connection, transaction)
        self.db_type = db_type or db.mode
        if self.db_type is None:
            raise InterfaceError("several database types have pools: pass db_type=")
        backend = db.backend(self.db_type)
        self.kind = backend.kind
        self.dialect = backend.dialect
        if self.kind not in ("sql", "document", "kv"):
            raise InterfaceError(f"entities cannot persist to {self.db_type.value}")

    # -- Redis: one hash per entity, by primary key --------------------------------------

    def _key(self, meta: Metadata, key: Any) -> str:
        return f"{meta.table}:{key}"

    def _redis(self) -> Any:
        return self.db.connection(self.db_type)

    def _check_kv(self, meta: Metadata) -> None:
        if meta.version is not None or meta.versioned:
            raise NotSupportedError(
                "entities on Redis support get, save and delete by key: no version field, "
                "no time travel",
                backend="redis",
            )

    def kv_save(self, entity: Entity, fields: Sequence[str] | None) -> None:
        meta = entity.__dbsystem__
        self._check_kv(meta)
        key = meta.primary_key
        if entity.__dict__[key.field] is None:
            if not key.options.auto_increment:
                raise InterfaceError(f"{type(entity).__name__} needs a primary key value")
            entity.__dict__[key.field] = self._redis().execute("INCR", f"{meta.table}:__next_id__")
        values = entity.model_dump(mode="json")
        names = fields if fields is not None else [c.field for c in meta.columns]
        mapping: list[Any] = []
        for name in names:
            mapping += [meta.by_field[name].column, json.dumps(values[name])]
        if mapping:
            self._redis().execute("HSET", self._key(meta, entity.__dict__[key.field]), *mapping)

    def kv_get(self, cls: type[Any], key: Any) -> Any:
        meta = cls.__dbsystem__
        stored = self._redis().execute("HGETALL", self._key(meta, key))
        if not stored:
            return None
        row = {
            (k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in stored.items()
        }
        return cls._from_rows([row], "redis")[0]

    def kv_delete(self, entity: Entity) -> None:
        meta = entity.__dbsystem__
        self._redis().execute("DEL", self._key(meta, entity.__dict__[meta.primary_key.field]))

    # -- SQL and MongoDB, side by side -----------------------------------------------------

    def _builders(self) -> Any:
        # The runner's own query(): a manager's, a session's, or a ShardedPool's (routed).
        runner: Any = self.db
        return runner.query(self.db_type)

    def _sql(self) -> Any:
        return self._builders()

    def _collection(self, meta: Metadata) -> Any:
        factory: Any = self._builders()
        return factory.collection(meta.table)

    def _conn(self) -> Any:
        return self.db.bound_connection(self.db_type)

    def _versioning(self, meta: Metadata) -> Any:
        """The transaction that keeps a versioned row and its history together (SQL)."""
        if meta.versioned and self.kind == "sql":
            return self.db.transaction(self.db_type)
        return contextlib.nullcontext()

    def insert(self, entity: Entity) -> None:
        meta = entity.__dbsystem__
        row = entity._row()
        if meta.versioned:
            row[VALID_FROM] = _now()
        key = meta.primary_key
        generated = row[key.column] is None and key.options.auto_increment
        if self.kind == "document":
            if generated:
                row[key.column] = self._next_id(meta)
            document = _to_document(row, key.column)
            self._collection(meta).insert_one(document).execute(self._conn())
            entity.__dict__[key.field] = row[key.column]
            return
        if generated:
            row.pop(key.column)
        query = self._sql().insert_into(meta.table).values(row)
        if generated and self.dialect == "postgresql":
            result = query.returning(key.column).execute(self._conn())
            entity.__dict__[key.field] = result[0][key.column]
        else:
            result = query.execute(self._conn())
            if generated:
                entity.__dict__[key.field] = result.lastrowid

    def insert_many(self, cls: type[Entity], entities: Sequence[Entity]) -> None:
        meta = cls.__dbsystem__
        rows = [e._row() for e in entities]
        if meta.versioned:
            moment = _now()
            for row in rows:
                row[VALID_FROM] = moment
        key = meta.primary_key.column
        if self.kind == "document":
            documents = [_to_document(row, key) for row in rows]
            for document in documents:
                if document["_id"] is None:
                    document["_id"] = self._next_id(meta)
            self._collection(meta).insert_many(documents).execute(self._conn())
            for entity, document in zip(entities, documents, strict=True):
                entity.__dict__[meta.primary_key.field] = document["_id"]
            return
        if any(row[key] is None for row in rows):
            rows = [{c: v for c, v in row.items() if c != key} for row in rows]
        conn = self._conn()
        if conn is not None:
            conn.insert_many(meta.table, rows)
        else:
            with self.db.connection(self.db_type) as borrowed:
                borrowed.insert_many(meta.table, rows)

    def update(self, entity: Entity, changed: dict[str, Any]) -> None:
        meta = entity.__dbsystem__
        key = meta.primary_key
        condition = col(key.column) == getattr(entity, key.field)
        version = meta.version
        if version is not None:
            current = getattr(entity, version.field)  # as read: a changed row won't match
            condition = condition & (col(version.column) == current)
            changed = {**changed, version.column: (current or 0) + 1}
        with self._versioning(meta):
            if meta.versioned:
                moment = _now()
                self._archive(meta, condition, moment)
                changed = {**changed, VALID_FROM: moment}
            count = self._update(meta, condition, changed)
        if count == 0:
            raise ConflictError(
                f"{type(entity).__name__} {getattr(entity, key.field)!r} was changed or "
                "deleted since it was read",
                backend=self.dialect,
            )
        if version is not None:
            entity.__dict__[version.field] = changed[version.column]

    def _update(self, meta: Metadata, condition: Expr, changed: dict[str, Any]) -> int:
        key = meta.primary_key
        if self.kind == "document":
            result = (
                self._collection(meta)
                .where(_document_filter(condition, key.column))
                .update_one({"$set": _to_document(changed, None)})
                .execute(self._conn())
            )
            count = result["matched"]
        else:
            count = (
                self._sql().update(meta.table).set(changed).where(condition).execute(self._conn())
            )
        return int(count)

    def delete(self, entity: Entity) -> None:
        meta = entity.__dbsystem__
        key = meta.primary_key
        condition = col(key.column) == getattr(entity, key.field)
        with self._versioning(meta):
            if meta.versioned:
                self._archive(meta, condition, _now())
            if self.kind == "document":
                self._collection(meta).where(
                    _document_filter(condition, key.column)
                ).delete_one().execute(self._conn())
            else:
                self._sql().delete_from(meta.table).where(condition).execute(self._conn())

    def _archive(self, meta: Metadata, condition: Expr, moment: datetime.datetime) -> None:
        """Copy the current version of the matching row into the history, ended now."""
        columns = [c.column for c in meta.columns]
        if self.kind == "document":
            found = (
                self._collection(meta)
                .where(_document_filter(condition, meta.primary_key.column))
                .all(self._conn())
            )
            if found:
                documents = []
                for document in found:
                    copy = {
                        (meta.primary_key.column if k == "_id" else k): v
                        for k, v in document.items()
                    }
                    copy[VALID_TO] = moment
                    documents.append(copy)
                history: Any = self._builders()
                history.collection(meta.history_table).insert_many(documents).execute(self._conn())
            return
        from dbsystem.query import literal, select

        source = (
            select(*columns, VALID_FROM, literal(moment).as_(VALID_TO))
            .from_(meta.table)
            .where(condition)
        )
        self._sql().insert_into(meta.history_table).from_select(
            [*columns, VALID_FROM, VALID_TO], source
        ).execute(self._conn())

    def select(self, cls: type[Any], query: EntityQuery[Any]) -> list[Any]:
        meta = cls.__dbsystem__
        key = meta.primary_key.column
        if self.kind == "document" and query._as_of is not None:
            return self._select_as_of(cls, query)
        if self.kind == "document":
            builder = self._collection(meta)
            if query._where is not None:
                builder = builder.where(_document_filter(query._where, key))
            for column, direction in query._order:
                builder = builder.sort("_id" if column == key else column, direction)
            if query._offset:
                builder = builder.skip(query._offset)
            if query._limit:
                builder = builder.limit(query._limit)
            documents = builder.all(self._conn())
            rows = [_from_document(d, key) for d in documents]
        elif query._as_of is not None:
            return self._select_as_of(cls, query)
        else:
            builder = self._sql().select(*[c.column for c in meta.columns]).from_(meta.table)
            if query._where is not None:
                builder = builder.where(query._where)
            for column, direction in query._order:
                builder = builder.order_by(column, direction)
            if query._limit is not None:
                builder = builder.limit(query._limit)
            if query._offset is not None:
                builder = builder.offset(query._offset)
            if query._lock is not None:
                mode, options = query._lock
                lock = builder.for_update if mode == "update" else builder.for_share
                builder = lock(**options)
            rows = builder.execute(self._conn())
        entities: list[Any] = cls._from_rows(rows, self.dialect)
        return entities

    def _versions(
        self, cls: type[Any], where: Expr | None, moment: datetime.datetime | None
    ) -> list[dict[str, Any]]:
        """Rows of the current table and of the history (valid at ``moment`` if given),
        each with its valid_from and valid_to (None for current rows)."""
        meta = cls.__dbsystem__
        key = meta.primary_key.column
        if self.kind == "document":
            current = self._collection(meta)
            past: Any = self._builders()
            past = past.collection(meta.history_table)
            if where is not None:
                current = current.where(_document_filter(where, key))
                past = past.where(where)
            if moment is not None:
                current = current.where(col(VALID_FROM) <= moment)
                past = past.where((col(VALID_FROM) <= moment) & (col(VALID_TO) > moment))
            found = [_from_document(d, key) for d in current.all(self._conn())]
            for document in past.all(self._conn()):
                document.pop("_id", None)
                found.append(_from_document(document, key))
            for row in found:
                row.setdefault(VALID_TO, None)
            return found
        from dbsystem.query import literal

        columns = [c.column for c in meta.columns]
        current_q = (
            self._sql().select(*columns, VALID_FROM, literal(None).as_(VALID_TO)).from_(meta.table)
        )
        past_q = self._sql().select(*columns, VALID_FROM, VALID_TO).from_(meta.history_table)
        if where is not None:
            current_q, past_q = current_q.where(where), past_q.where(where)
        if moment is not None:
            current_q = current_q.where(col(VALID_FROM) <= moment)
            past_q = past_q.where((col(VALID_FROM) <= moment) & (col(VALID_TO) > moment))
        rows: list[dict[str, Any]] = current_q.execute(self._conn())
        rows += past_q.execute(self._conn())
        return rows

    def _select_as_of(self, cls: type[Any], query: EntityQuery[Any]) -> list[Any]:
        rows = self._versions(cls, query._where, query._as_of)
        for column, direction in reversed(query._order):  # stable sorts, last key first

            def sort_key(row: dict[str, Any], name: str = column) -> tuple[bool, Any]:
                return (row[name] is not None, row[name])  # NULLs low, as in the builder

            rows.sort(key=sort_key, reverse=direction.lower() == "desc")
        start = query._offset or 0
        end = start + query._limit if query._limit is not None else None
        entities: list[Any] = cls._from_rows(rows[start:end], self.dialect)
        return entities

    def history(self, cls: type[Any], key: Any) -> list[Any]:
        meta = cls.__dbsystem__
        if not meta.versioned:
            raise InterfaceError(f"{cls.__name__} is not versioned=True")
        rows = self._versions(cls, col(meta.primary_key.column) == key, None)
        stamps = [
            (_stamp(r[VALID_FROM], self.dialect), _stamp(r[VALID_TO], self.dialect)) for r in rows
        ]
        entities = cls._from_rows(rows, self.dialect)
        # By the end of each period (the current version, which has none, last): periods
        # that start in the same millisecond on MongoDB still come out in order.
        versions = sorted(
            zip(entities, *zip(*stamps, strict=True), strict=True),
            key=lambda v: (v[2] is None, v[2] or v[1], v[1]),
        )
        return versions

    def count(self, cls: type[Any], query: EntityQuery[Any]) -> int:
        meta = cls.__dbsystem__
        if self.kind == "document":
            builder = self._collection(meta)
            if query._where is not None:
                builder = builder.where(_document_filter(query._where, meta.primary_key.column))
            return int(builder.count().execute(self._conn()))
        from dbsystem.query import count

        builder = self._sql().select(count().as_("n")).from_(meta.table)
        if query._where is not None:
            builder = builder.where(query._where)
        return int(builder.scalar_value(self._conn()))

    def _next_id(self, meta: Metadata) -> int:
        """MongoDB has no auto-increment: a counters collection numbers the keys."""
        handle: Any = self.db.connection(self.db_type)
        # The ORM's own numbering, not the user's data: the engine-side handle, also for a
        # user session (whose public ``database`` is refused).
        counters = handle._database["dbsystem_counters"]
        document = counters.find_one_and_update(
            {"_id": meta.table}, {"$inc": {"next": 1}}, upsert=True, return_document=True
        )
        return int(document["next"])


VALID_FROM = "valid_from"
VALID_TO = "valid_to"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(value: Any, dialect: str) -> datetime.datetime | None:
    """A valid_from/valid_to value as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value  # type: ignore[no-any-return]


_IN_CHUNK = 1000


def _related_class(owner: type[Entity], name: str) -> type[Entity]:
    annotation = owner.model_fields[name].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        for inner in (candidate, *typing.get_args(candidate)):
            if isinstance(inner, type) and issubclass(inner, Entity):
                return inner
    raise SchemaError(f"{owner.__name__}.{name}: the relation's type names no entity")


def _load_relation(owner: type[Entity], name: str, entities: list[Any], target: _Target) -> None:
    """Fill relation ``name`` on ``entities`` with one query (chunked for long key lists)."""
    options = owner.__dbsystem__.relations[name]
    other = _related_class(owner, name)
    other_meta = other.__dbsystem__
    if options.local_key is not None:  # many-to-one: fetch the parents by primary key
        key_field = options.local_key
        keys = list(
            dict.fromkeys(
                e.__dict__[key_field] for e in entities if e.__dict__[key_field] is not None
            )
        )
        by_key: dict[Any, Any] = {}
        pk = other_meta.primary_key
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            for found in EntityQuery(other, target).where(col(pk.column).in_(chunk)).all():
                by_key[found.__dict__[pk.field]] = found
        for entity in entities:
            entity.__dict__[name] = by_key.get(entity.__dict__[key_field])
        return
    # one-to-many: fetch the children by their foreign key
    foreign = other_meta.by_field.get(options.foreign_key or "")
    if foreign is None:
        raise SchemaError(f"{other.__name__} has no field {options.foreign_key!r}")
    own_pk = owner.__dbsystem__.primary_key.field
    keys = [e.__dict__[own_pk] for e in entities]
    children: dict[Any, list[Any]] = {key: [] for key in keys}
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        query = EntityQuery(other, target).where(col(foreign.column).in_(chunk))
        for child in query.order_by(other_meta.primary_key.field).all():
            children[child.__dict__[foreign.field]].append(child)
    for entity in entities:
        entity.__dict__[name] = children[entity.__dict__[own_pk]]


class _RelationRef:
    """``Author.books`` on the class: the relation, for ``include()``."""

    __slots__ = ("name", "owner")

    def __init__(self, owner: type[Entity], name: str) -> None:
        self.owner, self.name = owner, name

    def __repr__(self) -> str:
        return f"{self.owner.__name__}.{self.name}"


class _Persisted(set[str]):
    """The fields-set of a loaded or saved entity (see ``Entity._mark_persisted``)."""

    __slots__ = ()


def _to_document(row: dict[str, Any], key: str | None) -> dict[str, Any]:
    """A row as a BSON-encodable document: the key as ``_id``; Decimal as Decimal128; date,
    time and UUID (which BSON lacks or encodes ambiguously) as datetime and text."""
    from bson.decimal128 import Decimal128

    document = {}
    for column, value in row.items():
        if isinstance(value, decimal.Decimal):
            value = Decimal128(value)
        elif isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            value = datetime.datetime(value.year, value.month, value.day)
        elif isinstance(value, (datetime.time, uuid.UUID)):
            value = value.isoformat() if isinstance(value, datetime.time) else str(value)
        document["_id" if column == key else column] = value
    return document


def _from_document(document: dict[str, Any], key: str) -> dict[str, Any]:
    from bson.decimal128 import Decimal128

    return {
        (key if name == "_id" else name): (
            value.to_decimal() if isinstance(value, Decimal128) else value
        )
        for name, value in document.items()
    }


def _document_filter(condition: Expr, key_column: str) -> Expr:
    """The same condition with the primary key column named ``_id`` (MongoDB's key)."""
    from dbsystem.query import expr as e

    def rename(node: e.Expr) -> e.Expr:
        if isinstance(node, e.Column):
            return e.Column("_id") if node.name == key_column and node.table is None else node
        if isinstance(node, e.Compare):
            return e.Compare(node.op, rename(node.left), rename(node.right))
        if isinstance(node, e.BoolOp):
            return e.BoolOp(node.op, [rename(i) for i in node.items])
        if isinstance(node, e.Unary):
            return e.Unary(node.op, rename(node.operand))
        if isinstance(node, e.In) and node.subquery is None:
            return e.In(
                rename(node.expr),
                [i.value if isinstance(i, e.Value) else i for i in node.items],
                negate=node.negate,
            )
        if isinstance(node, e.Between):
            return e.Between(rename(node.expr), node.low, node.high)
        if isinstance(node, e.Like):
            return e.Like(
                rename(node.expr), node.pattern, insensitive=node.insensitive, negate=node.negate
            )
        return node

    return rename(condition)


def entities_tables(entities: Iterable[type[Entity]]) -> list[Metadata]:
    """The metadata of entity classes (for schema creation)."""
    return [entity.__dbsystem__ for entity in entities]
