"""The engine: pools, connections, transactions, the manager underneath the public one.

``Engine`` (``core.manager``) holds the pools and lends connections; the public
``dbsystem.DatabaseManager`` is the engine plus the features' methods (``dbsystem._facade``).
Every ``Statement`` is built in ``core.execution``; what the sync and async sides share is
written once in ``_pool_base``, ``_connection_base``, ``_flow`` and ``_calls``. The types,
URL, settings and hooks the engine runs on are the kernel's (``dbsystem.kernel``).
"""

from dbsystem.core.configfile import PoolSpec, load_toml
from dbsystem.core.connection import Connection, StatementLogger, Transaction
from dbsystem.core.execution import DriverPool, statement
from dbsystem.core.manager import Engine
from dbsystem.core.pool import ConnectionPool, Connector, PooledConnection
from dbsystem.core.session import EngineSession, SessionContext

__all__ = [
    "Connection",
    "ConnectionPool",
    "Connector",
    "DriverPool",
    "Engine",
    "EngineSession",
    "PoolSpec",
    "PooledConnection",
    "SessionContext",
    "StatementLogger",
    "Transaction",
    "load_toml",
    "statement",
]
