"""The asyncio API: ``AsyncDatabaseManager`` and what it lends (see docs/ASYNC.md)."""

from dbsystem.aio.connection import AsyncConnection, AsyncTransaction
from dbsystem.aio.manager import AsyncDatabaseManager, AsyncQueryFactory, AsyncUserSession
from dbsystem.aio.pool import AsyncConnectionPool, AsyncPooledConnection

__all__ = [
    "AsyncConnection",
    "AsyncConnectionPool",
    "AsyncDatabaseManager",
    "AsyncPooledConnection",
    "AsyncQueryFactory",
    "AsyncTransaction",
    "AsyncUserSession",
]
