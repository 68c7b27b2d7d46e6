"""A user session stays who it is and reaches nothing that skips the checks (issue 19).

- one user per connection: a session's ``transaction()`` nested in a block of the
  application or of another user, on the same pool, is refused (it used to take over the
  outer connection, so later statements ran as the wrong user);
- no escape to the engine: the session has no public ``manager``, and ``backend()`` gives a
  read-only ``BackendInfo`` (kind, dialect), never the object that opens connections;
- listeners and change streams hold connections outside the hook chain: refused to sessions.
"""

from __future__ import annotations

import asyncio

import pytest

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.extend import ExecutionHook, Statement
from dbsystem.kernel.protocols import BackendInfo
from dbsystem.security import AccessControl, Permission, Role
from dbsystem.streams import StreamProcessor
from dbsystem.streams.redis import RedisChannelListener


def _acl() -> AccessControl:
    acl = AccessControl()
    acl.create_role(Role("writer", grants={"notes": Permission.SELECT | Permission.INSERT}))
    acl.assign_role("ann", "writer")
    acl.assign_role("bob", "writer")
    return acl


class _Users(ExecutionHook):
    """Records who each statement ran as."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str]] = []

    def after_execute(self, statement: Statement) -> None:
        user = statement.context.user if statement.context is not None else None
        self.seen.append((user, statement.operation))


@pytest.fixture
def db(tmp_path):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'iso.db'}")
    manager.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    manager.use_access_control(_acl())
    yield manager
    manager.close_all()


def test_a_session_transaction_inside_the_applications_is_refused(db):
    users = db.add_hook(_Users())
    ann = db.for_user("ann")
    with db.transaction() as conn:
        with pytest.raises(PermissionDenied, match="one user for its whole lease"):
            with ann.transaction():
                pass
        conn.execute("INSERT INTO notes (body) VALUES ('by the application')")
    # The application's statements after the refusal still ran as the application.
    assert (None, "execute") in users.seen
    assert ("ann", "execute") not in users.seen
    assert db.fetch_all("SELECT body FROM notes") == [{"body": "by the application"}]


def test_one_users_transaction_cannot_be_taken_over_by_another(db):
    ann, bob = db.for_user("ann"), db.for_user("bob")
    with ann.transaction() as conn:
        with pytest.raises(PermissionDenied, match="inside one of user 'ann'"):
            with bob.transaction():
                pass
        conn.execute("INSERT INTO notes (body) VALUES ('ann')")
        assert conn._context.user == "ann"


def test_a_sessions_own_nested_block_is_a_savepoint(db):
    ann = db.for_user("ann")
    with ann.transaction() as outer:
        outer.execute("INSERT INTO notes (body) VALUES ('kept')")
        with pytest.raises(RuntimeError), ann.transaction() as inner:
            assert inner is outer
            inner.execute("INSERT INTO notes (body) VALUES ('rolled back')")
            raise RuntimeError("undo the savepoint")
    assert db.fetch_all("SELECT body FROM notes") == [{"body": "kept"}]


def test_a_session_calls_borrow_their_own_connection_inside_an_application_block(db):
    users = db.add_hook(_Users())
    db.execute("INSERT INTO notes (body) VALUES ('committed')")
    ann = db.for_user("ann")
    with db.transaction() as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('pending')")
        # ann reads on a connection of her own: she sees what is committed, as ann.
        assert ann.fetch_all("SELECT body FROM notes") == [{"body": "committed"}]
        assert conn._context is None
    assert users.seen[-3:] == [(None, "execute"), ("ann", "fetch_all"), (None, "commit")]


def test_the_session_reaches_no_manager_and_no_backend(db):
    ann = db.for_user("ann")
    assert not hasattr(ann, "manager")
    info = ann.backend(DatabaseType.SQLITE)
    assert isinstance(info, BackendInfo)
    assert (info.kind, info.dialect) == ("sql", "sqlite")
    assert not hasattr(info, "connect")
    assert not hasattr(info, "url")


def test_redis_listeners_of_user_sessions_are_checked(db):
    # A Redis listener subscribes through the pool's hooks: a user session's needs a
    # grant on its channels (issue 19: checked and audited, no longer a way around).
    db.create_pool(DatabaseType.REDIS, "redis+mock://")
    ann = db.for_user("ann")
    with pytest.raises(PermissionDenied, match="may not select on 'news'"):
        RedisChannelListener(ann, ["news"]).start()
    with pytest.raises(PermissionDenied, match="may not select on 'news'"):
        StreamProcessor(ann).redis_pubsub("news")


def test_the_async_session_follows_the_same_rules(tmp_path):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'aiso.db'}")
        try:
            await adb.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            adb.use_access_control(_acl())
            ann, bob = adb.for_user("ann"), adb.for_user("bob")
            async with adb.transaction():
                with pytest.raises(PermissionDenied, match="one user for its whole lease"):
                    async with ann.transaction():
                        pass
            async with ann.transaction() as conn:
                with pytest.raises(PermissionDenied, match="inside one of user 'ann'"):
                    async with bob.transaction():
                        pass
                await conn.execute("INSERT INTO notes (body) VALUES ('ann')")
            assert not hasattr(ann, "manager")
            assert isinstance(ann.backend(DatabaseType.SQLITE), BackendInfo)
            assert await adb.fetch_all("SELECT body FROM notes") == [{"body": "ann"}]
        finally:
            await adb.close_all()

    asyncio.run(main())


def test_the_application_cannot_join_a_users_open_block(db):
    users = db.add_hook(_Users())
    ann = db.for_user("ann")
    with ann.transaction() as conn:
        # The manager does not see ann's block as its own (the ORM with db would not
        # write into it as ann), and a block of its own there is refused.
        assert db.bound_connection() is None
        assert ann.bound_connection() is conn
        with pytest.raises(PermissionDenied, match="the application cannot open"):
            with db.transaction():
                pass
        conn.execute("INSERT INTO notes (body) VALUES ('ann')")
    # The whole block ran as ann, from its BEGIN to its COMMIT; the application's refused
    # BEGIN was reported as the application's (the audit log records who tried).
    seen = [u for u, op in users.seen if op in ("begin", "execute", "commit")]
    assert seen == ["ann", None, "ann", "ann"]


def test_run_sync_for_a_user_session_gets_no_backend(tmp_path):
    async def main() -> tuple[object, bool, bool, object]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'b.db'}")
        await adb.create_pool(DatabaseType.REDIS, "redis+mock://")
        try:
            adb.use_access_control(_acl())
            ann = adb.for_user("ann")
            info = await ann.run_sync(lambda b: b.backend(DatabaseType.SQLITE))
            as_user = await ann.run_sync(lambda b: b.user_session)
            as_app = await adb.run_sync(lambda b: b.user_session)
            with pytest.raises(PermissionDenied, match="outside the checks"):
                await ann.run_sync(lambda b: RedisChannelListener(b, ["news"]))
            from dbsystem.errors import NotSupportedError

            with pytest.raises(NotSupportedError, match="await adb.query"):
                await adb.run_sync(lambda b: b.query(DatabaseType.REDIS))
            name = await adb.run_sync(lambda b: b.backend(DatabaseType.SQLITE).name)
            return info, as_user, as_app, name
        finally:
            await adb.close_all()

    info, as_user, as_app, app_backend = asyncio.run(main())
    assert isinstance(info, BackendInfo)
    assert (as_user, as_app) == (True, False)
    assert app_backend == "sqlite"


def test_a_sessions_connection_hands_out_no_driver_object(db):
    db.create_pool(DatabaseType.REDIS, "redis+mock://")
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://localhost/app")
    ann = db.for_user("ann")
    with ann.connection(DatabaseType.SQLITE) as conn:
        for attribute in ("raw", "driver_connection"):
            with pytest.raises(PermissionDenied, match="skip"):
                getattr(conn, attribute)
        assert conn.fetch_all("SELECT body FROM notes") == []  # the checked calls still work
    with ann.connection(DatabaseType.REDIS) as redis:
        with pytest.raises(PermissionDenied, match="skip the checks"):
            _ = redis.client
        # optimistic() runs every command of its pipeline through the checks (WATCH too)
        with pytest.raises(PermissionDenied, match="may not select on 'k'"):
            redis.optimistic(lambda pipe: pipe.get("k"), "k")
    with ann.connection(DatabaseType.MONGODB) as mongo, pytest.raises(PermissionDenied):
        _ = mongo.database
    # The application's own connections keep them.
    with db.connection(DatabaseType.SQLITE) as conn:
        assert conn.driver_connection is not None
    with db.connection(DatabaseType.REDIS) as redis:
        assert redis.client.ping() is True
    with db.connection(DatabaseType.MONGODB) as mongo:
        assert mongo.database.name == "app"


def test_an_async_sessions_connection_hands_out_no_driver_object(tmp_path):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'd.db'}")
        await adb.create_pool(DatabaseType.REDIS, "redis+mock://")
        try:
            adb.use_access_control(_acl())
            ann = adb.for_user("ann")
            async with ann.connection(DatabaseType.SQLITE) as conn:
                with pytest.raises(PermissionDenied):
                    _ = conn.driver_connection
            async with ann.connection(DatabaseType.REDIS) as redis:
                with pytest.raises(PermissionDenied):
                    _ = redis.client
            async with adb.connection(DatabaseType.REDIS) as redis:
                assert await redis.client.ping() is True
        finally:
            await adb.close_all()

    asyncio.run(main())
