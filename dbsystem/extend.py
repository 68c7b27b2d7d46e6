"""The extension API: what a new backend, hook or pool wrapper is written against.

Application code needs ``dbsystem`` only; this module gathers the declared interfaces and
base classes for code that extends the library (docs/ARCHITECTURE.md, "Adding a backend"):

- a SQL backend subclasses ``Backend`` and ``SQLConnectionBase`` (``Capabilities`` says
  what it supports) and registers its URL scheme with ``register_backend``;
- a key-value or document backend implements ``DriverPoolBackend``: the engine wraps its
  driver's pool in a ``DriverPool`` and its handles hand each operation to that pool as a
  ``Description``;
- a hook subclasses ``ExecutionHook`` and sees every ``Statement`` through the pools'
  ``HookChain``;
- ``StatementRunner`` is what the builders and the ORM take: a manager, a user session.
"""

from __future__ import annotations

from dbsystem.backends import register_backend
from dbsystem.backends.base import Backend, Capabilities, SQLConnectionBase
from dbsystem.core.execution import DriverPool, statement
from dbsystem.core.pool import ConnectionPool, PooledConnection
from dbsystem.kernel.hooks import Description, ExecutionHook, HookChain, Statement
from dbsystem.kernel.protocols import BackendKind, BackendLike, DriverPoolBackend, StatementRunner

__all__ = [
    "Backend",
    "BackendKind",
    "BackendLike",
    "Capabilities",
    "ConnectionPool",
    "Description",
    "DriverPool",
    "DriverPoolBackend",
    "ExecutionHook",
    "HookChain",
    "PooledConnection",
    "SQLConnectionBase",
    "Statement",
    "StatementRunner",
    "register_backend",
    "statement",
]
