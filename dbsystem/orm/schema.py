"""Schema from entity classes: SQL DDL per dialect (SQLAlchemy Core), MongoDB indexes.

``create_tables`` is idempotent (``CREATE TABLE IF NOT EXISTS``, indexes likewise) and
creates tables in the order of their foreign keys; ``drop_tables`` drops in reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from dbsystem.errors import SchemaError
from dbsystem.kernel.types import DatabaseType
from dbsystem.orm.fields import sa_type, sql_type
from dbsystem.query._compile import _DIALECTS

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager
    from dbsystem.orm.entity import Entity, Metadata

T = TypeVar("T")

__all__ = ["SchemaMixin", "create_tables", "document_step", "drop_tables", "sql_tables"]

VALID_FROM = "valid_from"
VALID_TO = "valid_to"


def sql_tables(entities: Sequence[type[Entity]]) -> list[sa.Table]:
    """SQLAlchemy tables for entity classes, sorted so that referenced tables come first."""
    metadata = sa.MetaData()
    for entity in entities:
        meta: Metadata = entity.__dbsystem__
        columns = []
        for spec in meta.columns:
            args: list[Any] = [spec.column, sql_type(spec)]
            if spec.options.foreign_key:
                args.append(sa.ForeignKey(spec.options.foreign_key))
            columns.append(
                sa.Column(
                    *args,
                    primary_key=spec.options.primary_key,
                    autoincrement=spec.options.auto_increment
                    if spec.options.primary_key
                    else False,
                    nullable=spec.nullable,
                    unique=spec.options.unique or None,
                    index=spec.options.index or None,
                )
            )
        if meta.versioned:
            columns.append(sa.Column(VALID_FROM, sa_type("datetime"), nullable=False))
        sa.Table(meta.table, metadata, *columns, mysql_charset="utf8mb4")
        if meta.versioned:
            # Every previous version: the entity's columns (no keys or constraints: a row
            # appears once per version) and the period it was valid.
            past = [sa.Column(spec.column, sql_type(spec), nullable=True) for spec in meta.columns]
            sa.Table(
                meta.history_table,
                metadata,
                sa.Column("history_id", sa.Integer, primary_key=True, autoincrement=True),
                *past,
                sa.Column(VALID_FROM, sa_type("datetime"), nullable=False),
                sa.Column(VALID_TO, sa_type("datetime"), nullable=False),
                sa.Index(f"ix_{meta.history_table}_key", meta.primary_key.column),
                mysql_charset="utf8mb4",
            )
    try:
        return list(metadata.sorted_tables)
    except sa.exc.SQLAlchemyError as exc:
        raise SchemaError(f"cannot order the tables: {exc}") from exc


def document_step(handle: Any, operation: str, collection: str, call: Callable[[Any], T]) -> T:
    """One MongoDB schema or history step of the ORM (``call(collection_object)``: create
    or drop a collection or an index, read or write the migration history), run through
    the handle's hooks as ``operation``, never on the driver database directly: for a user
    session it is checked and audited like any operation (and refused, with
    ``PermissionDenied``, without the permission its action needs: dropping is ``ddl``,
    creating a collection ``other``, which needs ADMIN)."""
    result: T = handle.run(operation, collection, {operation: collection}, call)
    return result


def _target(db: DatabaseManager, db_type: DatabaseType | None) -> tuple[DatabaseType, Any]:
    chosen = db_type or db.mode
    if chosen is None:
        raise SchemaError("several database types have pools: pass db_type=")
    return chosen, db.backend(chosen)


def create_tables(
    db: DatabaseManager, entities: Sequence[type[Entity]], *, db_type: DatabaseType | None = None
) -> None:
    """Create what the entities need, leaving what exists alone."""
    chosen, backend = _target(db, db_type)
    kind = backend.kind
    if kind == "document":
        with db.connection(chosen) as handle:
            for entity in entities:
                meta = entity.__dbsystem__
                for spec in meta.columns:
                    if spec.options.primary_key:
                        continue
                    if spec.options.unique or spec.options.index:
                        document_step(
                            handle,
                            "create_index",
                            meta.table,
                            _index(spec.column, spec.options.unique),
                        )
        return
    if kind != "sql":
        raise SchemaError(f"no tables on {chosen.value}")
    dialect = _DIALECTS[backend.dialect]
    with db.connection(chosen) as conn:
        for table in sql_tables(entities):
            conn.execute(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
            for index in table.indexes:
                conn.execute(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))


def drop_tables(
    db: DatabaseManager, entities: Sequence[type[Entity]], *, db_type: DatabaseType | None = None
) -> None:
    """Drop the entities' tables (or collections) that exist."""
    chosen, backend = _target(db, db_type)
    if backend.kind == "document":
        with db.connection(chosen) as handle:
            for entity in entities:
                meta = entity.__dbsystem__
                tables = (meta.table, meta.history_table) if meta.versioned else (meta.table,)
                for table in tables:
                    document_step(handle, "drop", table, _drop_collection)
        return
    quote = _DIALECTS[backend.dialect].identifier_preparer.quote
    with db.connection(chosen) as conn:
        for table in reversed(sql_tables(entities)):
            conn.execute(f"DROP TABLE IF EXISTS {quote(table.name)}")


def _index(column: str, unique: bool) -> Callable[[Any], Any]:
    return lambda collection: collection.create_index(column, unique=unique)


def _drop_collection(collection: Any) -> None:
    collection.database.drop_collection(collection.name)


class SchemaMixin:
    """Adds ``create_tables``/``drop_tables`` to a manager or a user session (the facade)."""

    __slots__ = ()

    def create_tables(
        self, entities: Sequence[type[Any]], *, db_type: DatabaseType | None = None
    ) -> None:
        """Create the tables (or MongoDB collections and indexes) of entity classes.

        Idempotent: what exists already is left alone.
        """
        runner: Any = self
        create_tables(runner, entities, db_type=db_type)

    def drop_tables(
        self, entities: Sequence[type[Any]], *, db_type: DatabaseType | None = None
    ) -> None:
        """Drop the tables (or collections) of entity classes, if they exist."""
        runner: Any = self
        drop_tables(runner, entities, db_type=db_type)
