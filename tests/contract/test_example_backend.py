"""A newcomer's backend: one module (tests/example_backend/tiny.py), one registered scheme.

Everything else comes from the engine: pools, hooks (audit, access control), transactions
and savepoints, the builders and the async manager.
"""

from __future__ import annotations

import asyncio

import pytest

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, IntegrityError
from dbsystem.backends import _registry, register_backend
from dbsystem.errors import PermissionDenied
from dbsystem.extend import ExecutionHook, Statement
from dbsystem.query import col
from dbsystem.security import AccessControl, Permission, Role


@pytest.fixture(scope="module", autouse=True)
def tiny_scheme():
    register_backend("tiny", "tests.example_backend.tiny:TinyBackend", DatabaseType.SQLITE)
    yield
    _registry._targets.pop("tiny", None)  # (no public unregister: other tests list schemes)
    _registry._cache.pop("tiny", None)


@pytest.fixture
def db(tmp_path):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"tiny:///{tmp_path / 'tiny.db'}")
    manager.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT UNIQUE)")
    yield manager
    manager.close_all()


def test_runs_sql_with_named_parameters_and_dict_rows(db):
    assert db.backend(DatabaseType.SQLITE).name == "tiny"
    result = db.execute("INSERT INTO notes (body) VALUES (:body)", {"body": "hello"})
    assert (int(result), result.lastrowid) == (1, 1)
    assert db.fetch_all("SELECT * FROM notes") == [{"id": 1, "body": "hello"}]


def test_transactions_and_savepoints_come_from_the_engine(db):
    with db.transaction() as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('kept')")
        with pytest.raises(IntegrityError), conn.transaction():
            conn.execute("INSERT INTO notes (body) VALUES ('doomed')")
            conn.execute("INSERT INTO notes (body) VALUES ('kept')")
    assert db.fetch_all("SELECT body FROM notes") == [{"body": "kept"}]


def test_the_builders_compile_for_its_dialect(db):
    db.execute("INSERT INTO notes (body) VALUES ('a'), ('b'), ('c')")
    query = db.query().select("body").from_("notes").where(col("body") != "b").order_by("body")
    assert query.execute() == [{"body": "a"}, {"body": "c"}]


def test_hooks_see_its_statements_and_access_control_applies(db):
    seen: list[Statement] = []

    class Recorder(ExecutionHook):
        def after_execute(self, statement: Statement) -> None:
            seen.append(statement)

    db.add_hook(Recorder())
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"notes": Permission.SELECT}))
    acl.assign_role("ann", "reader")
    db.use_access_control(acl)
    ann = db.for_user("ann")
    assert ann.fetch_all("SELECT body FROM notes") == []
    with pytest.raises(PermissionDenied):
        ann.execute("DELETE FROM notes")
    assert [(s.backend, s.action, s.outcome) for s in seen] == [
        ("tiny", "select", "ok"),
        ("tiny", "delete", "refused"),
    ]


def test_the_async_manager_serves_it_too(tmp_path):
    async def main() -> list[dict[str, object]]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.SQLITE, f"tiny:///{tmp_path / 'async.db'}")
        try:
            await adb.execute("CREATE TABLE t (x INTEGER)")
            await adb.execute("INSERT INTO t VALUES (:x)", {"x": 7})
            return await adb.fetch_all("SELECT x FROM t")
        finally:
            await adb.close_all()

    assert asyncio.run(main()) == [{"x": 7}]
