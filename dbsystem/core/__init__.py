"""The core: configuration, URLs, the pool and the execution path.

``DatabaseManager`` lives in ``dbsystem.core.manager`` and is exported from ``dbsystem``; it is
not re-exported here because it depends on ``dbsystem.backends``, which depends on this package.
"""

from dbsystem.core.configfile import PoolSpec, load_toml
from dbsystem.core.connection import Connection, StatementLogger, Transaction
from dbsystem.core.pool import ConnectionPool, Connector, PooledConnection
from dbsystem.kernel.config import PoolConfig, TLSConfig, TLSMode
from dbsystem.kernel.hooks import ExecutionHook, HookChain, Statement
from dbsystem.kernel.stats import PoolStats
from dbsystem.kernel.types import DatabaseType, ExecuteResult, Params, Row
from dbsystem.kernel.url import DatabaseURL, redact

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
