"""``dbsystem load``: bulk-load JSON, JSON lines or CSV into any backend, streaming.

CSV and JSON lines are read as they load, one batch at a time: memory stays flat however
long the file (a ``.json`` document is parsed whole, as JSON must be). The file's rows
become:

- rows of a SQL table, created when missing with column types inferred from the first
  rows (``SAMPLE`` of them). All or nothing: every row of every table loads in one
  transaction, and when the load fails or is interrupted (Ctrl-C included) the rows are
  rolled back and a table the load created is dropped. ``replace=True`` empties the table
  in that same transaction first; ``upsert="KEY"`` updates the rows whose KEY is already
  there (KEY is then the primary key of a table the load creates);
- documents of a MongoDB collection (a collection the load created is dropped when it
  fails; documents already written to an existing collection stay);
- Redis hashes named ``TABLE:KEY`` (``--key`` names the field; the first by default),
  strings as they are and other values as JSON text (hashes already written stay).

A JSON file holding an object of arrays (``{"Artist": [...], "Album": [...]}``, as the
Chinook data set is shipped) loads one table per key, in the file's order.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from dbsystem._facade import DatabaseManager
from dbsystem.errors import ConfigurationError

__all__ = ["LoadFile", "Outcome", "load_rows", "open_file"]

Rows = list[dict[str, Any]]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAMPLE = 1000
"""How many first rows type the columns of a table the load creates."""


@dataclass
class Outcome:
    """What a load did: rows per table, and the tables it created (dropped on failure)."""

    loaded: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class LoadFile:
    """An input file opened for streaming: its tables' rows, read as they are consumed,
    and how far reading has got (``position`` of ``size`` bytes, for the progress bar)."""

    def __init__(self, path: Path, table: str | None) -> None:
        self.path = path
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
            raise ConfigurationError(f"{path}: unknown file type (use .json, .jsonl or .csv)")
        self._suffix = suffix
        try:
            self._raw: IO[bytes] = path.open("rb")
            self.size = path.stat().st_size
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")
        try:
            self.tables: list[tuple[str, Iterator[dict[str, Any]]]] = self._reading(table)
            for name, _ in self.tables:
                if not _NAME.match(name):
                    raise ConfigurationError(f"{name!r} is not a table name: pass --table")
        except BaseException:
            self.close()
            raise

    @property
    def position(self) -> int:
        """Bytes read so far."""
        return self._raw.tell() if not self._raw.closed else self.size

    def close(self) -> None:
        """Close the file."""
        self._text.close()

    def __enter__(self) -> LoadFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reading(self, table: str | None) -> list[tuple[str, Iterator[dict[str, Any]]]]:
        default = table or self.path.stem
        if self._suffix == ".csv":
            return [(default, self._guarded(self._csv_rows()))]
        if self._suffix in (".jsonl", ".ndjson"):
            return [(default, self._guarded(self._json_lines()))]
        try:
            document = json.load(self._text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{self.path}: not valid JSON: {exc}") from None
        return [
            (name, self._guarded(iter(rows)))
            for name, rows in _json_tables(document, default, table is not None).items()
        ]

    def _csv_rows(self) -> Iterator[dict[str, Any]]:
        for row in csv.DictReader(self._text):
            yield _typed(row)

    def _json_lines(self) -> Iterator[dict[str, Any]]:
        for line in self._text:
            if line.strip():
                yield json.loads(line)

    def _guarded(self, rows: Iterator[Any]) -> Iterator[dict[str, Any]]:
        """The rows, each checked; what the file gets wrong is a ``ConfigurationError``."""
        suffix = self._suffix[1:].upper()
        try:
            for number, row in enumerate(rows, start=1):
                if not isinstance(row, dict) or not row:
                    raise ConfigurationError(f"{self.path}: row {number} is not an object")
                yield row
        except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigurationError(f"{self.path}: not valid {suffix}: {exc}") from None


def open_file(path: Path, table: str | None) -> LoadFile:
    """``path`` opened for streaming (``ConfigurationError`` if it cannot be read)."""
    return LoadFile(path, table)


def _json_tables(document: Any, default: str, only: bool) -> dict[str, list[Any]]:
    if isinstance(document, list):
        return {default: document}
    if isinstance(document, dict) and all(isinstance(v, list) for v in document.values()):
        if only:  # --table picks one array out of several
            if default not in document:
                raise ConfigurationError(
                    f"no {default!r} in the file; it holds {', '.join(document)}"
                )
            return {default: document[default]}
        return dict(document)
    raise ConfigurationError("a JSON file must hold an array of objects, or an object of arrays")


def _typed(row: dict[str, str | None]) -> dict[str, Any]:
    """CSV text to numbers where the text is a number; empty cells to NULL."""
    typed: dict[str, Any] = {}
    for key, text in row.items():
        value: Any = text
        if text == "" or text is None:
            value = None
        elif re.fullmatch(r"-?\d{1,18}", text):
            value = int(text)
        elif re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", text, re.IGNORECASE):
            value = float(text)
        typed[key] = value
    return typed


def _columns(rows: Rows) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _sa_type(values: Iterable[Any], key: bool = False) -> Any:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool} and kinds:
        return sa.Boolean()
    if kinds <= {int, bool} and kinds:
        return sa.BigInteger()
    if kinds <= {int, float} and kinds:
        return sa.Double()
    return sa.String(255) if key else sa.Text()  # (MySQL keys only a bounded string)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _flat(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


class _Table:
    """One table's rows: the first ones (they name and type the columns), then the rest."""

    def __init__(self, path: Path, name: str, rows: Iterator[dict[str, Any]], batch: int) -> None:
        self.name, self.batch = name, batch
        self.first: Rows = list(itertools.islice(rows, max(batch, SAMPLE)))
        self._rest = rows
        if not self.first:
            raise ConfigurationError(
                f"{path}: {name} has no rows (a CSV header alone?): nothing to load"
            )
        self.columns = _columns(self.first)
        for column in self.columns:  # before anything is created: names become SQL
            if not _NAME.match(column):
                raise ConfigurationError(
                    f"{path}: {column!r} in {name} is not a column name "
                    "(letters, digits and _, not starting with a digit)"
                )

    def batches(self) -> Iterator[Rows]:
        """The rows, ``batch`` at a time; a column the first rows did not have is refused."""
        known = set(self.columns)
        rows = itertools.chain(self.first, self._rest)
        self.first = []  # (read once; the chain holds them until they are written)
        while part := list(itertools.islice(rows, self.batch)):
            for row in part:
                if not known.issuperset(row):
                    extra = sorted(set(row) - known)
                    raise ConfigurationError(
                        f"{self.name}: a row has column(s) {', '.join(extra)} that the first "
                        f"{SAMPLE} rows did not have (they typed the table)"
                    )
            yield part


