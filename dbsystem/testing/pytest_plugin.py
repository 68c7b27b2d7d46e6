"""The dbsystem pytest plugin: fixtures for testing code that uses dbsystem.

Registered through the ``pytest11`` entry point; see ``dbsystem.testing`` for the fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from dbsystem._facade import DatabaseManager
from dbsystem.backends.mock import MockBackend
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import DatabaseType
from dbsystem.testing import QueryCounter

_MOCK_URLS = {
    DatabaseType.POSTGRES: "mock://postgresql",
    DatabaseType.MYSQL: "mock://mysql",
    DatabaseType.SQLITE: "mock://sqlite",
}


@pytest.fixture
def dbsystem_manager() -> Iterator[DatabaseManager]:
    """A fresh manager, installed as ``DatabaseManager.instance()`` during the test."""
    manager = DatabaseManager()
    previous = DatabaseManager._replace_instance(manager)
    try:
        yield manager
    finally:
        manager.close_all()
        DatabaseManager._replace_instance(previous)


@pytest.fixture
def make_dbsystem_mock(
    dbsystem_manager: DatabaseManager,
) -> Callable[..., MockBackend]:
    """``make_dbsystem_mock(db_type=DatabaseType.POSTGRES, name=None, strict=True)``.

    Creates a ``mock://`` pool of that type in the test's manager and returns its mock.
    """

    def make(
        db_type: DatabaseType = DatabaseType.POSTGRES,
        name: str | None = None,
        strict: bool = True,
    ) -> MockBackend:
        url = _MOCK_URLS[db_type] + ("" if strict else "?strict=false")
        dbsystem_manager.create_pool(db_type, PoolConfig(url=url, min_size=0), name=name)
        return dbsystem_manager.mock(db_type, name)

    return make


@pytest.fixture
def dbsystem_mock(make_dbsystem_mock: Callable[..., MockBackend]) -> MockBackend:
    """A mock PostgreSQL pool in the test's manager; script it with ``expect(...)``."""
    return make_dbsystem_mock(DatabaseType.POSTGRES)


@pytest.fixture(scope="session")
def dbsystem_sqlite_setup() -> Callable[[DatabaseManager], Any] | None:
    """Override to prepare the SQLite database once per session (create tables...).

    Return a callable taking the manager, or None.
    """
    return None


@pytest.fixture(scope="session")
def _dbsystem_sqlite_session(
    dbsystem_sqlite_setup: Callable[[DatabaseManager], Any] | None,
) -> Iterator[DatabaseManager]:
    manager = DatabaseManager()
    # One connection, so the test and the code under test share the open transaction.
    manager.create_pool(
        DatabaseType.SQLITE,
        PoolConfig(
            url="sqlite://:memory:",
            min_size=1,
            max_size=1,
            max_lifetime=None,
            idle_timeout=None,
            health_check_interval=None,
        ),
    )
    if dbsystem_sqlite_setup is not None:
        previous = DatabaseManager._replace_instance(manager)
        try:
            dbsystem_sqlite_setup(manager)
        finally:
            DatabaseManager._replace_instance(previous)
    try:
        yield manager
    finally:
        manager.close_all()


@pytest.fixture
def dbsystem_sqlite(_dbsystem_sqlite_session: DatabaseManager) -> Iterator[DatabaseManager]:
    """A manager with one SQLite pool; everything the test writes is rolled back after it.

    The pool has a single connection: code that borrows a second one at the same time
    (from another thread) waits for it.
    """
    manager = _dbsystem_sqlite_session
    with manager.connection(DatabaseType.SQLITE) as conn:
        raw = conn._lease_raw()
        raw.begin()
        raw.base_depth = 1
    previous = DatabaseManager._replace_instance(manager)
    try:
        yield manager
    finally:
        DatabaseManager._replace_instance(previous)
        with manager.connection(DatabaseType.SQLITE) as conn:
            raw = conn._lease_raw()
            raw.base_depth = 0
            raw.rollback()


@pytest.fixture
def assert_num_queries() -> Callable[..., Any]:
    """``with assert_num_queries(n): ...``: exactly ``n`` statements must run in the block.

    Counts statements through ``DatabaseManager.instance()`` (the test's manager when a
    dbsystem fixture is in use), or through ``manager=``. Transaction control (BEGIN,
    COMMIT...) is not counted unless ``include_transactions=True``.
    """

    @contextmanager
    def check(
        expected: int,
        *,
        manager: DatabaseManager | None = None,
        include_transactions: bool = False,
    ) -> Iterator[QueryCounter]:
        target = manager or DatabaseManager.instance()
        counter = QueryCounter(include_transactions)
        target.add_hook(counter)
        try:
            yield counter
        finally:
            target.remove_hook(counter)
        if counter.count != expected:
            ran = "\n  ".join(s.text for s in counter.statements) or "(none)"
            pytest.fail(f"expected {expected} statement(s), {counter.count} ran:\n  {ran}")

    return check
