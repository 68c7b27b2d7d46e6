"""Entity fields: pydantic fields carrying column options, and their SQL types.

``Field(...)`` is pydantic's ``Field`` (validation, defaults, JSON) plus the options a
database needs: primary key, auto-increment, unique, index, maximum length, foreign key,
column name, version counter. The options travel in the field's metadata, where pydantic
leaves them alone, and ``column_spec`` reads them back with the Python type.
"""

from __future__ import annotations

import datetime
import decimal
import re
import types
import typing
import uuid
from dataclasses import dataclass
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as sa_mysql

from dbsystem.errors import SchemaError

__all__ = [
    "NOT_LOADED",
    "ColumnOptions",
    "ColumnSpec",
    "Field",
    "Relation",
    "RelationOptions",
    "column_spec",
]


@dataclass(frozen=True, slots=True)
class ColumnOptions:
    """What ``Field`` records for the database."""

    primary_key: bool = False
    auto_increment: bool = False
    unique: bool = False
    index: bool = False
    nullable: bool | None = None
    max_length: int | None = None
    foreign_key: str | None = None
    column: str | None = None
    version: bool = False


@dataclass(frozen=True, slots=True)
class RelationOptions:
    """What ``Relation`` records: which side holds the key, and the key's field."""

    local_key: str | None = None
    """Many-to-one: the field of this entity that holds the other's primary key."""
    foreign_key: str | None = None
    """One-to-many: the field of the other entity that holds this one's primary key."""


class _NotLoaded:
    """The value of a relation that was not loaded: any use of it raises, naming the fix."""

    __slots__ = ()

    def _refuse(self, *args: Any) -> Any:
        from dbsystem.errors import InterfaceError

        raise InterfaceError(
            "this relation was not loaded: load it with .include('<relation>') on the query "
            "(relations are never fetched behind your back)"
        )

    __iter__ = __len__ = __bool__ = __getitem__ = __contains__ = _refuse

    def __getattr__(self, name: str) -> Any:
        return self._refuse()

    def __repr__(self) -> str:
        return "<not loaded>"


NOT_LOADED: Any = _NotLoaded()
"""What an entity holds for a relation the query did not ``include``."""


def Relation(*, local_key: str | None = None, foreign_key: str | None = None) -> Any:
    """A relation to another entity, loaded only on request (``query.include(name)``).

    Many-to-one (this entity holds the key): ``author: Author | None =
    Relation(local_key="author_id")``. One-to-many (the other entity holds it):
    ``books: list[Book] = Relation(foreign_key="author_id")``. Until loaded, using the
    attribute raises ``InterfaceError``: no hidden I/O.
    """
    if (local_key is None) == (foreign_key is None):
        raise SchemaError("Relation() takes local_key= (many-to-one) or foreign_key= (one-to-many)")
    info = pydantic.Field(default=NOT_LOADED, exclude=True)
    info.metadata.append(RelationOptions(local_key=local_key, foreign_key=foreign_key))
    return info


def relation_options(info: pydantic.fields.FieldInfo) -> RelationOptions | None:
    """The relation options of a field, or None for a column."""
    return next((m for m in info.metadata if isinstance(m, RelationOptions)), None)


