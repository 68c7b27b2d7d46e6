"""Small shared types: the backend enum, row and parameter aliases, and the result of ``execute``.

Nothing here does I/O; every other module may import it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypeAlias

__all__ = ["DatabaseType", "ExecuteResult", "Params", "Row"]

Row: TypeAlias = dict[str, Any]
"""One result row: column name to value."""

Params: TypeAlias = Mapping[str, Any] | None
"""Statement parameters, bound by name (``:name`` in the SQL text)."""


class DatabaseType(enum.Enum):
    """The kinds of database a manager can hold pools for."""

    NONE = "none"
    POSTGRES = "postgres"
    MYSQL = "mysql"
    SQLITE = "sqlite"
    ORACLE = "oracle"
    MONGODB = "mongodb"
    REDIS = "redis"

    @classmethod
    def parse(cls, value: DatabaseType | str) -> DatabaseType:
        """Return the member for ``value``: a member, its value, or its name in any case.

        Common aliases are accepted: ``postgresql``, ``pg``, ``mariadb``, ``mongo``.
        """
        if isinstance(value, DatabaseType):
            return value
        key = str(value).strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            from dbsystem.errors import ConfigurationError

            valid = ", ".join(m.value for m in cls)
            raise ConfigurationError(
                f"unknown database type {value!r}; valid types: {valid}"
            ) from None

    @property
    def is_sql(self) -> bool:
        """True for the relational types (PostgreSQL, MySQL, SQLite, Oracle)."""
        return self in _SQL_TYPES


_ALIASES = {
    "postgresql": "postgres",
    "pg": "postgres",
    "psql": "postgres",
    "mariadb": "mysql",
    "mongo": "mongodb",
    "sqlite3": "sqlite",
}
_SQL_TYPES = frozenset(
    {DatabaseType.POSTGRES, DatabaseType.MYSQL, DatabaseType.SQLITE, DatabaseType.ORACLE}
)


class ExecuteResult(int):
    """What ``execute`` returns: the affected row count, an ``int``, with ``lastrowid``.

    It compares and computes like the row count itself (``conn.execute(...) == 1``);
    ``lastrowid`` is the id the backend generated for the last inserted row, or ``None``
    where the backend reports none.
    """

    lastrowid: int | None

    def __new__(cls, rowcount: int, lastrowid: int | None = None) -> ExecuteResult:
        self = int.__new__(cls, rowcount)
        self.lastrowid = lastrowid
        return self

    @property
    def rowcount(self) -> int:
        """The number of rows the statement affected (-1 when the backend cannot tell)."""
        return int(self)

    def __repr__(self) -> str:
        return f"ExecuteResult(rowcount={int(self)}, lastrowid={self.lastrowid})"
