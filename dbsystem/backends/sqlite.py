"""SQLite on the standard library's sqlite3.

* Files open in WAL mode (readers do not block the writer) with foreign keys on and a busy
  timeout of ``connect_timeout``; ``?synchronous=normal`` and ``?journal_mode=...`` in the
  URL override the defaults.
* ``sqlite://:memory:`` gives one in-memory database per pool, shared by all its connections
  (SQLite's ``memdb`` VFS, which keeps ordinary busy-timeout locking, unlike ``cache=shared``).
  It allows one transaction at a time: a reader waits (up to ``connect_timeout``) while
  another connection holds a write transaction, then gets ``OperationalError``; use a file
  for concurrent readers and writers. The backend holds one extra connection so the
  database outlives idle-timeout closes.
* Autocommit outside ``transaction()`` (sqlite3 ``isolation_level=None``); ``BEGIN`` opens a
  transaction, savepoints nest. SQLite transactions are serializable, which satisfies every
  standard isolation level; a read-only transaction sets ``PRAGMA query_only``.
* sqlite3 binds ``:name`` parameters natively, so statements pass through untouched, but
  for a list after ``IN`` (``_params.expand_lists``). Values
  sqlite3 has no storage class for (UUID, date, datetime, time, dict, list) are
  stored as text (ISO 8601, JSON), converted only after sqlite3 refuses them, so the common
  path pays nothing; they read back as text. A Decimal is bound as the number it is (an
  integer, or a float when 15 significant digits hold it; text beyond that).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from dbsystem.backends._params import expand_lists
from dbsystem.backends._session import PLAIN, changes_session
from dbsystem.backends._translate import translate
from dbsystem.backends.base import (
    Backend,
    Capabilities,
    StandardSQLConnection,
    check_options,
)
from dbsystem.errors import (
    ConfigurationError,
    ConnectionFailed,
    DBSystemError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import ExecuteResult, Row
from dbsystem.kernel.url import DatabaseURL

__all__ = ["SQLiteBackend", "SQLiteConnection"]

_memory_ids = itertools.count(1)

# SQLite primary result codes (the low byte of sqlite_errorcode).
_SQLITE_ERROR = 1
_SQLITE_CANTOPEN = 14
_SQLITE_CONSTRAINT = 19
_SQLITE_MISMATCH = 20
_SQLITE_RANGE = 25

# What sqlite3 raises for a statement: its own errors, and these two for values it cannot bind.
_ERRORS = (sqlite3.Error, ValueError, OverflowError)
# Connection-scoped PRAGMAs (integer valued) a pinned session gets back as the pool set them.
_SESSION_PRAGMAS = (
    "foreign_keys",
    "query_only",
    "recursive_triggers",
    "defer_foreign_keys",
    "reverse_unordered_selects",
    "ignore_check_constraints",
    "automatic_index",
    "cell_size_check",
    "trusted_schema",
    "cache_size",
    "temp_store",
    "busy_timeout",
)


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    try:
        row = conn.execute(f"PRAGMA {name}").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]


_JOURNAL_MODES = frozenset({"wal", "delete", "truncate", "persist", "memory", "off"})
_SYNCHRONOUS = frozenset({"off", "normal", "full", "extra"})


def _decimal(value: Decimal) -> Any:
    """A Decimal as the number SQLite computes with, so that it compares and adds as a
    number (bound as text, ``x <= '-1.50'`` would hold for every number ``x``): an integer
    when whole, a float when 15 significant digits hold it exactly; beyond that, text with
    the exact digits (SQLite has no decimal type to keep them in)."""
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value() and abs(value) < 2**63:
        return int(value)
    if len(value.normalize().as_tuple().digits) <= 15:
        return float(value)
    return str(value)


def _adapt(value: Any) -> Any:
    """Text for the values sqlite3 has no storage class for (it stores them as TEXT)."""
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        # sqlite3's own form (what its default adapter writes when a datetime is bound
        # alone): one text per instant whichever path bound it, microseconds only when not
        # zero; text order is still time order ("...:05" < "...:05.000001" < "...:06").
        return value.isoformat(" ")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=_json_value)
    return value


def _json_value(value: Any) -> Any:
    """JSON for what ``json`` cannot write, as the same value is stored alone."""
    if isinstance(value, Decimal | uuid.UUID | datetime.date | datetime.time):
        return _adapt(value)
    raise ProgrammingError(
        f"a {type(value).__name__} cannot be stored in JSON on SQLite", backend="sqlite"
    )


_NATIVE = (type(None), int, float, str, bytes, bytearray, memoryview)


def _refused(value: Any) -> bool:
    """Whether sqlite3 refuses to bind ``value`` (no storage class, no adapter of its own)."""
    return (
        not isinstance(value, _NATIVE)
        and (type(value), sqlite3.PrepareProtocol) not in sqlite3.adapters
    )


class SQLiteConnection(StandardSQLConnection):
    """One sqlite3 connection, rows as dicts, errors translated."""

    backend_name = "sqlite"

    def __init__(
        self,
        conn: sqlite3.Connection,
        show_params: bool,
        reopen: Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        super().__init__()
        self._conn = conn
        self._show_params = show_params
        self._reopen = reopen
        # The connection's settings as the pool made them, put back in a pinned session.
        self._pragmas = {name: _pragma(conn, name) for name in _SESSION_PRAGMAS}

    def _error(self, exc: BaseException, sql: str | None, params: Any) -> DBSystemError:
        override: type[DBSystemError] | None = None
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            primary = code & 0xFF
            if primary == _SQLITE_CONSTRAINT:
                override = IntegrityError
            elif primary in (_SQLITE_ERROR, _SQLITE_RANGE, _SQLITE_MISMATCH):
                # sqlite3 calls syntax errors and unknown tables "OperationalError".
                override = ProgrammingError
            elif primary == _SQLITE_CANTOPEN:
                override = ConnectionFailed
        elif isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
            override = ConnectionFailed
        return translate(
            exc,
            backend="sqlite",
            statement=sql,
            params=params,
            show_params=self._show_params,
            override=override,
        )

    def _retry_adapted(
        self, exc: Exception, sql: str, params: Mapping[str, Any] | None
    ) -> sqlite3.Cursor:
        """Bind again with values sqlite3 cannot store as-is converted to text (or raise).

        Only reached after sqlite3 refused a value, so the common path pays nothing.
        """
        if params:
            # A list or tuple after IN (sqlite3 refuses both; ``IN :ids`` is not even valid
            # SQL before expansion): expanded, then run again (its items may still need
            # adapting below, on the next refusal).
            expanded_sql, expanded = expand_lists(sql, params, "sqlite")
            if expanded is not params:
                sql, params = expanded_sql, expanded
                try:
                    return self._conn.execute(sql, params)
                except _ERRORS as again:
                    exc = again
        if params is not None and isinstance(exc, sqlite3.ProgrammingError):
            adapted = {key: _adapt(value) for key, value in params.items()}
            if any(adapted[key] is not value for key, value in params.items()):
                try:
                    return self._conn.execute(sql, adapted)
                except _ERRORS as again:
                    raise self._error(again, sql, params) from again
        raise self._error(exc, sql, params) from exc

    def _cursor(self, sql: str, params: Mapping[str, Any] | None) -> sqlite3.Cursor:
        """Execute ``sql``; expand lists and bind adapted values only if sqlite3 refused a
        value (or raise): the common path pays nothing for either."""
        # SQLConnectionBase.note, inlined (a set lookup for a known text)
        if not self.dirty and sql not in PLAIN and changes_session(sql):
            self.dirty = True
        try:
            return self._conn.execute(sql, () if params is None else params)
        except _ERRORS as exc:
            return self._retry_adapted(exc, sql, params)

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> ExecuteResult:
        cur = self._cursor(sql, params)
        return ExecuteResult(cur.rowcount, cur.lastrowid)

    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> ExecuteResult:
        self.note(sql)
        try:
            cur = self._conn.executemany(sql, seq_params)
        except sqlite3.ProgrammingError as exc:
            # sqlite3 ran the rows before the first one it could not bind: go on from that
            # row with its values adapted (running them all again would repeat the others).
            adapted = [{k: _adapt(v) for k, v in p.items()} for p in seq_params]
            first = next(
                (
                    index
                    for index, row in enumerate(seq_params)
                    if any(_refused(value) for value in row.values())
                ),
                None,
            )
            if first is None:
                raise self._error(exc, sql, None) from exc
            try:
                cur = self._conn.executemany(sql, adapted[first:])
            except _ERRORS as again:
                raise self._error(again, sql, None) from again
            return ExecuteResult(first + cur.rowcount, None)
        except _ERRORS as exc:
            raise self._error(exc, sql, None) from exc
        return ExecuteResult(cur.rowcount, None)

    def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        cur = self._cursor(sql, params)
        try:
            rows = cur.fetchall()
        except _ERRORS as exc:
            raise self._error(exc, sql, params) from exc
        description = cur.description
        if description is None:
            return []
        names = [column[0] for column in description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        cur = self._cursor(sql, params)
        try:
            row = cur.fetchone()
        except _ERRORS as exc:
            raise self._error(exc, sql, params) from exc
        if row is None:
            return None
        names = [column[0] for column in cur.description]
        cur.close()
        return dict(zip(names, row, strict=True))

    def stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        cur = self._cursor(sql, params)
        try:
            description = cur.description
            if description is None:
                return
            names = [column[0] for column in description]
            while batch := cur.fetchmany(batch_size):
                for row in batch:
                    yield dict(zip(names, row, strict=True))
        except sqlite3.Error as exc:
            raise self._error(exc, sql, params) from exc
        finally:
            cur.close()

    def _run(self, sql: str) -> None:
        try:
            self._conn.execute(sql)
        except sqlite3.Error as exc:
            raise self._error(exc, sql, None) from exc

    def _begin(self, isolation: str | None, readonly: bool) -> None:
        # Every standard level is satisfied by SQLite's serializable transactions.
        if readonly:
            self._run("PRAGMA query_only = ON")
        try:
            self._run("BEGIN")
        except BaseException:
            if readonly:
                self._end_readonly()
            raise

    def _end_readonly(self) -> None:
        try:
            self._conn.execute("PRAGMA query_only = OFF")
        except sqlite3.Error:
            pass

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._run("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def ping(self) -> None:
        try:
            self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, None, None) from exc

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:
            pass

    @property
    def driver_connection(self) -> sqlite3.Connection:
        """The sqlite3 connection underneath, for what dbsystem does not wrap (the session is
        reset on return: functions it registers do not outlive the lease)."""
        self.dirty = True
        return self._conn

    def _reset_session(self) -> None:
        # What a session can change (PRAGMAs, temporary tables, attached databases,
        # functions and collations registered on the driver connection) lives in the
        # sqlite3 connection: a fresh one, made as the pool makes them (tens of
        # microseconds; an in-memory database lives on in the backend's keeper).
        if self._reopen is None:
            super()._reset_session()
            return
        fresh = self._reopen()
        old, self._conn = self._conn, fresh
        try:
            old.close()
        except sqlite3.Error:
            pass

    def _reset_pinned_session(self) -> None:
        # Inside the test's transaction: drop temporary objects, set the pool's PRAGMAs
        # back, detach what can be (SQLite refuses DETACH inside a transaction: such a
        # database stays attached until the fixture ends).
        conn = self._conn
        try:
            temp = conn.execute(
                "SELECT type, name FROM temp.sqlite_schema WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            for kind, name in temp:
                quoted = name.replace('"', '""')
                conn.execute(f'DROP {kind.upper()} IF EXISTS temp."{quoted}"')
            for name, value in self._pragmas.items():
                if value is not None:
                    conn.execute(f"PRAGMA {name} = {int(value)}")
            conn.execute("PRAGMA case_sensitive_like = 0")
        except sqlite3.Error as exc:
            raise self._error(exc, "reset", None) from exc


class SQLiteBackend(Backend):
    """Opens sqlite3 connections to one database file, or one shared in-memory database."""

    name = "sqlite"
    capabilities = Capabilities(returning=True)

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)
        options = {k.lower(): v.lower() for k, v in config.options.items()}
        check_options(options, ("journal_mode", "synchronous"), "SQLite")
        self._journal_mode = options.get("journal_mode")
        self._synchronous = options.get("synchronous")
        if self._journal_mode and self._journal_mode not in _JOURNAL_MODES:
            raise ConfigurationError(f"journal_mode must be one of {sorted(_JOURNAL_MODES)}")
        if self._synchronous and self._synchronous not in _SYNCHRONOUS:
            raise ConfigurationError(f"synchronous must be one of {sorted(_SYNCHRONOUS)}")
        self._keeper: sqlite3.Connection | None = None
        if url.is_memory:
            # One database per pool, named uniquely within the process.
            self._target = f"file:/dbsystem-{os.getpid()}-{next(_memory_ids)}?vfs=memdb"
            self._keeper = self._open()
        else:
            path = url.database or ""
            self._target = "file:" + quote(path, safe="/")

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._target,
                timeout=self.config.connect_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=True,
            )
        except sqlite3.Error as exc:
            raise translate(
                exc,
                backend="sqlite",
                override=ConnectionFailed,
                message=f"cannot open SQLite database {self.url.database!r}: {exc}",
            ) from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            if not self.url.is_memory:
                journal = self._journal_mode or "wal"
                conn.execute(f"PRAGMA journal_mode = {journal}")
            if self._synchronous:
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise translate(
                exc,
                backend="sqlite",
                override=OperationalError,
                message=f"cannot configure SQLite database {self.url.database!r}: {exc}",
            ) from exc
        return conn

    def connect(self) -> SQLiteConnection:
        return SQLiteConnection(self._open(), self.config.log_parameters, self._open)

    def dispose(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
