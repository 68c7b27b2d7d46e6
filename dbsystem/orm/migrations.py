"""Versioned migrations: declarative operations, a history table, and autogeneration.

A migration is a Python file in a migrations directory, ``0002_add_age.py``::

    from dbsystem.orm.migrations import AddColumn, Column, CreateIndex, RunPython

    revision = "0002"
    down_revision = "0001"
    operations = [
        AddColumn("users", Column("age", "integer", nullable=True)),
        CreateIndex("users", ["age"]),
        RunPython(fill_ages, unfill_ages),      # a data step: plain Python, given the context
    ]

Operations are declarative so that the schema the history produces can be computed without
a database (as Django's makemigrations does): ``autogenerate`` compares it with the entity
classes and writes the operations for what is missing (tables, columns, indexes; MongoDB
collections and indexes). Every operation knows its reverse, so ``down`` undoes a migration.

On SQL databases each migration runs in a transaction with its history row (PostgreSQL and
SQLite roll DDL back; MySQL commits DDL implicitly, so a failed MySQL migration can be
half-applied). The history is the ``dbsystem_migrations`` table (or collection).
"""

from __future__ import annotations

import datetime
import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex as SACreateIndex
from sqlalchemy.schema import CreateTable as SACreateTable
from sqlalchemy.schema import DropIndex as SADropIndex

from dbsystem.errors import MigrationError
from dbsystem.kernel.types import DatabaseType
from dbsystem.orm.fields import ColumnSpec, portable_type, sa_type
from dbsystem.orm.schema import document_step
from dbsystem.query._compile import _DIALECTS

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = [
    "AddColumn",
    "Column",
    "CreateIndex",
    "CreateTable",
    "DropColumn",
    "DropIndex",
    "DropTable",
    "MigrationContext",
    "MigrationRunner",
    "RunPython",
    "SchemaState",
    "autogenerate",
]

HISTORY = "dbsystem_migrations"


@dataclass(frozen=True)
class Column:
    """A column in a migration: name, portable type, constraints."""

    name: str
    type: str
    nullable: bool = True
    primary_key: bool = False
    auto_increment: bool = False
    foreign_key: str | None = None

    def to_sa(self) -> sa.Column[Any]:
        args: list[Any] = [self.name, sa_type(self.type)]
        if self.foreign_key:
            args.append(sa.ForeignKey(self.foreign_key))
        return sa.Column(
            *args,
            primary_key=self.primary_key,
            nullable=self.nullable,
            autoincrement=self.auto_increment if self.primary_key else False,
        )


# -- operations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTable:
    """CREATE TABLE (a collection on MongoDB)."""

    table: str
    columns: Sequence[Column]

    def apply(self, ctx: MigrationContext) -> None:
        ctx.create_table(self.table, self.columns)

    def reverse(self) -> Any:
        return DropTable(self.table, self.columns)

    def change(self, state: SchemaState) -> None:
        if self.table in state.tables:
            raise MigrationError(f"table {self.table!r} already exists in the history")
        state.tables[self.table] = {c.name: c for c in self.columns}
        state.indexes[self.table] = {}


@dataclass(frozen=True)
class DropTable:
    """DROP TABLE; keeps the columns so that it can be reversed."""

    table: str
    columns: Sequence[Column] = ()

    def apply(self, ctx: MigrationContext) -> None:
        ctx.drop_table(self.table)

    def reverse(self) -> Any:
        return CreateTable(self.table, self.columns)

    def change(self, state: SchemaState) -> None:
        state.tables.pop(self.table, None)
        state.indexes.pop(self.table, None)


K = TypeVar("K")


def _kept(definition: K | None, drop: Any) -> K:
    """What a drop keeps to be reversed (the column, the index), or ``MigrationError``."""
    if definition is None:
        raise MigrationError(
            f"{type(drop).__name__}({drop.table!r}, {drop.name!r}) keeps no definition of "
            "what it drops, so it cannot be reversed"
        )
    return definition


@dataclass(frozen=True)
class AddColumn:
    """ALTER TABLE ADD COLUMN (nothing to do on MongoDB)."""

    table: str
    column: Column

    def apply(self, ctx: MigrationContext) -> None:
        ctx.add_column(self.table, self.column)

    def reverse(self) -> Any:
        return DropColumn(self.table, self.column.name, self.column)

    def change(self, state: SchemaState) -> None:
        state.tables.setdefault(self.table, {})[self.column.name] = self.column


@dataclass(frozen=True)
class DropColumn:
    """ALTER TABLE DROP COLUMN; keeps the column so that it can be reversed."""

    table: str
    name: str
    column: Column | None = None

    def apply(self, ctx: MigrationContext) -> None:
        ctx.drop_column(self.table, self.name)

    def reverse(self) -> Any:
        return AddColumn(self.table, _kept(self.column, self))

    def change(self, state: SchemaState) -> None:
        state.tables.get(self.table, {}).pop(self.name, None)


