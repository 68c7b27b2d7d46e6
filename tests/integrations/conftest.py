"""What the web framework tests share: a table of the test's own on SQLite or PostgreSQL,
and a hook recording whose statements ran."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.kernel.hooks import ExecutionHook

WEB_KINDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def web_target(request, tmp_path):
    """(type, URL, table) for ``request.param`` ("sqlite" or "postgres"): a table
    ``integ_web_*`` with the row (1, 'ann'), dropped at the end."""
    if request.param == "sqlite":
        db_type, url = DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'web.db'}"
    else:
        db_type, url = DatabaseType.POSTGRES, request.getfixturevalue("postgres_url")
    table = f"integ_web_{uuid.uuid4().hex[:8]}"
    setup = DatabaseManager()
    setup.create_pool(db_type, PoolConfig(url=url))
    setup.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, owner VARCHAR(20))")
    setup.execute(f"INSERT INTO {table} (id, owner) VALUES (1, 'ann')")
    yield db_type, url, table
    setup.execute(f"DROP TABLE IF EXISTS {table}")
    setup.close_all()


class StatementUsers(ExecutionHook):
    """Records the user of every statement (None: the application's own)."""

    def __init__(self) -> None:
        self.users: list[str | None] = []

    def after_execute(self, statement) -> None:
        self.users.append(statement.context.user if statement.context else None)
