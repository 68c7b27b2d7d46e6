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
from collections.abc import Generator, Mapping, Sequence
from operator import itemgetter
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import JsonbDumper

from dbsystem.backends._pyformat import PyformatConnection
from dbsystem.backends._translate import translate
from dbsystem.backends.base import Backend, Capabilities
from dbsystem.core.config import PoolConfig
from dbsystem.core.types import Row
from dbsystem.core.url import DatabaseURL
from dbsystem.errors import ConfigurationError, ConnectionFailed, ConnectionTimeout

__all__ = ["PostgreSQLBackend", "PostgreSQLConnection"]

_stream_ids = itertools.count(1)
# Compared with pgconn.transaction_status (a plain int): conn.info builds an object per call.
_IDLE = int(TransactionStatus.IDLE)
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_dumper(dict, JsonbDumper)


class PostgreSQLConnection(PyformatConnection):
    """One psycopg connection in autocommit mode."""

    backend_name = "postgresql"
    dialect = "postgresql"
    driver_errors = (psycopg.Error,)

    def _make_dict_cursor(self, conn: Any) -> Any:
        return conn.cursor(row_factory=dict_row)

    def _has_rows(self, cursor: Any) -> bool:
        # pgresult, not description: description builds a Column object per column.
        result = cursor.pgresult
        return result is not None and result.nfields > 0

    def _connection_lost(self, exc: BaseException) -> bool:
        return bool(self._conn.broken or self._conn.closed)

    def _begin(self, isolation: str | None, readonly: bool) -> None:
        sql = "BEGIN"
        if isolation:
            sql += f" ISOLATION LEVEL {isolation.upper()}"
        if readonly:
            sql += " READ ONLY"
        self._run(sql)

    def _commit(self) -> None:
        self._run("COMMIT")

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
            if params is None:
                cur.execute(sql)
            else:
                cur.execute(self._query(sql, params), params)
            while batch := cur.fetchmany(batch_size):
                yield from batch
        except psycopg.Error as exc:
            failed = True
            raise self._error(exc, sql, params) from exc
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

    def close(self) -> None:
        try:
            self._conn.close()
        except psycopg.Error:
            pass

    @property
    def backend_pid(self) -> int:
        """The server process serving this connection (for ``pg_terminate_backend``)."""
        return int(self._conn.info.backend_pid)


class PostgreSQLBackend(Backend):
    """Opens psycopg connections to one PostgreSQL database."""

    name = "postgresql"
    capabilities = Capabilities(returning=True, lastrowid=False)

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)
        options = dict(config.options)
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
        if config.statement_timeout is not None:  # the server cancels a longer statement
            limit = f"-c statement_timeout={round(config.statement_timeout * 1000)}"
            options["options"] = f"{options['options']} {limit}" if "options" in options else limit
        try:
            self._conninfo = psycopg.conninfo.make_conninfo(
                host=url.host or None,
                port=url.port,
                dbname=url.database,
                user=url.username,
                password=url.password,
                connect_timeout=max(1, round(config.connect_timeout)),
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
            conn = psycopg.connect(self._conninfo, autocommit=True, context=_ADAPTERS)
        except psycopg.Error as exc:
            text = str(exc)
            if "invalid connection option" in text:
                raise translate(
                    exc, backend=self.name, secrets=self._secrets, override=ConfigurationError
                ) from exc
            cls = ConnectionTimeout if "timeout expired" in text else ConnectionFailed
            raise translate(
                exc,
                backend=self.name,
                secrets=self._secrets,
                override=cls,
                message=f"cannot connect to {self.url}: {text}",
            ) from exc
        return PostgreSQLConnection(conn, self.config.log_parameters, self._secrets)