@dataclass(frozen=True)
class CreateIndex:
    """CREATE [UNIQUE] INDEX (a MongoDB index)."""

    table: str
    columns: Sequence[str]
    unique: bool = False
    name: str | None = None

    @property
    def index_name(self) -> str:
        return self.name or f"{'uq' if self.unique else 'ix'}_{self.table}_{'_'.join(self.columns)}"

    def apply(self, ctx: MigrationContext) -> None:
        ctx.create_index(self.table, list(self.columns), self.unique, self.index_name)

    def reverse(self) -> Any:
        return DropIndex(self.table, self.index_name, self)

    def change(self, state: SchemaState) -> None:
        state.indexes.setdefault(self.table, {})[self.index_name] = self


@dataclass(frozen=True)
class DropIndex:
    """DROP INDEX; keeps the definition so that it can be reversed."""

    table: str
    name: str
    index: CreateIndex | None = None

    def apply(self, ctx: MigrationContext) -> None:
        ctx.drop_index(self.table, self.name)

    def reverse(self) -> Any:
        return _kept(self.index, self)

    def change(self, state: SchemaState) -> None:
        state.indexes.get(self.table, {}).pop(self.name, None)


@dataclass(frozen=True)
class RunPython:
    """A data step: ``forward(ctx)`` on up, ``backward(ctx)`` on down (no-op if None)."""

    forward: Callable[[MigrationContext], Any]
    backward: Callable[[MigrationContext], Any] | None = None

    def apply(self, ctx: MigrationContext) -> None:
        self.forward(ctx)

    def reverse(self) -> Any:
        return RunPython(self.backward or (lambda ctx: None), self.forward)

    def change(self, state: SchemaState) -> None:
        return None


# -- schema state ---------------------------------------------------------------------------


@dataclass
class SchemaState:
    """The schema a sequence of migrations produces, computed without a database."""

    tables: dict[str, dict[str, Column]] = field(default_factory=dict)
    indexes: dict[str, dict[str, CreateIndex]] = field(default_factory=dict)

    @classmethod
    def of(cls, migrations: Sequence[ModuleType]) -> SchemaState:
        state = cls()
        for module in migrations:
            for operation in module.operations:
                operation.change(state)
        return state


def _entity_columns(specs: Sequence[ColumnSpec]) -> list[Column]:
    return [
        Column(
            name=s.column,
            type=portable_type(s),
            nullable=s.nullable,
            primary_key=s.options.primary_key,
            auto_increment=s.options.auto_increment,
            foreign_key=s.options.foreign_key,
        )
        for s in specs
    ]


def autogenerate(state: SchemaState, entities: Sequence[type[Any]]) -> list[Any]:
    """The operations that bring ``state`` to what ``entities`` declare (additions only)."""
    operations: list[Any] = []
    for entity in entities:
        meta = entity.__dbsystem__
        columns = _entity_columns(meta.columns)
        if meta.versioned:
            columns.append(Column("valid_from", "datetime", nullable=False))
            if meta.history_table not in state.tables:
                past = [
                    replace(
                        c, nullable=True, primary_key=False, auto_increment=False, foreign_key=None
                    )
                    for c in _entity_columns(meta.columns)
                ]
                operations.append(
                    CreateTable(
                        meta.history_table,
                        [
                            Column(
                                "history_id",
                                "integer",
                                nullable=False,
                                primary_key=True,
                                auto_increment=True,
                            ),
                            *past,
                            Column("valid_from", "datetime", nullable=False),
                            Column("valid_to", "datetime", nullable=False),
                        ],
                    )
                )
        existing = state.tables.get(meta.table)
        if existing is None:
            operations.append(CreateTable(meta.table, columns))
            existing_indexes: dict[str, CreateIndex] = {}
        else:
            for column in columns:
                if column.name not in existing:
                    operations.append(
                        AddColumn(
                            meta.table,
                            replace(column, nullable=True) if not column.nullable else column,
                        )
                    )
            existing_indexes = state.indexes.get(meta.table, {})
        for spec in meta.columns:
            if spec.options.primary_key or not (spec.options.unique or spec.options.index):
                continue
            index = CreateIndex(meta.table, [spec.column], unique=spec.options.unique)
            if index.index_name not in existing_indexes:
                operations.append(index)
    return operations


# -- applying -------------------------------------------------------------------------------