def load_rows(
    manager: DatabaseManager,
    tables: Sequence[tuple[str, Iterable[dict[str, Any]]]],
    *,
    create: bool,
    batch: int,
    key: str | None,
    advance: Callable[[int], None],
    replace: bool = False,
    upsert: str | None = None,
    outcome: Outcome | None = None,
    path: Path = Path("input"),
) -> dict[str, int]:
    """Load ``tables`` (name, rows) into the manager's one pool; ``advance(n)`` after each
    batch. ``outcome`` (if given) tells, also after a failure, what was created and dropped."""
    outcome = outcome if outcome is not None else Outcome()
    backend = manager.backend()
    kind = backend.kind
    if (replace or upsert) and kind != "sql":
        raise ConfigurationError("--replace and --upsert load SQL tables only")
    if replace and upsert:
        raise ConfigurationError("--replace or --upsert: not both")
    if upsert is not None and not _NAME.match(upsert):
        raise ConfigurationError(f"--upsert {upsert!r} is not a column name")
    prepared = [_Table(path, name, iter(rows), batch) for name, rows in tables]
    if upsert is not None:
        for table in prepared:
            if upsert not in table.columns:
                raise ConfigurationError(f"--upsert {upsert!r}: {table.name} has no such column")
    if kind == "document":
        _load_documents(manager, prepared, advance, outcome)
    elif kind == "kv":
        _load_hashes(manager, prepared, key, advance, outcome)
    else:
        _load_sql(manager, backend, prepared, create, advance, outcome, replace, upsert)
    return outcome.loaded


