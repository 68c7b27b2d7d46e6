"""PostgreSQL on psycopg 3.

* Autocommit outside ``transaction()``; ``BEGIN [ISOLATION LEVEL ...] [READ ONLY]`` inside,
  savepoints when nested.
* ``:name`` parameters rewritten to ``%(name)s`` (``_params``); values are bound by psycopg,
  and a statement run five times is prepared server-side (psycopg's ``prepare_threshold``).
* Python ``dict`` parameters are sent as ``jsonb``; lists stay PostgreSQL arrays.
* URL query options that are not pool settings go to libpq as connection parameters
  (``?sslmode=require&application_name=shop``); an unknown one is a ``ConfigurationError``.
* ``PoolConfig.tls`` maps to libpq's ``sslmode``/``sslrootcert``/``sslcert``/``sslkey``
  (``sslrootcert=system`` when a verifying mode names no CA file); libpq refuses a
  plaintext server under ``require`` and stricter.
* A statement that finds the connection gone raises ``ConnectionFailed`` and marks it
  broken, so the pool drops it on return; health checks catch sessions the server ended.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from operator import itemgetter
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import JsonbDumper

from dbsystem.backends._pg_hosts import (
    host_parts,
    pooling_mode,
    refuse_session_state,
    role_mismatch,
    validate_host_options,
)
from dbsystem.backends._pyformat import PyformatConnection
from dbsystem.backends._translate import translate
from dbsystem.backends.base import Backend, Capabilities, SQLConnectionBase
from dbsystem.errors import (
    ConfigurationError,
    ConnectionFailed,
    ConnectionTimeout,
    DBSystemError,
)
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import Row
from dbsystem.kernel.url import DatabaseURL

__all__ = ["PostgreSQLBackend", "PostgreSQLConnection", "connection_lost", "forget_prepared"]

_stream_ids = itertools.count(1)
# Compared with pgconn.transaction_status (a plain int): conn.info builds an object per call.
_IDLE = int(TransactionStatus.IDLE)
_BAD = int(ConnStatus.BAD)
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_dumper(dict, JsonbDumper)


# DISCARD ALL without what would end the pinned test transaction (a simple-protocol batch:
# one round trip; psycopg drops its prepared statements on DEALLOCATE ALL).
_PINNED_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; RESET ROLE; DEALLOCATE ALL; "
    "UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)


def forget_prepared(conn: Any) -> None:
    """Make psycopg forget the statements it prepared on ``conn``, after a reset that
    deallocated them on the server (sync and async connections alike).

    psycopg clears its cache when it sees ``DISCARD ALL`` only for a text it has not
    counted before, so the second reset of a connection would leave it naming prepared
    statements the server no longer has ("prepared statement _pg3_0 does not exist").
    """
    prepared = getattr(conn, "_prepared", None)
    if prepared is None:
        return
    prepared.clear()
    flush = getattr(prepared, "_to_flush", None)
    if flush is not None:
        flush.clear()  # the server has none left: no DEALLOCATE ALL to send


def connection_lost(conn: Any, exc: BaseException) -> bool:
    """True if ``exc`` on psycopg's ``conn`` (sync or async) means the connection is gone."""
    if conn.broken or conn.closed:
        return True
    # A socket closed under psycopg's wait ("connection socket closed") can leave
    # ``broken`` unset; libpq's own status still says the connection is gone.
    return bool(conn.pgconn.status == _BAD) or "socket closed" in str(exc)


