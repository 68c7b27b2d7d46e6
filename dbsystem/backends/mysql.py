"""MySQL and MariaDB on pymysql.

* Autocommit outside ``transaction()``; ``SET TRANSACTION ISOLATION LEVEL ...`` then
  ``START TRANSACTION [READ ONLY]`` inside, savepoints when nested. MySQL commits
  implicitly on DDL (``CREATE``, ``ALTER``, ``DROP``): a schema change inside a transaction
  ends it, as the server documents.
* ``:name`` parameters rewritten to ``%(name)s`` (``_params``); pymysql escapes the values
  for the connection's character set (``utf8mb4``) client-side, as it always does: it has no
  server-side binding. Multi-statement strings are refused by the server (pymysql does not
  ask for CLIENT.MULTI_STATEMENTS).
* Values: a ``dict`` is sent as JSON text, a UUID as its text, an aware datetime as its UTC
  instant (DATETIME keeps no zone; pymysql would drop the zone silently); a TIME of day reads
  back as ``datetime.time`` rather than pymysql's ``timedelta``. Lists and tuples keep
  pymysql's meaning (``IN :ids``).
* URL options: ``charset``, ``init_command``, ``sql_mode``, ``read_timeout``,
  ``write_timeout``; anything else is a ``ConfigurationError``.
* ``PoolConfig.tls`` becomes an SSL context for pymysql; a requiring mode fails closed.
* Error codes pymysql files under OperationalError but that describe a wrong statement
  (unknown column, ambiguous column, unknown function) become ``ProgrammingError``; lost
  connections (2006, 2013...) become ``ConnectionFailed`` and the pool drops the connection.
"""

from __future__ import annotations

import datetime
import json
import ssl
import uuid
from collections.abc import Generator, Mapping
from typing import Any

import pymysql
from pymysql.constants import FIELD_TYPE, SERVER_STATUS
from pymysql.converters import (
    conversions,
    convert_timedelta,
    escape_datetime,
    escape_str,
)

from dbsystem.backends._pyformat import PyformatConnection
from dbsystem.backends.base import Backend, Capabilities, check_options
from dbsystem.errors import (
    ConfigurationError,
    DBSystemError,
    ProgrammingError,
)
from dbsystem.kernel.config import PoolConfig, TLSConfig
from dbsystem.kernel.types import Row
from dbsystem.kernel.url import DatabaseURL

__all__ = ["MySQLBackend", "MySQLConnection"]


def _escape_json(value: Any, mapping: Any = None) -> str:
    return str(escape_str(json.dumps(value, separators=(",", ":")), mapping))


def _escape_uuid(value: uuid.UUID, mapping: Any = None) -> str:
    return str(escape_str(str(value), mapping))


def _escape_datetime(value: datetime.datetime, mapping: Any = None) -> str:
    # DATETIME has no time zone and pymysql would drop tzinfo silently: store the UTC instant.
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return str(escape_datetime(value, mapping))


def _decode_time(text: str | bytes) -> datetime.time | datetime.timedelta | str | bytes:
    # pymysql reads TIME as a timedelta (TIME spans -838:59:59..838:59:59); a time of day
    # comes back as datetime.time, anything outside one day stays a timedelta.
    delta = convert_timedelta(text)
    if isinstance(delta, datetime.timedelta) and datetime.timedelta(0) <= delta < _ONE_DAY:
        return (datetime.datetime.min + delta).time()
    return delta


_ONE_DAY = datetime.timedelta(days=1)
_CONVERSIONS: dict[Any, Any] = {
    **conversions,
    dict: _escape_json,
    uuid.UUID: _escape_uuid,
    datetime.datetime: _escape_datetime,
    FIELD_TYPE.TIME: _decode_time,
}

_COM_RESET_CONNECTION = 0x1F  # pymysql.constants.COMMAND names it COM_END
_LOST = frozenset({2003, 2006, 2013, 2055})
_PROGRAMMING = frozenset({1049, 1052, 1054, 1064, 1146, 1305})
_UNSAFE_CHARSETS = frozenset({"gbk", "sjis", "big5", "cp932", "gb18030"})
_OPTIONS = frozenset({"charset", "init_command", "sql_mode", "read_timeout", "write_timeout"})


def _message(exc: BaseException) -> str | None:
    # pymysql's str() is the args tuple: "(1062, \"Duplicate entry ...\")".
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (MySQL error {args[0]})"
    return None