_EXISTS = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name",
    "postgresql": "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = :name "
    "AND schemaname = ANY(current_schemas(false))",
    "mysql": "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
    "AND table_name = :name",
}


def _load_sql(
    manager: DatabaseManager,
    backend: Any,
    tables: list[_Table],
    create: bool,
    advance: Callable[[int], None],
    outcome: Outcome,
    replace: bool,
    upsert: str | None,
) -> None:
    from dbsystem.query import insert_into
    from dbsystem.query._compile import _DIALECTS

    dialect = _DIALECTS[backend.dialect]
    try:
        with manager.connection() as conn:
            if create:  # first: DDL commits by itself on MySQL, and would split the load
                for table in tables:
                    if conn.fetch_value(_EXISTS[backend.dialect], {"name": table.name}):
                        continue
                    definition = [
                        sa.Column(
                            c,
                            _sa_type((row.get(c) for row in table.first), key=c == upsert),
                            primary_key=c == upsert,
                            autoincrement=False,
                        )
                        for c in table.columns
                    ]
                    ddl = CreateTable(sa.Table(table.name, sa.MetaData(), *definition))
                    conn.execute(str(ddl.compile(dialect=dialect)))
                    outcome.created.append(table.name)
            with conn.transaction():  # every row of every table, or none
                for table in tables:
                    if replace:
                        conn.execute(str(sa.delete(sa.table(table.name)).compile(dialect=dialect)))
                    columns = table.columns
                    count = 0
                    for part in table.batches():
                        rows = [{c: _flat(row.get(c)) for c in columns} for row in part]
                        if upsert is None:
                            conn.insert_many(table.name, rows)
                        else:
                            insert_into(table.name).values(rows).upsert(conflict=[upsert]).execute(
                                conn
                            )
                        count += len(part)
                        advance(len(part))
                    outcome.loaded[table.name] = count
    except BaseException:
        _drop_created(manager, dialect, outcome)
        raise


def _drop_created(manager: DatabaseManager, dialect: Any, outcome: Outcome) -> None:
    """Drop the tables the failed load created (their rows were rolled back already)."""
    if not outcome.created:
        return
    with manager.connection() as conn:  # (a fresh one: the load's may be broken)
        for name in outcome.created:
            conn.execute(
                str(sa.schema.DropTable(sa.Table(name, sa.MetaData())).compile(dialect=dialect))
            )
            outcome.dropped.append(name)


def _load_documents(
    manager: DatabaseManager, tables: list[_Table], advance: Callable[[int], None], outcome: Outcome
) -> None:
    query: Any = manager.query()
    mongo: Any = manager.connection()
    with mongo as conn:
        existing = set(conn.database.list_collection_names())
    try:
        for table in tables:
            if table.name not in existing:
                outcome.created.append(table.name)
            count = 0
            for part in table.batches():
                query.collection(table.name).insert_many([dict(r) for r in part]).execute()
                count += len(part)
                advance(len(part))
            outcome.loaded[table.name] = count
    except BaseException:
        cleanup: Any = manager.connection()
        with cleanup as conn:
            for name in outcome.created:
                conn.database.drop_collection(name)
                outcome.dropped.append(name)
        raise


def _load_hashes(
    manager: DatabaseManager,
    tables: list[_Table],
    key: str | None,
    advance: Callable[[int], None],
    outcome: Outcome,
) -> None:
    redis: Any = manager.connection()
    with redis as conn:
        for table in tables:
            field_name = key or table.columns[0]
            count = 0
            for part in table.batches():
                commands: list[Sequence[Any]] = []
                for row in part:
                    if row.get(field_name) is None:
                        raise ConfigurationError(
                            f"a {table.name} row has no {field_name!r}: pass --key"
                        )
                    pairs = [p for k, v in row.items() for p in (k, _text(v))]
                    commands.append(("HSET", f"{table.name}:{row[field_name]}", *pairs))
                conn.pipeline(commands)
                count += len(part)
                advance(len(part))
            outcome.loaded[table.name] = count