class MigrationContext:
    """What operations (and RunPython steps) act through: the manager and its connection."""

    def __init__(self, db: DatabaseManager, db_type: DatabaseType, conn: Any) -> None:
        self.db, self.db_type, self.conn = db, db_type, conn
        backend = db.backend(db_type)
        self.kind = backend.kind
        self.dialect_name = backend.dialect
        self._dialect = _DIALECTS.get(self.dialect_name)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Run SQL in the migration's transaction (SQL databases)."""
        return self.conn.execute(sql, params)

    def _ddl(self, element: Any) -> None:
        self.conn.execute(str(element.compile(dialect=self._dialect)))

    def _quote(self, name: str) -> str:
        assert self._dialect is not None
        return str(self._dialect.identifier_preparer.quote(name))

    def create_table(self, table: str, columns: Sequence[Column]) -> None:
        if self.kind == "document":
            document_step(
                self.conn, "create_collection", table, lambda c: c.database.create_collection(table)
            )
            return
        metadata = sa.MetaData()
        for column in columns:  # SQLAlchemy resolves a foreign key's target in its MetaData
            target, _, target_column = (column.foreign_key or "").rpartition(".")
            if target and target != table:
                stub = metadata.tables.get(target) or sa.Table(target, metadata)
                if target_column not in stub.c:
                    stub.append_column(sa.Column(target_column, sa_type(column.type)))
        self._ddl(SACreateTable(sa.Table(table, metadata, *[c.to_sa() for c in columns])))

    def drop_table(self, table: str) -> None:
        if self.kind == "document":
            document_step(self.conn, "drop", table, lambda c: c.database.drop_collection(table))
            return
        self.conn.execute(f"DROP TABLE {self._quote(table)}")

    def add_column(self, table: str, column: Column) -> None:
        if self.kind == "document":
            return
        assert self._dialect is not None
        compiler = self._dialect.ddl_compiler(self._dialect, None)  # type: ignore[arg-type]
        target = column.to_sa()
        sa.Table(table, sa.MetaData(), target)
        spec = compiler.get_column_specification(target)
        self.conn.execute(f"ALTER TABLE {self._quote(table)} ADD COLUMN {spec}")

    def drop_column(self, table: str, name: str) -> None:
        if self.kind == "document":
            return
        self.conn.execute(f"ALTER TABLE {self._quote(table)} DROP COLUMN {self._quote(name)}")

    def create_index(self, table: str, columns: list[str], unique: bool, name: str) -> None:
        if self.kind == "document":
            keys = [(c, 1) for c in columns]
            document_step(
                self.conn,
                "create_index",
                table,
                lambda c: c.create_index(keys, unique=unique, name=name),
            )
            return
        sa_table = sa.Table(table, sa.MetaData(), *[sa.Column(c) for c in columns])
        self._ddl(SACreateIndex(sa.Index(name, *[sa_table.c[c] for c in columns], unique=unique)))

    def drop_index(self, table: str, name: str) -> None:
        if self.kind == "document":
            document_step(self.conn, "drop_index", table, lambda c: c.drop_index(name))
            return
        sa_table = sa.Table(table, sa.MetaData())
        self._ddl(SADropIndex(sa.Index(name, _table=sa_table)))


_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.py$")