class PostgreSQLConnection(PyformatConnection):
    """One psycopg connection in autocommit mode."""

    backend_name = "postgresql"
    dialect = "postgresql"
    driver_errors = (psycopg.Error,)
    session_attrs: str | None = None
    """The pool's ``target_session_attrs``: a server no longer matching it is dropped."""

    def _make_dict_cursor(self, conn: Any) -> Any:
        return conn.cursor(row_factory=dict_row)

    def _has_rows(self, cursor: Any) -> bool:
        # pgresult, not description: description builds a Column object per column.
        result = cursor.pgresult
        return result is not None and result.nfields > 0

    def _override(self, exc: BaseException) -> type[DBSystemError] | None:
        lost = super()._override(exc)
        if lost is None and role_mismatch(self._conn.pgconn, self.session_attrs, exc):
            # The server was demoted under this connection: the pool must drop it.
            self.broken = True
            return ConnectionFailed
        return lost

    def _connection_lost(self, exc: BaseException) -> bool:
        return connection_lost(self._conn, exc)

    def _begin(self, isolation: str | None, readonly: bool) -> None:
        sql = "BEGIN"
        if isolation:
            sql += f" ISOLATION LEVEL {isolation.upper()}"
        if readonly:
            sql += " READ ONLY"
        self._run(sql)

    def _rollback(self) -> None:
        if self._conn.pgconn.transaction_status != _IDLE:
            self._run("ROLLBACK")

    def stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        # A server-side (named) cursor lives in a transaction: open one if none is.
        own = self.tx_depth == 0
        if own:
            self.begin()
        cur = self._conn.cursor(name=f"dbsystem_stream_{next(_stream_ids)}", row_factory=dict_row)
        failed = False
        try:
            yield from self._stream_from(cur, sql, params, batch_size)
        except DBSystemError:
            failed = True
            raise
        finally:
            if not self.broken:
                try:
                    cur.close()
                except psycopg.Error:
                    failed = True
                if own:
                    if failed:
                        self.rollback()
                    else:
                        self.commit()

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> int:
        quoted = ", ".join(self.quote_identifier(c) for c in columns)
        sql = f"COPY {self.quote_identifier(table)} ({quoted}) FROM STDIN"
        pick = itemgetter(*columns)
        single = len(columns) == 1
        try:
            with self._cur.copy(sql) as copy:
                write = copy.write_row
                for row in rows:
                    write((pick(row),) if single else pick(row))
        except psycopg.Error as exc:
            raise self._error(exc, sql, None) from exc
        return len(rows)

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.pgconn.transaction_status != _IDLE)

    def ping(self) -> None:
        self._run("SELECT 1")

    def _reset_session(self) -> None:
        # Everything a session can change: settings (back to the connection's startup
        # options, the pool's own), role and session authorization, prepared statements
        # (psycopg forgets its own on seeing DISCARD ALL), cursors, LISTEN, advisory locks,
        # temporary tables, cached plans and sequence state. Never prepared itself.
        try:
            self._cur.execute("DISCARD ALL", prepare=False)
        except psycopg.Error as exc:
            raise self._error(exc, "DISCARD ALL", None) from exc
        forget_prepared(self._conn)

    def _reset_pinned_session(self) -> None:
        # DISCARD ALL cannot run inside the test's transaction: its parts that can.
        self._run(_PINNED_RESET)
        forget_prepared(self._conn)

    @property
    def backend_pid(self) -> int:
        """The server process serving this connection (for ``pg_terminate_backend``)."""
        return int(self._conn.info.backend_pid)


