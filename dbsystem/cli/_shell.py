"""``dbsystem shell``: an interactive prompt on one database, with history.

SQL databases take statements ended by ``;`` (several lines are joined until one ends).
Redis takes one command per line, words split as a shell does (``HSET user:1 name "Ada L"``).
MongoDB takes ``find COLLECTION [FILTER]``, ``count COLLECTION [FILTER]``,
``insert COLLECTION DOCUMENT|[DOCUMENTS]``, ``delete COLLECTION FILTER`` and
``aggregate COLLECTION PIPELINE``, with JSON arguments.

Dot commands work everywhere: ``.tables``, ``.json on|off``, ``.timing on|off``, ``.help``
and ``.quit``. On a terminal, lines are edited with readline and kept in a history file
(``~/.dbsystem_history``, or ``$DBSYSTEM_HISTORY``). Read from a pipe, the shell runs
the script and exits with 1 if any statement failed.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from dbsystem._facade import DatabaseManager
from dbsystem.errors import DBSystemError, InterfaceError

__all__ = ["Shell"]

_HELP = {
    "sql": "SQL statements end with ';'.",
    "kv": 'One Redis command per line: GET user:1, HSET user:1 name "Ada".',
    "document": (
        "find COLL [FILTER] | count COLL [FILTER] | insert COLL DOC|[DOCS] | "
        "delete COLL FILTER | aggregate COLL PIPELINE   (JSON arguments)"
    ),
}
_DOTS = ".tables  .json on|off  .timing on|off  .help  .quit"
_TABLES_SQL = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    "postgresql": (
        "SELECT table_name AS name FROM information_schema.tables "
        "WHERE table_schema = current_schema() ORDER BY table_name"
    ),
    "mysql": (
        "SELECT table_name AS name FROM information_schema.tables "
        "WHERE table_schema = DATABASE() ORDER BY table_name"
    ),
}


class Shell:
    """Reads statements, runs them through the manager's one pool, prints the results."""

    def __init__(
        self,
        manager: DatabaseManager,
        out: Console,
        err: Console,
        printer: Callable[[Any, bool], None],
        *,
        as_json: bool = False,
    ) -> None:
        self.manager = manager
        self.out, self.err = out, err
        self.print_result = printer
        self.as_json = as_json
        self.timing = False
        backend = manager.backend()
        self.kind: str = backend.kind
        self.dialect: str = str(getattr(backend, "dialect", ""))
        self.label = str(backend.url)
        self.failures = 0

    # -- input -----------------------------------------------------------------------------

    def run(self, interactive: bool) -> int:
        """Run until ``.quit`` or the end of input; 1 if a statement failed in a script."""
        lines = self._terminal_lines() if interactive else (line.rstrip("\n") for line in sys.stdin)
        if interactive:
            self.out.print(f"connected to {self.label}; .help for help", highlight=False)
        for statement in self._statements(lines):
            if statement in (".quit", ".exit"):
                break
            self.handle(statement)
        return 1 if self.failures and not interactive else 0

    def _terminal_lines(self) -> Iterator[str]:
        import readline

        history = Path(os.environ.get("DBSYSTEM_HISTORY", Path.home() / ".dbsystem_history"))
        try:
            readline.read_history_file(history)
        except OSError:
            pass  # no history yet
        readline.set_history_length(1000)
        prompt, more = f"{self.kind if self.kind != 'sql' else self.dialect}> ", "...> "
        try:
            pending = False
            while True:
                try:
                    line = input(more if pending else prompt)
                except EOFError:
                    self.out.print()
                    return
                except KeyboardInterrupt:  # Ctrl-C drops the statement being typed
                    self.out.print()
                    pending = False
                    yield "\x00reset"
                    continue
                pending = self._continues(line, pending)
                yield line
        finally:
            try:
                readline.write_history_file(history)
            except OSError as exc:
                self.err.print(f"warning: history not saved: {exc}", highlight=False)

    def _continues(self, line: str, pending: bool) -> bool:
        stripped = line.strip()
        if self.kind != "sql" or (not pending and stripped.startswith(".")):
            return False
        return bool(stripped) and not stripped.endswith(";") or (pending and not stripped)

    def _statements(self, lines: Iterable[str]) -> Iterator[str]:
        """Whole statements: SQL joined up to ';', other kinds one per line."""
        buffer: list[str] = []
        for line in lines:
            if line == "\x00reset":
                buffer = []
                continue
            stripped = line.strip()
            if not buffer and (not stripped or stripped.startswith(("--", "#"))):
                continue
            if not buffer and stripped.startswith("."):
                yield stripped
                continue
            if self.kind != "sql":
                yield stripped
                continue
            buffer.append(line)
            if stripped.endswith(";"):
                yield "\n".join(buffer).strip().rstrip(";").strip()
                buffer = []
        if buffer and "\n".join(buffer).strip():
            yield "\n".join(buffer).strip().rstrip(";").strip()

    # -- running ---------------------------------------------------------------------------

    def handle(self, statement: str) -> None:
        """Run one statement or dot command and print what it gives."""
        started = time.perf_counter()
        try:
            if statement.startswith("."):
                self._dot(statement)
                return
            result = self._execute(statement)
        except DBSystemError as exc:
            self.failures += 1
            self.err.print(Text("error: ", style="red") + Text(str(exc)), highlight=False)
            return
        self.print_result(result, self.as_json)
        if self.timing:
            self.out.print(f"({(time.perf_counter() - started) * 1000:.2f} ms)")

    def _execute(self, statement: str) -> Any:
        if self.kind == "kv":
            try:
                words = shlex.split(statement)
            except ValueError as exc:
                raise InterfaceError(f"cannot split the command: {exc}") from None
            redis: Any = self.manager.connection()
            with redis as conn:
                return conn.execute(*words)
        if self.kind == "document":
            return self._mongo(statement)
        from dbsystem.cli import _returns_rows

        with self.manager.connection() as conn:
            if _returns_rows(statement):
                return conn.fetch_all(statement)
            return {"rowcount": int(conn.execute(statement))}

    def _mongo(self, statement: str) -> Any:
        verb, _, rest = statement.partition(" ")
        name, _, argument = rest.strip().partition(" ")
        if not name:
            raise InterfaceError(f"usage: {_HELP['document']}")
        try:
            value = json.loads(argument) if argument.strip() else None
        except json.JSONDecodeError as exc:
            raise InterfaceError(f"the argument is not JSON: {exc}") from None
        documents: Any = self.manager.query()
        collection = documents.collection(name).ids_as_str()
        verb = verb.lower()
        if verb == "find":
            return collection.find(value or {}).all()
        if verb == "count":
            return collection.find(value or {}).count().execute()
        if verb == "insert" and isinstance(value, list):
            return collection.insert_many(value).execute()
        if verb == "insert" and isinstance(value, dict):
            return collection.insert_one(value).execute()
        if verb == "delete" and isinstance(value, dict):
            query = collection.find(value)
            return (query if value else query.all_documents()).delete_many().execute()
        if verb == "aggregate" and isinstance(value, list):
            return collection.aggregate(value).execute()
        raise InterfaceError(f"usage: {_HELP['document']}")

    def _dot(self, command: str) -> None:
        word, _, argument = command.partition(" ")
        if word == ".help":
            self.out.print(f"{_HELP[self.kind]}\n{_DOTS}", highlight=False)
        elif word in (".json", ".timing"):
            if argument.strip() not in ("on", "off"):
                raise InterfaceError(f"usage: {word} on|off")
            setattr(self, "as_json" if word == ".json" else "timing", argument.strip() == "on")
        elif word == ".tables":
            self.print_result(self._tables(), self.as_json)
        else:
            raise InterfaceError(f"unknown command {word!r}; {_DOTS}")

    def _tables(self) -> list[dict[str, Any]]:
        if self.kind == "sql":
            sql = _TABLES_SQL.get(self.dialect)
            if sql is None:
                raise InterfaceError(f".tables is not available on {self.dialect}")
            with self.manager.connection() as conn:
                return [{"name": row["name"]} for row in conn.fetch_all(sql)]
        handle: Any = self.manager.connection()
        with handle as conn:
            if self.kind == "document":
                return [{"name": name} for name in sorted(conn.database.list_collection_names())]
            return [{"key": key} for key in sorted(conn.scan())]