class MigrationRunner:
    """Applies and reverts the migrations of a directory on one database."""

    def __init__(
        self, db: DatabaseManager, directory: str | Path, *, db_type: DatabaseType | None = None
    ) -> None:
        self.db = db
        self.directory = Path(directory)
        chosen = db_type or db.mode
        if chosen is None:
            raise MigrationError("several database types have pools: pass db_type=")
        self.db_type = chosen
        self.kind = getattr(db.backend(chosen), "kind", "sql")

    # -- files ----------------------------------------------------------------------------

    def migrations(self) -> list[ModuleType]:
        """The migration modules, in order, checked to form one chain."""
        if not self.directory.is_dir():
            return []
        modules = []
        for path in sorted(self.directory.glob("[0-9][0-9][0-9][0-9]_*.py")):
            if not _NAME.match(path.name):
                raise MigrationError(f"{path.name}: name migrations NNNN_words.py")
            spec = importlib.util.spec_from_file_location(f"dbsystem_migration_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise MigrationError(f"{path.name} cannot be loaded: {exc}") from exc
            for attribute in ("revision", "down_revision", "operations"):
                if not hasattr(module, attribute):
                    raise MigrationError(f"{path.name} has no {attribute!r}")
            modules.append(module)
        previous = None
        for module in modules:
            if module.down_revision != previous:
                raise MigrationError(
                    f"migration {module.revision} follows {module.down_revision!r}, but the "
                    f"one before it is {previous!r}"
                )
            previous = module.revision
        return modules

    def new(self, message: str, *, entities: Sequence[type[Any]] = ()) -> Path:
        """Write the next migration file; with ``entities``, fill it by autogeneration."""
        existing = self.migrations()
        number = f"{len(existing) + 1:04d}"
        slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "migration"
        operations = autogenerate(SchemaState.of(existing), entities) if entities else []
        if entities and not operations:
            raise MigrationError("the entities match the migration history: nothing to add")
        down = repr(existing[-1].revision) if existing else "None"
        body = "".join(f"    {op!r},\n" for op in operations)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{number}_{slug}.py"
        path.write_text(
            f'"""{message}"""\n\n'
            "from dbsystem.orm.migrations import (  # noqa: F401\n"
            "    AddColumn, Column, CreateIndex, CreateTable, DropColumn, DropIndex, DropTable,\n"
            "    RunPython,\n)\n\n"
            f"revision = {number!r}\ndown_revision = {down}\n"
            f"operations = [\n{body}]\n",
            encoding="utf-8",
        )
        return path

    # -- history --------------------------------------------------------------------------

    def _ensure_history(self) -> None:
        if self.kind == "document":
            return
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {HISTORY} (revision VARCHAR(64) PRIMARY KEY, "
            "name VARCHAR(200) NOT NULL, applied_at VARCHAR(40) NOT NULL)",
            db_type=self.db_type,
        )

    def applied(self) -> list[str]:
        """The revisions applied, oldest first."""
        self._ensure_history()
        if self.kind == "document":
            with self.db.connection(self.db_type) as handle:
                found: list[dict[str, Any]] = document_step(
                    handle, "find", HISTORY, lambda c: list(c.find({}, sort=[("_id", 1)]))
                )
            return [doc["_id"] for doc in found]
        rows = self.db.fetch_all(
            f"SELECT revision FROM {HISTORY} ORDER BY revision", db_type=self.db_type
        )
        return [row["revision"] for row in rows]

    def status(self) -> list[tuple[str, str, bool]]:
        """(revision, description, applied) for every migration file."""
        done = set(self.applied())
        return [
            (m.revision, (m.__doc__ or "").strip(), m.revision in done) for m in self.migrations()
        ]

    def _run(self, module: ModuleType, operations: Sequence[Any], applying: bool) -> None:
        name = (module.__doc__ or module.__name__).strip()[:200]
        if self.kind == "document":
            with self.db.connection(self.db_type) as handle:
                ctx = MigrationContext(self.db, self.db_type, handle)
                for operation in operations:
                    operation.apply(ctx)
                record = {"_id": module.revision, "name": name, "applied_at": _now()}
                if applying:
                    document_step(handle, "insert_one", HISTORY, lambda c: c.insert_one(record))
                else:
                    document_step(
                        handle,
                        "delete_one",
                        HISTORY,
                        lambda c: c.delete_one({"_id": record["_id"]}),
                    )
            return
        with self.db.transaction(self.db_type) as conn:
            ctx = MigrationContext(self.db, self.db_type, conn)
            try:
                for operation in operations:
                    operation.apply(ctx)
            except MigrationError:
                raise
            except Exception as exc:
                raise MigrationError(f"migration {module.revision} failed: {exc}") from exc
            if applying:
                conn.execute(
                    f"INSERT INTO {HISTORY} (revision, name, applied_at) VALUES (:r, :n, :t)",
                    {"r": module.revision, "n": name, "t": _now()},
                )
            else:
                conn.execute(f"DELETE FROM {HISTORY} WHERE revision = :r", {"r": module.revision})

    def up(self, target: str | None = None) -> list[str]:
        """Apply pending migrations (up to ``target``); return the revisions applied."""
        done = set(self.applied())
        applied = []
        for module in self.migrations():
            if module.revision in done:
                continue
            self._run(module, module.operations, applying=True)
            applied.append(module.revision)
            if module.revision == target:
                break
        return applied

    def down(self, steps: int = 1) -> list[str]:
        """Revert the last ``steps`` applied migrations; return the revisions reverted."""
        by_revision = {m.revision: m for m in self.migrations()}
        reverted = []
        for revision in reversed(self.applied()[-steps:] if steps > 0 else []):
            module = by_revision.get(revision)
            if module is None:
                raise MigrationError(f"applied migration {revision} has no file")
            self._run(module, _reversal(module.operations), applying=False)
            reverted.append(revision)
        return reverted


def _reversal(operations: Sequence[Any]) -> list[Any]:
    """The reverse operations, last first, without index drops on tables the same reversal
    drops: MySQL refuses to drop an index a foreign key needs, and the table takes it along."""
    reverse = [op.reverse() for op in reversed(operations)]
    dropped = {op.table for op in reverse if isinstance(op, DropTable)}
    return [op for op in reverse if not (isinstance(op, DropIndex) and op.table in dropped)]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
