"""The backend interface: what a database driver must provide to sit behind a pool.

A ``Backend`` is made once per pool from the pool's URL and settings. It is the pool's
``Connector`` (open, check, reset, close one connection) and it knows its dialect. The
connections it opens derive from ``SQLConnectionBase``: a thin, driver-specific object whose
methods take SQL with ``:name`` parameters and return ``dict`` rows, and raise only dbsystem
errors. Transaction nesting (savepoints) and the state a pool must reset are kept here, once,
so every SQL backend behaves the same.

The public query API users call (``dbsystem.Connection``) wraps these objects; backends never
see hooks, leases or pools.
"""

from __future__ import annotations

import re
import weakref
from abc import ABC, abstractmethod
from collections.abc import Collection, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dbsystem.backends._session import PLAIN, changes_session
from dbsystem.backends._translate import translate
from dbsystem.errors import (
    CommitUnknownError,
    ConfigurationError,
    ConnectionFailed,
    DBSystemError,
    InterfaceError,
    PermissionDenied,
    QueryBuildError,
)
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.protocols import BackendKind
from dbsystem.kernel.types import ExecuteResult, Row
from dbsystem.kernel.url import DatabaseURL

__all__ = [
    "Backend",
    "Capabilities",
    "DriverBackend",
    "SQLConnectionBase",
    "StandardSQLConnection",
    "check_options",
    "commit_unknown",
    "driver_refused",
    "next_savepoint",
    "normalize_isolation",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(?:\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
_ISOLATION_LEVELS = ("read uncommitted", "read committed", "repeatable read", "serializable")


def normalize_isolation(level: str | None, backend: str) -> str | None:
    """Return the standard spelling of an isolation level (``"read committed"``...), or None."""
    if level is None:
        return None
    key = " ".join(level.replace("_", " ").replace("-", " ").lower().split())
    if key not in _ISOLATION_LEVELS:
        raise InterfaceError(
            f"unknown isolation level {level!r}; use one of: {', '.join(_ISOLATION_LEVELS)}",
            backend=backend,
        )
    return key


def check_options(
    given: Iterable[str], valid: Collection[str], product: str, backend: str | None = None
) -> None:
    """Refuse URL options a backend does not know: a ``ConfigurationError`` naming them
    and listing the valid ones (pool settings are taken out of the options before)."""
    unknown = set(given) - set(valid)
    if unknown:
        raise ConfigurationError(
            f"unknown {product} URL option(s): {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(valid))}, and the pool settings",
            backend=backend,
        )


def driver_refused(context: Any, what: str, backend: str | None = None) -> PermissionDenied:
    """The error for a user session asking its lease for a driver object (``what``):
    whatever ran on it would skip access control and audit."""
    return PermissionDenied(
        f"user {context.user!r}: a user session's connection does not hand out {what} "
        "(what runs on it would skip the checks)",
        backend=backend,
    )


def next_savepoint(conn: Any, isolation: str | None) -> str:
    """The name of the savepoint a nested ``begin`` of ``conn`` makes (the sync connections'
    and the async PostgreSQL one's); an isolation level is refused there."""
    if isolation is not None:
        raise InterfaceError(
            "the isolation level can only be set on the outermost transaction",
            backend=conn.backend_name,
        )
    return f"dbsystem_sp_{conn.tx_depth}"


def commit_unknown(exc: ConnectionFailed, backend: str) -> CommitUnknownError:
    """The error for a connection lost during COMMIT (sync or async connections alike)."""
    return CommitUnknownError(
        "the connection was lost while committing: the transaction may or may not have "
        "committed; check before running it again",
        backend=backend,
        orig=exc,
    )


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, for callers that adapt (and for mocks to declare honestly)."""

    transactions: bool = True
    savepoints: bool = True
    returning: bool = False
    lastrowid: bool = True
    isolation_levels: tuple[str, ...] = _ISOLATION_LEVELS


class SQLConnectionBase(ABC):
    """One open connection of a SQL backend. Not thread-safe: the pool lends it to one caller.

    Subclasses implement the driver calls; this class keeps the transaction depth, so that
    ``begin`` at depth 0 starts a transaction and deeper calls make savepoints.
    """

    backend_name: ClassVar[str] = "sql"
    identifier_quote: ClassVar[str] = '"'

    def __init__(self) -> None:
        self.tx_depth = 0
        # Streams opened on this connection; closed on return to the pool, so their
        # server-side cursors are cleaned up while the connection is still the borrower's.
        self.streams: weakref.WeakSet[Generator[Row, None, None]] = weakref.WeakSet()
        # Set when an error showed the connection is gone; the pool then drops it on return.
        self.broken = False
        # Depth below which reset() must not roll back (the test fixture's outer transaction).
        self.base_depth = 0
        self._readonly = False
        # True once a statement of this lease may have changed session state (a SET, a
        # temp table, a function off the plain list: ``backends._session``): the pool's
        # reset then resets the session too, not just the transaction.
        self.dirty = False

    def note(self, sql: str) -> None:
        """Remember whether ``sql`` may change session state; the statement methods call it
        before running ``sql`` (a set lookup for a text seen before)."""
        if not self.dirty and sql not in PLAIN and changes_session(sql):
            self.dirty = True

    @property
    def driver_connection(self) -> Any:
        """The driver's own connection underneath (sqlite3, psycopg, pymysql; None for the
        mock), for what dbsystem does not wrap. What runs on it bypasses the hooks: access
        control, audit and metrics do not see it; the session is reset on return."""
        self.dirty = True
        return getattr(self, "_conn", None)

    # -- statements ------------------------------------------------------------------------

    @abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any] | None) -> ExecuteResult:
        """Run one statement; return the affected row count (with ``lastrowid``)."""

    @abstractmethod
    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> ExecuteResult:
        """Run one statement once per parameter mapping; return the total row count."""

    @abstractmethod
    def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        """Run a query and return every row as a dict."""

    @abstractmethod
    def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        """Run a query and return its first row, or None."""

    def fetch_value(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        """Run a query and return the first column of its first row, or None."""
        row = self.fetch_one(sql, params)
        return None if row is None else next(iter(row.values()), None)

    @abstractmethod
    def stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        """Yield the rows of a query, fetching ``batch_size`` at a time from the server."""

    def open_stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        """``stream``, remembered so that returning the connection closes it."""
        rows = self.stream(sql, params, batch_size)
        self.streams.add(rows)
        return rows

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> int:
        """Insert ``rows`` (dicts keyed by ``columns``) into ``table``; return the count.

        ``table`` and ``columns`` are validated identifiers. The default is one ``INSERT``
        run with ``executemany`` (pymysql turns that into multi-row INSERTs); PostgreSQL
        overrides it with COPY.
        """
        quoted = ", ".join(self.quote_identifier(c) for c in columns)
        values = ", ".join(f":{c}" for c in columns)
        sql = f"INSERT INTO {self.quote_identifier(table)} ({quoted}) VALUES ({values})"
        self.executemany(sql, rows)
        return len(rows)

    def quote_identifier(self, name: str) -> str:
        """Quote a table or column name (``schema.table`` allowed); refuse anything else."""
        if not _IDENTIFIER.fullmatch(name):
            raise QueryBuildError(
                f"{name!r} is not a valid identifier (letters, digits, _; optionally schema.name)",
                backend=self.backend_name,
            )
        q = self.identifier_quote
        return ".".join(f"{q}{part}{q}" for part in name.split("."))

    # -- transactions ----------------------------------------------------------------------

    def begin(self, isolation: str | None = None, readonly: bool = False) -> str | None:
        """Start a transaction, or a savepoint inside one; return the savepoint's name."""
        if self.tx_depth == 0:
            self._begin(normalize_isolation(isolation, self.backend_name), readonly)
            self._readonly = readonly
            self.tx_depth = 1
            return None
        name = next_savepoint(self, isolation)
        self._savepoint(name)
        self.tx_depth += 1
        return name

    def commit(self, savepoint: str | None = None) -> None:
        """Commit the innermost transaction level (release its savepoint).

        A connection lost during the COMMIT raises ``CommitUnknownError``: the server may
        have committed. (One already known to be lost raises ``ConnectionFailed``: its
        transaction died with it.)
        """
        if savepoint is None:
            known_lost = self.broken
            try:
                self._commit()
            except ConnectionFailed as exc:
                if known_lost:
                    raise
                raise commit_unknown(exc, self.backend_name) from exc
            finally:
                self._end_transaction()
        else:
            self._release_savepoint(savepoint)
            self.tx_depth -= 1

    def rollback(self, savepoint: str | None = None) -> None:
        """Roll back the innermost transaction level (to its savepoint)."""
        if savepoint is None:
            try:
                self._rollback()
            finally:
                self._end_transaction()
        else:
            try:
                self._rollback_to_savepoint(savepoint)
            finally:
                self.tx_depth -= 1

    def _end_transaction(self) -> None:
        self.tx_depth = 0
        if self._readonly:
            self._readonly = False
            self._end_readonly()

    def _end_readonly(self) -> None:  # noqa: B027 - optional for subclasses
        """Undo session state a read-only transaction set (SQLite's ``query_only``)."""

    @abstractmethod
    def _begin(self, isolation: str | None, readonly: bool) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _savepoint(self, name: str) -> None: ...

    @abstractmethod
    def _release_savepoint(self, name: str) -> None: ...

    @abstractmethod
    def _rollback_to_savepoint(self, name: str) -> None: ...

    # -- lifecycle -------------------------------------------------------------------------

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """True if the driver reports an open transaction."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the connection no longer works."""

    @abstractmethod
    def close(self) -> None:
        """Close the driver connection. Never raises."""

    def reset(self) -> None:
        """Called by the pool on return: roll back anything left open, and reset the
        session when the lease may have changed it (``dirty``).

        Under a pinned outer transaction (``base_depth``, the pytest fixture's) only the
        savepoints above it are rolled back, and a changed session gets
        ``_reset_pinned_session`` (which must not end that transaction).
        """
        if self.streams:
            for stream in list(self.streams):
                stream.close()
        if self.broken:
            raise ConnectionFailed("the connection was lost", backend=self.backend_name)
        if self.base_depth:
            while self.tx_depth > self.base_depth:
                self.rollback(f"dbsystem_sp_{self.tx_depth - 1}")
            if self.dirty:
                self._reset_pinned_session()
                self.dirty = False
            return
        if self.tx_depth or self.in_transaction:
            self._rollback()
            self._end_transaction()
        if self.dirty:
            self._reset_session()
            self.dirty = False

    def _reset_session(self) -> None:
        """Return the session to the pool's own settings (no transaction is open): what a
        backend knows how to reset it overrides. The default cannot, so it gives the
        connection up: the pool closes it and opens a fresh one."""
        self.broken = True
        raise ConnectionFailed(
            "the session was changed and this backend cannot reset it: connection closed",
            backend=self.backend_name,
        )

    def _reset_pinned_session(self) -> None:  # noqa: B027 - optional for subclasses
        """``_reset_session`` inside the pinned test transaction, which must stay open.
        The default does nothing: backends reset what they can without ending it."""


class StandardSQLConnection(SQLConnectionBase):
    """A ``SQLConnectionBase`` whose commit and savepoints are standard SQL run by ``_run``.

    ``COMMIT``, ``SAVEPOINT name``, ``RELEASE SAVEPOINT name``, and ``ROLLBACK TO SAVEPOINT
    name`` followed by its ``RELEASE`` (a rollback to a savepoint leaves it standing, and
    the next level reuses its name). Subclasses implement ``_run`` and the rest.
    """

    @abstractmethod
    def _run(self, sql: str) -> None:
        """Run one transaction-control statement, raising dbsystem errors."""

    def _commit(self) -> None:
        self._run("COMMIT")

    def _savepoint(self, name: str) -> None:
        self._run(f"SAVEPOINT {name}")

    def _release_savepoint(self, name: str) -> None:
        self._run(f"RELEASE SAVEPOINT {name}")

    def _rollback_to_savepoint(self, name: str) -> None:
        self._run(f"ROLLBACK TO SAVEPOINT {name}")
        self._run(f"RELEASE SAVEPOINT {name}")


class Backend(ABC):
    """A database behind one pool: opens connections and knows its dialect.

    Subclasses set ``name`` (used in errors and logs), ``dialect`` (the SQLAlchemy dialect
    the query builders compile for) and implement ``connect``.
    """

    name: ClassVar[str] = "backend"
    kind: ClassVar[BackendKind] = "sql"
    """The backend kind (``dbsystem.kernel.protocols``): SQL backends are this ABC."""
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        self.url = url
        self.config = config
        self.dialect = self.name

    @abstractmethod
    def connect(self) -> SQLConnectionBase:
        """Open one connection; raise ``ConnectionFailed`` (the cause chained) if it cannot."""

    def check(self, conn: SQLConnectionBase) -> None:
        """Ping ``conn``; raise if it is dead."""
        conn.ping()

    def reset(self, conn: SQLConnectionBase) -> None:
        """Prepare ``conn`` for its next borrower."""
        conn.reset()

    def close(self, conn: SQLConnectionBase) -> None:
        """Close ``conn``."""
        conn.close()

    def dispose(self) -> None:  # noqa: B027 - optional for subclasses
        """Release what the backend holds beyond its connections (after the pool closed)."""

    def secrets(self) -> Iterable[str]:
        """Strings that must never appear in an error or a log line (the password)."""
        return self.url.secrets()

    def _cannot_connect(
        self,
        exc: BaseException,
        reason: object = None,
        override: type[DBSystemError] = ConnectionFailed,
    ) -> DBSystemError:
        """The error for a connection the driver could not open (raise it ``from exc``):
        ``override`` naming the URL (password hidden) and ``reason`` (the driver's text
        by default), with the password scrubbed."""
        return translate(
            exc,
            backend=self.name,
            secrets=tuple(self.secrets()),
            override=override,
            message=f"cannot connect to {self.url}: {reason or exc}",
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class DriverBackend:
    """A database whose driver pools its own connections (Redis, MongoDB).

    What the manager and its ``DriverPool`` read from one: ``url``, ``config``, ``dialect``
    (the backend's ``name``), ``secrets``, ``mock`` (a ``NAME+mock://`` URL: the in-process
    fake) and ``label``, the name errors carry (``mock:NAME`` for the fake). Subclasses
    set ``name`` and ``kind`` and build their client.
    """

    name: ClassVar[str]
    kind: ClassVar[BackendKind]
    capabilities: ClassVar[Capabilities] = Capabilities(
        transactions=True, savepoints=False, lastrowid=False, isolation_levels=()
    )

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        self.url = url
        self.config = config
        self.mock = url.scheme == f"{self.name}+mock"
        self.dialect = self.name
        self.label = f"mock:{self.name}" if self.mock else self.name
        self.secrets = tuple(url.secrets())