def Field(
    default: Any = ...,
    *,
    default_factory: Any = None,
    primary_key: bool = False,
    auto_increment: bool = False,
    unique: bool = False,
    index: bool = False,
    nullable: bool | None = None,
    max_length: int | None = None,
    foreign_key: str | None = None,
    column: str | None = None,
    version: bool = False,
    **pydantic_options: Any,
) -> Any:
    """A pydantic field with column options.

    ``primary_key`` (one per entity), ``auto_increment`` (an int key the database numbers),
    ``unique``, ``index``, ``nullable`` (default: from the type, ``X | None``),
    ``max_length`` (also validated), ``foreign_key="table.column"``, ``column`` (the
    column's name when it differs from the field's), ``version=True`` (an int bumped on
    every update and checked: optimistic locking).
    """
    if default_factory is not None:
        info = pydantic.Field(
            default_factory=default_factory, max_length=max_length, **pydantic_options
        )
    else:
        info = pydantic.Field(default, max_length=max_length, **pydantic_options)
    info.metadata.append(
        ColumnOptions(
            primary_key=primary_key,
            auto_increment=auto_increment,
            unique=unique,
            index=index,
            nullable=nullable,
            max_length=max_length,
            foreign_key=foreign_key,
            column=column,
            version=version,
        )
    )
    return info


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One entity field as a column."""

    field: str
    column: str
    python_type: Any
    nullable: bool
    options: ColumnOptions


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) for ``X``, ``X | None``, ``Optional[X]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def column_spec(name: str, info: pydantic.fields.FieldInfo) -> ColumnSpec:
    """The column for an entity field."""
    options = next((m for m in info.metadata if isinstance(m, ColumnOptions)), ColumnOptions())
    python_type, optional = _unwrap(info.annotation)
    nullable = options.nullable if options.nullable is not None else optional
    if options.primary_key:
        nullable = False
    return ColumnSpec(
        field=name,
        column=options.column or name,
        python_type=python_type,
        nullable=nullable,
        options=options,
    )


def portable_type(spec: ColumnSpec) -> str:
    """The column's type as a portable name (what migration files record)."""
    kind = typing.get_origin(spec.python_type) or spec.python_type
    if kind is bool:
        return "boolean"
    if kind is int:
        # Keys too: a foreign key column (bigint) must have its target's type on MySQL.
        return "bigint"
    if kind is float:
        return "float"
    if kind is decimal.Decimal:
        return "numeric"
    if kind is str or (isinstance(kind, type) and issubclass(kind, str)):
        if spec.options.max_length:
            return f"varchar({spec.options.max_length})"
        keyed = spec.options.primary_key or spec.options.unique or spec.options.index
        # MySQL cannot index TEXT without a prefix length: keyed strings get VARCHAR(255).
        if keyed or spec.options.foreign_key or kind is not str:
            return "varchar(255)"
        return "text"
    if kind is bytes:
        return "bytes"
    if kind is datetime.datetime:
        return "datetime"
    if kind is datetime.date:
        return "date"
    if kind is datetime.time:
        return "time"
    if kind is uuid.UUID:
        return "uuid"
    if kind in (dict, list):
        return "json"
    if isinstance(kind, type) and issubclass(kind, int):
        return "bigint"
    raise SchemaError(f"field {spec.field!r}: no column type for {spec.python_type!r}")


_VARCHAR = re.compile(r"varchar\((\d+)\)")


def sa_type(name: str) -> Any:
    """The SQLAlchemy type for a portable type name."""
    match = _VARCHAR.fullmatch(name)
    if match:
        return sa.String(int(match.group(1)))
    types_by_name: dict[str, Any] = {
        "boolean": sa.Boolean(),
        "integer": sa.Integer(),
        "bigint": sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        "float": sa.Float(),
        "numeric": sa.Numeric(18, 6),
        "text": sa.Text(),
        "bytes": sa.LargeBinary(),
        # Microseconds on MySQL too (DATETIME(6)); the ORM stores UTC there.
        "datetime": sa.DateTime(timezone=True).with_variant(sa_mysql.DATETIME(fsp=6), "mysql"),
        "date": sa.Date(),
        "time": sa.Time().with_variant(sa_mysql.TIME(fsp=6), "mysql"),
        # dbsystem sends UUIDs as their 36-character text.
        "uuid": sa.Uuid().with_variant(sa.CHAR(36), "mysql"),
        "json": sa.JSON(),
    }
    found = types_by_name.get(name)
    if found is None:
        raise SchemaError(f"unknown column type {name!r}")
    return found


def sql_type(spec: ColumnSpec) -> Any:
    """The SQLAlchemy type for a column."""
    return sa_type(portable_type(spec))
