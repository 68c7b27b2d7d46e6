"""Helpers for testing code that uses dbsystem: a query counter, and the pytest plugin.

The plugin (``dbsystem.testing.pytest_plugin``) is registered through the ``pytest11``
entry point, so its fixtures are available in any test suite once dbsystem is installed:

* ``dbsystem_manager``: a fresh ``DatabaseManager`` per test, installed as
  ``DatabaseManager.instance()`` for the test's duration, closed afterwards.
* ``dbsystem_mock``: a ``MockBackend`` behind a PostgreSQL pool of that manager;
  ``make_dbsystem_mock(DatabaseType.MYSQL)`` for other types.
* ``dbsystem_sqlite``: a manager whose SQLite pool runs each test inside a transaction that
  is rolled back afterwards; override ``dbsystem_sqlite_setup`` to create your schema once.
* ``assert_num_queries``: ``with assert_num_queries(2): ...`` fails unless exactly two
  statements ran through the current manager inside the block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dbsystem.kernel.hooks import ExecutionHook, Statement

__all__ = ["QueryCounter", "python_check_disabled"]


class QueryCounter(ExecutionHook):
    """A hook that records the statements that ran (transaction control left out by default)."""

    def __init__(self, include_transactions: bool = False) -> None:
        self.include_transactions = include_transactions
        self.statements: list[Statement] = []
        self._lock = threading.Lock()

    def after_execute(self, statement: Statement) -> None:
        if not statement.executed:
            return
        if statement.operation in ("begin", "commit", "rollback") and not self.include_transactions:
            return
        with self._lock:
            self.statements.append(statement)

    @property
    def count(self) -> int:
        """How many statements ran."""
        return len(self.statements)


@contextmanager
def python_check_disabled(acl: Any) -> Iterator[Any]:
    """Test only: turn off ``acl``'s Python check (grants and row policies) in the block,
    so that a test can show what the database refuses by itself (native enforcement)."""
    previous = acl._python_check
    acl._python_check = False
    try:
        yield acl
    finally:
        acl._python_check = previous
