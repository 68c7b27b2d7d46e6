"""``dbsystem load``: bulk-load JSON, JSON lines or CSV into any backend.

The file's rows become:
- rows of a SQL table, created when missing, with column types inferred from the values;
  the rows load in one transaction, so a failure leaves no row behind (a table created
  for the load stays, empty);
- documents of a MongoDB collection;
- Redis hashes named ``TABLE:KEY`` (``--key`` names the field; the first by default),
  strings as they are and other values as JSON text.

A JSON file holding an object of arrays (``{"Artist": [...], "Album": [...]}``, as the
Chinook data set is shipped) loads one table per key, in the file's order.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from dbsystem._facade import DatabaseManager
from dbsystem.errors import ConfigurationError

__all__ = ["load_rows", "read_tables"]

Rows = list[dict[str, Any]]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_tables(path: Path, table: str | None) -> dict[str, Rows]:
    """The rows of ``path`` by table name (``table``, or the file's stem, or the JSON keys)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                tables = {table or path.stem: [_typed(row) for row in csv.DictReader(fh)]}
        elif suffix in (".jsonl", ".ndjson"):
            with path.open(encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            tables = {table or path.stem: rows}
        elif suffix == ".json":
            with path.open(encoding="utf-8") as fh:
                tables = _json_tables(json.load(fh), table or path.stem, table is not None)
        else:
            raise ConfigurationError(f"{path}: unknown file type (use .json, .jsonl or .csv)")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigurationError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    for name, rows in tables.items():
        if not _NAME.match(name):
            raise ConfigurationError(f"{name!r} is not a table name: pass --table")
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or not row:
                raise ConfigurationError(f"{path}: {name} row {number} is not an object")
        for column in _columns(rows):  # before anything is created: names become SQL
            if not _NAME.match(column):
                raise ConfigurationError(
                    f"{path}: {column!r} in {name} is not a column name "
                    "(letters, digits and _, not starting with a digit)"
                )
    return tables


def _json_tables(document: Any, default: str, only: bool) -> dict[str, Rows]:
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


def _typed(row: Mapping[str, str]) -> dict[str, Any]:
    """CSV text to numbers where the text is a number; empty cells to NULL."""
    typed: dict[str, Any] = {}
    for key, text in row.items():
        value: Any = text
        if text == "":
            value = None
        elif re.fullmatch(r"-?\d{1,18}", text):
            value = int(text)
        elif re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", text, re.IGNORECASE):
            value = float(text)
        typed[key] = value
    return typed


def _batches(rows: Rows, size: int) -> Iterator[Rows]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _columns(rows: Rows) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _sa_type(values: Iterator[Any]) -> Any:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool} and kinds:
        return sa.Boolean()
    if kinds <= {int, bool} and kinds:
        return sa.BigInteger()
    if kinds <= {int, float} and kinds:
        return sa.Double()
    return sa.Text()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _flat(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def load_rows(
    manager: DatabaseManager,
    tables: Mapping[str, Rows],
    *,
    create: bool,
    batch: int,
    key: str | None,
    advance: Callable[[int], None],
) -> dict[str, int]:
    """Load ``tables`` into the manager's one pool; ``advance(n)`` after each batch."""
    backend = manager.backend()
    kind = backend.kind
    if kind == "document":
        return _load_documents(manager, tables, batch, advance)
    if kind == "kv":
        return _load_hashes(manager, tables, batch, key, advance)
    return _load_sql(manager, backend, tables, create, batch, advance)


def _load_sql(
    manager: DatabaseManager,
    backend: Any,
    tables: Mapping[str, Rows],
    create: bool,
    batch: int,
    advance: Callable[[int], None],
) -> dict[str, int]:
    from dbsystem.query._compile import _DIALECTS

    with manager.connection() as conn:
        if create:  # first: DDL commits by itself on MySQL, and would split the load
            dialect = _DIALECTS[backend.dialect]
            for name, rows in tables.items():
                table = sa.Table(
                    name,
                    sa.MetaData(),
                    *(sa.Column(c, _sa_type(row.get(c) for row in rows)) for c in _columns(rows)),
                )
                conn.execute(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        with conn.transaction():  # every row of every table, or none
            return _each_batch(
                tables,
                batch,
                advance,
                lambda name, columns, part: conn.insert_many(
                    name, [{c: _flat(row.get(c)) for c in columns} for row in part]
                ),
            )


def _load_documents(
    manager: DatabaseManager,
    tables: Mapping[str, Rows],
    batch: int,
    advance: Callable[[int], None],
) -> dict[str, int]:
    query: Any = manager.query()
    return _each_batch(
        tables,
        batch,
        advance,
        lambda name, _, part: query.collection(name).insert_many([dict(r) for r in part]).execute(),
    )


def _load_hashes(
    manager: DatabaseManager,
    tables: Mapping[str, Rows],
    batch: int,
    key: str | None,
    advance: Callable[[int], None],
) -> dict[str, int]:
    redis: Any = manager.connection()
    with redis as conn:

        def write(name: str, columns: list[str], part: Rows) -> None:
            field = key or columns[0]
            commands: list[Sequence[Any]] = []
            for row in part:
                if row.get(field) is None:
                    raise ConfigurationError(f"a {name} row has no {field!r}: pass --key")
                pairs = [p for k, v in row.items() for p in (k, _text(v))]
                commands.append(("HSET", f"{name}:{row[field]}", *pairs))
            conn.pipeline(commands)

        return _each_batch(tables, batch, advance, write)


def _each_batch(
    tables: Mapping[str, Rows],
    batch: int,
    advance: Callable[[int], None],
    write: Callable[[str, list[str], Rows], object],
) -> dict[str, int]:
    """``write(name, columns, rows)`` each table's rows, ``batch`` at a time, in order;
    ``advance(n)`` after each. Return the row count of every table."""
    for name, rows in tables.items():
        columns = _columns(rows)
        for part in _batches(rows, batch):
            write(name, columns, part)
            advance(len(part))
    return {name: len(rows) for name, rows in tables.items()}