def _code(exc: BaseException) -> int | None:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class MySQLConnection(PyformatConnection):
    """One pymysql connection in autocommit mode."""

    backend_name = "mysql"
    dialect = "mysql"
    identifier_quote = "`"
    driver_errors = (pymysql.Error,)

    def _make_dict_cursor(self, conn: Any) -> Any:
        return conn.cursor(pymysql.cursors.DictCursor)

    def _has_rows(self, cursor: Any) -> bool:
        return cursor.description is not None

    def _connection_lost(self, exc: BaseException) -> bool:
        return _code(exc) in _LOST or not self._conn.open

    def _override(self, exc: BaseException) -> type[DBSystemError] | None:
        if _code(exc) in _PROGRAMMING:  # pymysql files these under OperationalError
            return ProgrammingError
        return super()._override(exc)

    def _message(self, exc: BaseException) -> str | None:
        return _message(exc)

    def _lastrowid(self, cursor: pymysql.cursors.Cursor) -> int | None:
        return cursor.lastrowid or None

    def _begin(self, isolation: str | None, readonly: bool) -> None:
        if isolation:
            self._run(f"SET TRANSACTION ISOLATION LEVEL {isolation.upper()}")
        self._run("START TRANSACTION READ ONLY" if readonly else "START TRANSACTION")

    def _rollback(self) -> None:
        self._run("ROLLBACK")

    def stream(
        self, sql: str, params: Mapping[str, Any] | None, batch_size: int
    ) -> Generator[Row, None, None]:
        # An unbuffered cursor: rows come off the socket as they are read.
        cur = pymysql.cursors.SSDictCursor(self._conn)
        try:
            yield from self._stream_from(cur, sql, params, batch_size)
        finally:
            if not self.broken:
                try:
                    cur.close()  # reads and drops what is left of the result
                except pymysql.Error:
                    self.broken = True

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)

    def ping(self) -> None:
        try:
            self._conn.ping(reconnect=False)
        except pymysql.Error as exc:
            raise self._error(exc, None, None) from exc

    # The pool's own session settings, restored after a reset (set by MySQLBackend.connect).
    _restore: str = "SET autocommit = 1"
    _database: str | None = None
    _init_command: str | None = None

    def _reset_session(self) -> None:
        # COM_RESET_CONNECTION (pymysql has no public call for it): the server drops
        # temporary tables, user variables, prepared statements and locks, and sets the
        # session variables back to the global ones; then the pool's own settings again
        # (names, autocommit, sql_mode, statement limit), its database and init_command.
        conn = self._conn
        try:
            conn._execute_command(_COM_RESET_CONNECTION, b"")
            conn._read_ok_packet()
            with conn.cursor() as cur:
                cur.execute(self._restore)
                if self._init_command is not None:
                    cur.execute(self._init_command)
            if self._database:
                conn.select_db(self._database)
        except pymysql.Error as exc:
            raise self._error(exc, "COM_RESET_CONNECTION", None) from exc

    def _reset_pinned_session(self) -> None:
        # Without ending the test's transaction: the pool's settings and database again
        # (user variables and temporary tables cannot be listed, and stay).
        try:
            with self._conn.cursor() as cur:
                cur.execute(self._restore)
            if self._database:
                self._conn.select_db(self._database)
        except pymysql.Error as exc:
            raise self._error(exc, "SET", None) from exc

    @property
    def thread_id(self) -> int:
        """The server's id for this session (for ``KILL``)."""
        return int(self._conn.thread_id())


def _tls_arguments(tls: TLSConfig | None) -> dict[str, object]:
    """pymysql's arguments for a TLS setting.

    pymysql (1.2+) given an SSL context requires TLS and refuses, before authenticating, a
    server that does not offer it; with no TLS argument it uses TLS when offered.
    """
    if tls is None or tls.mode == "prefer":
        return {}
    if tls.mode == "disable":
        return {"ssl_disabled": True}
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif tls.mode == "verify-ca":
        context.check_hostname = False
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return {"ssl": context}


class MySQLBackend(Backend):
    """Opens pymysql connections to one MySQL or MariaDB database."""

    name = "mysql"
    capabilities = Capabilities(returning=False)

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)
        check_options(config.options, _OPTIONS, "MySQL", self.name)
        options = config.options
        charset = str(options.get("charset", "utf8mb4")).lower()
        if charset in _UNSAFE_CHARSETS:
            # Their multibyte characters can end in 0x5c (a backslash): an escaped quote in
            # a value can come out unescaped on the server.
            raise ConfigurationError(
                f"charset {charset!r} is refused: its multibyte characters can hide a "
                "backslash and turn escaped quotes into live ones; use utf8mb4",
                backend=self.name,
            )
        self._kwargs: dict[str, object] = {
            "host": url.host or "localhost",
            "port": url.port or 3306,
            "user": url.username or "root",
            "password": url.password or "",
            "database": url.database,
            "charset": charset,
            "autocommit": True,
            "connect_timeout": config.connect_timeout,
            "conv": _CONVERSIONS,
        }
        for name in ("read_timeout", "write_timeout"):
            if name in options:
                self._kwargs[name] = float(options[name])
            elif config.statement_timeout is not None:  # the client gives up a second later
                self._kwargs[name] = config.statement_timeout + 1.0
        if "init_command" in options:
            self._kwargs["init_command"] = options["init_command"]
        if "sql_mode" in options:
            self._kwargs["sql_mode"] = options["sql_mode"]
        self._kwargs.update(_tls_arguments(config.tls))
        self._secrets = tuple(url.secrets())

    def connect(self) -> MySQLConnection:
        try:
            conn = pymysql.connect(**self._kwargs)  # type: ignore[call-overload]
        except pymysql.Error as exc:
            raise self._cannot_connect(exc, _message(exc)) from exc
        limit = self.config.statement_timeout
        settings = [f"NAMES {self._kwargs['charset']}", "autocommit = 1"]
        if "sql_mode" in self._kwargs:
            settings.append(f"sql_mode = {conn.escape(self._kwargs['sql_mode'])}")
        if limit is not None:  # the server cancels a longer statement
            settings.append(
                f"max_statement_time = {limit:.3f}"
                if "MariaDB" in conn.get_server_info()
                else f"max_execution_time = {round(limit * 1000)}"
            )
            with conn.cursor() as cur:
                cur.execute(f"SET SESSION {settings[-1]}")
        wrapped = MySQLConnection(conn, self.config.log_parameters, self._secrets)
        wrapped._restore = "SET " + ", ".join(settings)
        wrapped._database = self.url.database or None
        init = self._kwargs.get("init_command")
        wrapped._init_command = str(init) if init is not None else None
        return wrapped
