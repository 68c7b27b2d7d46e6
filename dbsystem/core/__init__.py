"""The core: configuration, URLs, the pool and the execution path.

``DatabaseManager`` lives in ``dbsystem.core.manager`` and is exported from ``dbsystem``; it is
not re-exported here because it depends on ``dbsystem.backends``, which depends on this package.
"""

from dbsystem.core.config import PoolConfig, PoolSpec, TLSConfig, TLSMode, load_toml
from dbsystem.core.connection import Connection, StatementLogger, Transaction
from dbsystem.core.hooks import ExecutionHook, HookChain, Statement
from dbsystem.core.pool import ConnectionPool, Connector, PooledConnection, PoolStats
from dbsystem.core.types import DatabaseType, ExecuteResult, Params, Row
from dbsystem.core.url import DatabaseURL, redact

__all__ = [
    "Connection",
    "ConnectionPool",
    "Connector",
    "DatabaseType",
    "DatabaseURL",
    "ExecuteResult",
    "ExecutionHook",
    "HookChain",
    "Params",
    "PoolConfig",
    "PoolSpec",
    "PoolStats",
    "PooledConnection",
    "Row",
    "Statement",
    "StatementLogger",
    "TLSConfig",
    "TLSMode",
    "Transaction",
    "load_toml",
    "redact",
]
