"""Turning driver exceptions into dbsystem errors, in one place for every backend.

psycopg, pymysql and sqlite3 all raise the PEP 249 classes, so the default mapping goes by
class name along the exception's MRO; a backend passes ``override`` for finer cases (SQLite's
generic SQLITE_ERROR is a ProgrammingError, a lost connection is ConnectionFailed). The
driver's message is scrubbed of secrets, and the original is kept as ``__cause__``/``orig``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dbsystem import errors  # the module, not the package
from dbsystem.kernel.url import redact

__all__ = ["translate"]

_BY_PEP249_NAME: dict[str, type[errors.DBSystemError]] = {
    "IntegrityError": errors.IntegrityError,
    "DataError": errors.DataError,
    "ProgrammingError": errors.ProgrammingError,
    "NotSupportedError": errors.NotSupportedError,
    "InternalError": errors.InternalError,
    "OperationalError": errors.OperationalError,
    "InterfaceError": errors.InterfaceError,
    "DatabaseError": errors.DatabaseError,
}


def translate(
    exc: BaseException,
    *,
    backend: str,
    statement: str | None = None,
    params: Any = None,
    show_params: bool = False,
    secrets: Iterable[str | None] = (),
    override: type[errors.DBSystemError] | None = None,
    message: str | None = None,
) -> errors.DBSystemError:
    """Return the dbsystem error for a driver exception (the caller raises it ``from exc``)."""
    if isinstance(exc, errors.DBSystemError):
        return exc
    cls = override or _class_for(exc)
    text = redact(
        message if message is not None else (str(exc).strip() or type(exc).__name__), secrets
    )
    err = cls(
        text,
        backend=backend,
        statement=statement,
        params=params if show_params else None,
        orig=exc,
    )
    err.__cause__ = exc
    return err


# Conflicts that roll a transaction back and may succeed when run again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_RETRYABLE_MYSQL_CODES = frozenset({1213, 1205})  # deadlock, lock wait timeout


def _retryable(exc: BaseException) -> bool:
    if getattr(exc, "sqlstate", None) in _RETRYABLE_SQLSTATES:  # psycopg
        return True
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):  # pymysql: (code, message)
        return args[0] in _RETRYABLE_MYSQL_CODES
    return type(exc).__name__ == "OperationalError" and "database is locked" in str(exc)


def _class_for(exc: BaseException) -> type[errors.DBSystemError]:
    if _retryable(exc):
        return errors.RetryableError
    for klass in type(exc).__mro__:
        found = _BY_PEP249_NAME.get(klass.__name__)
        if found is not None:
            return found
    return errors.DatabaseError
