"""The exception hierarchy of dbsystem: every error the library raises is one of these.

The names follow PEP 249 so that code written against a DB-API driver reads the same::

    DBSystemError                       root; every error we raise
      InterfaceError                    misuse of our API, or an object used after it was closed
      DatabaseError                     anything the server or the driver reported
        DataError                       a value the database cannot store (overflow, bad encoding)
        IntegrityError                  a constraint refused a change (unique, foreign key...)
        ConflictError                   a row changed since it was read (optimistic locking)
        InternalError                   the database reported an internal inconsistency
        ProgrammingError                the statement is wrong (syntax, unknown table, parameters)
          CrossSlotError                Redis Cluster: one command's keys are in different slots
        NotSupportedError               the backend cannot do what was asked
        OperationalError                the database or the connection to it failed
          ConnectionFailed              a connection could not be opened, or was lost
            ConnectionTimeout           opening a connection took too long
            CommitUnknownError          lost while COMMIT was in flight: outcome unknown
          RetryableError                a deadlock or serialization failure: run it again
          PoolError                     the connection pool refused to hand out a connection
            PoolTimeout                 no connection came free within the acquire timeout
            PoolClosed                  the pool was closed
            PoolExhausted               too many callers are already waiting
              LeaseLimitReached         a user session holds all the connections its cap allows
      ConfigurationError                a setting is invalid (also a ValueError)
        InvalidURL                      a connection URL cannot be parsed
        BackendNotFound                 no backend is registered for a URL scheme
        BackendNotAvailable             the backend's driver is not installed
      QueryBuildError                   a query builder was given something it cannot compile
      SchemaError                       a schema definition or migration is invalid
        MigrationError                  a migration could not be applied or reverted
      SecurityError                     an access-control or credential failure
        AuthenticationError             credentials were refused
        PermissionDenied                the caller's roles do not allow the action

Errors raised on behalf of a database carry the backend name (``backend``), the statement
that failed (``statement``), its parameters (``params``, ``None`` unless the pool was
configured with ``log_parameters=True``) and the driver's exception as ``__cause__`` (also
``orig``). Their text never contains a password: see ``dbsystem.kernel.url.redact``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BackendNotAvailable",
    "BackendNotFound",
    "CommitUnknownError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailed",
    "ConnectionTimeout",
    "CrossSlotError",
    "DBSystemError",
    "DataError",
    "DatabaseError",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "InvalidURL",
    "LeaseLimitReached",
    "MigrationError",
    "NotSupportedError",
    "OperationalError",
    "PermissionDenied",
    "PoolClosed",
    "PoolError",
    "PoolExhausted",
    "PoolTimeout",
    "ProgrammingError",
    "QueryBuildError",
    "RetryableError",
    "SchemaError",
    "SecurityError",
]

_STATEMENT_PREVIEW = 200


class DBSystemError(Exception):
    """Root of every exception raised by dbsystem."""

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        statement: str | None = None,
        params: Any = None,
        orig: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend
        self.statement = statement
        self.params = params
        self.orig = orig

    def __str__(self) -> str:
        text = f"[{self.backend}] {self.message}" if self.backend else self.message
        if self.statement:
            preview = self.statement
            if len(preview) > _STATEMENT_PREVIEW:
                preview = preview[:_STATEMENT_PREVIEW] + "..."
            label = "command" if (self.backend or "").endswith(("redis", "mongodb")) else "SQL"
            text += f"\n[{label}: {preview}]"
        if self.params is not None:
            text += f"\n[parameters: {self.params!r}]"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword attributes when an error crosses a process boundary.
        return (
            _rebuild,
            (type(self), self.message, self.backend, self.statement, self.params),
        )


def _rebuild(
    cls: type[DBSystemError], message: str, backend: str | None, statement: str | None, params: Any
) -> DBSystemError:
    return cls(message, backend=backend, statement=statement, params=params)


class InterfaceError(DBSystemError):
    """Raised when the API is misused, or an object is used after it was closed or released."""


class DatabaseError(DBSystemError):
    """Raised for errors the database or its driver reported."""

    row_index: int | None = None
    """For ``insert_many``: the index of the first row that failed."""


class DataError(DatabaseError):
    """Raised when a value cannot be stored: out of range, wrong type, bad encoding."""


class IntegrityError(DatabaseError):
    """Raised when a constraint (unique, foreign key, not null, check) refuses a change."""


class ConflictError(DatabaseError):
    """Raised when an entity's row changed since it was read (optimistic locking)."""


class InternalError(DatabaseError):
    """Raised when the database reports an internal inconsistency."""


class ProgrammingError(DatabaseError):
    """Raised when a statement is wrong: syntax, unknown table or column, bad parameters."""


class CrossSlotError(ProgrammingError):
    """Raised when a Redis Cluster command or MULTI/EXEC transaction names keys that hash
    to different slots. The fix is a common hash tag: ``{user:1}:a`` and ``{user:1}:b``."""


class NotSupportedError(DatabaseError):
    """Raised when a backend (or a mock of one) cannot do what was asked."""


class OperationalError(DatabaseError):
    """Raised when the database or the connection to it fails, outside the caller's control."""


class ConnectionFailed(OperationalError):
    """Raised when a connection cannot be opened, or was lost while in use."""


class ConnectionTimeout(ConnectionFailed):
    """Raised when opening a connection does not complete within the connect timeout."""


class CommitUnknownError(ConnectionFailed):
    """Raised when the connection was lost while COMMIT was in flight.

    The transaction may or may not have committed: the server may have committed it and
    the reply been lost. Do not assume it was rolled back; check (idempotently) before
    running it again.
    """


class RetryableError(OperationalError):
    """Raised when the database rolled the transaction back because of a conflict with
    another one, and running it again may succeed: a deadlock (PostgreSQL 40P01, MySQL
    1213), a serialization failure (PostgreSQL 40001), a lock wait timeout (MySQL 1205),
    SQLite's ``database is locked``. ``dbsystem.retry`` runs a closure again on these."""


class PoolError(OperationalError):
    """Raised when a connection pool cannot hand out a connection."""


class PoolTimeout(PoolError):
    """Raised when no connection came free within the acquire timeout."""


class PoolClosed(PoolError):
    """Raised when a closed pool is used, and to callers still waiting when it closes."""


class PoolExhausted(PoolError):
    """Raised at once when the number of waiting callers has reached ``max_waiting``."""


class LeaseLimitReached(PoolExhausted):
    """Raised when a user session holds as many connections of a pool as its cap allows
    (``Role(max_connections=...)``, ``for_user(..., max_connections=...)``) and none of
    them came back within the acquire timeout. The message names the user and the cap."""


class ConfigurationError(DBSystemError, ValueError):
    """Raised when a setting is invalid; the message names the field."""


class InvalidURL(ConfigurationError):
    """Raised when a connection URL cannot be parsed."""


class BackendNotFound(ConfigurationError):
    """Raised when no backend is registered for a URL scheme; the message lists the valid ones."""


class BackendNotAvailable(ConfigurationError):
    """Raised when a backend's driver is not installed; the message names the extra to install."""


class QueryBuildError(DBSystemError):
    """Raised when a query builder is given something it cannot compile. No I/O happened."""


class SchemaError(DBSystemError):
    """Raised when a schema definition is invalid."""


class MigrationError(SchemaError):
    """Raised when a migration cannot be applied or reverted."""


class SecurityError(DBSystemError):
    """Raised for access-control and credential failures."""


class AuthenticationError(SecurityError):
    """Raised when credentials are refused."""


class PermissionDenied(SecurityError):
    """Raised when the caller's roles do not grant the action on the resource."""