class _Watchdog:
    """Ends statements that outlive their deadline by shutting their socket down.

    ``statement_timeout`` is enforced by the server; a statement the server never sees (a
    network that swallows packets without resetting anything) would block its caller
    forever, since psycopg has no client-side read timeout. Past the deadline plus a
    grace second, this thread shuts the connection's socket: the blocked call fails with
    ``ConnectionFailed`` and the pool drops the connection. One thread per backend, started
    on first use, waking every 0.1 s while statements are armed.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit + 1.0
        self._armed: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, conn: Any) -> None:
        with self._lock:
            self._armed[id(conn)] = (time.monotonic() + self.limit, conn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dbsystem-pg-watchdog", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def disarm(self, conn: Any) -> None:
        with self._lock:
            self._armed.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                late = [c for deadline, c in self._armed.values() if now > deadline]
                for conn in late:
                    del self._armed[id(conn)]
                if not self._armed:
                    self._wake.clear()
            for conn in late:
                conn.interrupt()


class _GuardedConnection(PostgreSQLConnection):
    """A connection whose statements are watched (``PoolConfig.statement_timeout``)."""

    watchdog: _Watchdog

    def interrupt(self) -> None:
        """Shut the socket down under a statement that outlived its deadline."""
        try:
            fd = self._conn.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, psycopg.Error):
            pass

    def _watched(self, call: Any, *args: Any) -> Any:
        self.watchdog.arm(self)
        try:
            return call(*args)
        finally:
            self.watchdog.disarm(self)

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        return self._watched(super().execute, sql, params)

    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> Any:
        return self._watched(super().executemany, sql, seq_params)

    def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        rows: list[Row] = self._watched(super().fetch_all, sql, params)
        return rows

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        row: Row | None = self._watched(super().fetch_one, sql, params)
        return row


class _Bounced:
    """Statements checked for session state a transaction-pooling PgBouncer would not keep
    (``?pgbouncer=transaction``; mixed into the connection classes)."""

    def _checked(self, sql: str) -> None:
        refuse_session_state(sql, bool(getattr(self, "tx_depth", 0)))

    def _run(self, sql: str) -> None:
        self._checked(sql)
        super()._run(sql)  # type: ignore[misc]

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        self._checked(sql)
        return super().execute(sql, params)  # type: ignore[misc]

    def executemany(self, sql: str, seq_params: Sequence[Mapping[str, Any]]) -> Any:
        self._checked(sql)
        return super().executemany(sql, seq_params)  # type: ignore[misc]

    def fetch_all(self, sql: str, params: Mapping[str, Any] | None) -> list[Row]:
        self._checked(sql)
        rows: list[Row] = super().fetch_all(sql, params)  # type: ignore[misc]
        return rows

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None) -> Row | None:
        self._checked(sql)
        row: Row | None = super().fetch_one(sql, params)  # type: ignore[misc]
        return row


class _BouncedConnection(_Bounced, PostgreSQLConnection):
    """A connection through a transaction-pooling PgBouncer."""


class _BouncedGuardedConnection(_Bounced, _GuardedConnection):
    """A watched connection through a transaction-pooling PgBouncer."""


# The URL part that libpq's query parameter of the same name would duplicate.
_URL_PART = {
    "host": "host part",
    "port": "host part",
    "dbname": "path",
    "user": "user-info part",
    "password": "user-info part",
}


class PostgreSQLBackend(Backend):
    """Opens psycopg connections to one PostgreSQL database."""

    name = "postgresql"
    capabilities = Capabilities(returning=True, lastrowid=False)

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)
        options = dict(config.options)
        self.pooling = pooling_mode(options, self.name)
        tls = config.tls
        if tls is not None:
            clash = {"sslmode", "sslrootcert", "sslcert", "sslkey"} & set(options)
            if clash:
                raise ConfigurationError(
                    f"set TLS either with PoolConfig.tls or with URL options, not both "
                    f"({', '.join(sorted(clash))})",
                    backend=self.name,
                )
            options["sslmode"] = tls.mode
            if tls.ca_file is not None:
                options["sslrootcert"] = str(tls.ca_file)
            elif tls.verifies:
                options["sslrootcert"] = "system"  # libpq 16+: the system's CAs
            if tls.cert_file is not None and tls.key_file is not None:
                options["sslcert"] = str(tls.cert_file)
                options["sslkey"] = str(tls.key_file)
        self._watchdog: _Watchdog | None = None
        if config.statement_timeout is not None and self.pooling == "transaction":
            raise ConfigurationError(
                "statement_timeout cannot be set per connection through PgBouncer in "
                "transaction mode (it refuses the startup option, and SET would leak to other "
                "clients): set it on the role (ALTER ROLE ... SET statement_timeout)",
                backend=self.name,
            )
        if config.statement_timeout is not None:  # the server cancels a longer statement
            self._watchdog = _Watchdog(config.statement_timeout)
            limit = f"-c statement_timeout={round(config.statement_timeout * 1000)}"
            options["options"] = f"{options['options']} {limit}" if "options" in options else limit
        # libpq also reads these from a URL's query (postgresql://h/db?password=...): take
        # them from there when the URL's own parts leave them out, refuse them twice.
        validate_host_options(options, self.name)
        # Through a transaction-pooling PgBouncer nothing is prepared server-side.
        self.connect_kwargs: dict[str, Any] = (
            {"prepare_threshold": None} if self.pooling == "transaction" else {}
        )
        self.session_attrs = options.get("target_session_attrs")
        parts: dict[str, Any] = {
            **host_parts(url),
            "dbname": url.database,
            "user": url.username,
            "password": url.password,
        }
        for name in parts:
            if name in options:
                if parts[name] is not None:
                    raise ConfigurationError(
                        f"the URL gives {name} twice: in its {_URL_PART[name]} and as "
                        f"?{name}=; keep one",
                        backend=self.name,
                    )
                parts[name] = options.pop(name)
        try:
            self._conninfo = psycopg.conninfo.make_conninfo(
                connect_timeout=max(1, round(config.connect_timeout)),
                **parts,
                **options,
            )
            # Validate the option names now, not at the first connect.
            psycopg.conninfo.conninfo_to_dict(self._conninfo)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"invalid PostgreSQL connection option: {exc}", backend=self.name
            ) from None
        self._secrets = tuple(url.secrets())

    def connect(self) -> PostgreSQLConnection:
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, context=_ADAPTERS, **self.connect_kwargs
            )
        except psycopg.Error as exc:
            text = str(exc)
            if "invalid connection option" in text:
                raise translate(
                    exc, backend=self.name, secrets=self._secrets, override=ConfigurationError
                ) from exc
            cls = ConnectionTimeout if "timeout expired" in text else ConnectionFailed
            raise self._cannot_connect(exc, override=cls) from exc
        made: PostgreSQLConnection
        bounced = self.pooling == "transaction"
        if self._watchdog is not None:
            kind: type[_GuardedConnection] = (
                _BouncedGuardedConnection if bounced else _GuardedConnection
            )
            made = guarded = kind(conn, self.config.log_parameters, self._secrets)
            guarded.watchdog = self._watchdog
        else:
            plain = _BouncedConnection if bounced else PostgreSQLConnection
            made = plain(conn, self.config.log_parameters, self._secrets)
        made.session_attrs = self.session_attrs
        return made

    def check(self, conn: SQLConnectionBase) -> None:
        """Ping ``conn``; a server that no longer plays the role ``target_session_attrs``
        asks for (a primary demoted by a failover) fails the check too."""
        conn.ping()
        reason = role_mismatch(conn.driver_connection.pgconn, self.session_attrs)
        if reason is not None:
            conn.broken = True
            raise ConnectionFailed(f"{reason}: the connection is dropped", backend=self.name)
