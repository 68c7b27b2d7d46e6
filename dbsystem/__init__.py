"""dbsystem: one data-access layer over PostgreSQL, MySQL/MariaDB, SQLite, MongoDB and Redis.

Start with ``DatabaseManager.instance()``, ``create_pool`` and ``connection``::

    from dbsystem import DatabaseManager, DatabaseType, PoolConfig

    db = DatabaseManager.instance()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite:///app.db"))
    with db.connection(DatabaseType.SQLITE) as conn:
        rows = conn.fetch_all("SELECT * FROM users WHERE name = :name", {"name": "ada"})

Errors are in ``dbsystem.errors`` (also exported here); what extensions (backends, hooks)
are written against is in ``dbsystem.extend``.
"""

import logging
import typing as _typing

from dbsystem import errors
from dbsystem._facade import DatabaseManager, UserSession
from dbsystem._version import __version__
from dbsystem.backends import available_schemes, register_backend
from dbsystem.core.configfile import PoolSpec, load_toml
from dbsystem.core.connection import Connection, Transaction
from dbsystem.core.coordinator import (
    DistributedTransaction,
    InDoubt,
    RecoveryReport,
    TransactionCoordinator,
)
from dbsystem.core.pool import ConnectionPool
from dbsystem.core.retry import retry
from dbsystem.core.topology import Member, Topology
from dbsystem.errors import (
    CommitUnknownError,
    ConfigurationError,
    ConflictError,
    ConnectionFailed,
    CrossSlotError,
    DatabaseError,
    DataError,
    DBSystemError,
    IntegrityError,
    InterfaceError,
    LeaseLimitReached,
    MigrationError,
    NotSupportedError,
    OperationalError,
    PermissionDenied,
    PoolClosed,
    PoolExhausted,
    PoolTimeout,
    ProgrammingError,
    QueryBuildError,
    RetryableError,
    SchemaError,
    SecurityError,
)
from dbsystem.kernel.config import PoolConfig, TLSConfig
from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.kernel.stats import PoolHolder, PoolStats
from dbsystem.kernel.types import DatabaseType, ExecuteResult
from dbsystem.kernel.url import DatabaseURL
from dbsystem.scaling.sharding import Route, ShardedPool

if _typing.TYPE_CHECKING:  # loaded on first use at run time (see __getattr__), typed for checkers
    from dbsystem.aio import AsyncDatabaseManager

logging.getLogger("dbsystem").addHandler(logging.NullHandler())


def __getattr__(name: str) -> object:
    # The asyncio API loads on first use (it imports psycopg's async driver).
    if name == "AsyncDatabaseManager":
        from dbsystem.aio import AsyncDatabaseManager

        return AsyncDatabaseManager
    raise AttributeError(f"module 'dbsystem' has no attribute {name!r}")


__all__ = [
    "AsyncDatabaseManager",
    "CommitUnknownError",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "ConnectionFailed",
    "ConnectionPool",
    "CrossSlotError",
    "DBSystemError",
    "DataError",
    "DatabaseError",
    "DatabaseManager",
    "DatabaseType",
    "DatabaseURL",
    "DistributedTransaction",
    "ExecuteResult",
    "ExecutionHook",
    "InDoubt",
    "IntegrityError",
    "InterfaceError",
    "LeaseLimitReached",
    "Member",
    "MigrationError",
    "NotSupportedError",
    "OperationalError",
    "PermissionDenied",
    "PoolClosed",
    "PoolConfig",
    "PoolExhausted",
    "PoolHolder",
    "PoolSpec",
    "PoolStats",
    "PoolTimeout",
    "ProgrammingError",
    "QueryBuildError",
    "RecoveryReport",
    "RetryableError",
    "Route",
    "SchemaError",
    "SecurityError",
    "ShardedPool",
    "Statement",
    "TLSConfig",
    "Topology",
    "Transaction",
    "TransactionCoordinator",
    "UserSession",
    "__version__",
    "available_schemes",
    "errors",
    "load_toml",
    "register_backend",
    "retry",
]
