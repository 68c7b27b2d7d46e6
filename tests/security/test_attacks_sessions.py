"""Attacks on sessions and limits (issue 19): a user session tries to leave state behind for
the next borrower, to take a whole pool, to hide a mixed-user refusal from the audit, to
mark its own statements as policed, and to reach the MongoDB driver database through the
ORM. Each case asserts the refusal, or that what was left behind is gone.

Real servers (PostgreSQL, MariaDB, Redis; SQLite; MongoDB on mongomock), sync and async;
table-driven. The user is granted everything on every table, so that what stops a leak is
the pool's reset, not the access check (a statement the check refuses counts as refused).
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import pytest

from dbsystem import (
    AsyncDatabaseManager,
    DatabaseManager,
    DatabaseType,
    LeaseLimitReached,
    PermissionDenied,
    PoolConfig,
)
from dbsystem.errors import ConfigurationError, DBSystemError
from dbsystem.orm import Entity, Field
from dbsystem.orm.migrations import MigrationRunner
from dbsystem.query import col
from dbsystem.security import AccessControl, AuditLog, MemoryAuditSink, Permission, Role
from tests.integration.test_pool_reset import (
    MYSQL_LEAKS,
    PG_LEAKS,
    REDIS_LEAKS,
    SQLITE_LEAKS,
    Leak,
    RedisLeak,
    _client_info,
    pg_role,  # noqa: F401 - the fixture, for the PostgreSQL cases
)

PG, MY, LITE, REDIS, MONGO = (
    DatabaseType.POSTGRES,
    DatabaseType.MYSQL,
    DatabaseType.SQLITE,
    DatabaseType.REDIS,
    DatabaseType.MONGODB,
)


def _acl(*, cap: int | None = None) -> AccessControl:
    acl = AccessControl()
    acl.create_role(Role("everything", grants={"*": Permission.ALL}))
    acl.create_role(Role("capped", grants={"*": Permission.SELECT}, max_connections=cap))
    acl.assign_role("mallory", "everything")
    if cap is not None:
        acl.assign_role("mallory", "capped")
    acl.assign_role("bob", "everything")
    return acl


def _url(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'attack.db'}"
    return str(request.getfixturevalue(f"{kind}_url"))


_TYPES = {"postgres": PG, "mysql": MY, "sqlite": LITE}
_LEAKS = [
    *(pytest.param("postgres", leak, id=f"postgres-{leak.name}") for leak in PG_LEAKS),
    *(pytest.param("mysql", leak, id=f"mysql-{leak.name}") for leak in MYSQL_LEAKS),
    *(pytest.param("sqlite", leak, id=f"sqlite-{leak.name}") for leak in SQLITE_LEAKS),
]


@pytest.fixture
def leak_role(request, kind):
    """PostgreSQL's cases switch to a role of their own (made, and dropped, once)."""
    if kind == "postgres":
        request.getfixturevalue("pg_role")


def _probe(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except DBSystemError as exc:
        return f"error: {type(exc).__name__}"


def _attempt(run: Callable[[], Any]) -> None:
    """Run the user's attempt: refused (PermissionDenied) is as good as reset."""
    try:
        run()
    except PermissionDenied:
        pass


# -- 1. a user session leaves no session state for the next borrower -----------------------


@pytest.mark.parametrize(("kind", "leak"), _LEAKS)
def test_a_users_session_state_does_not_reach_the_application(
    kind, leak: Leak, request, tmp_path, leak_role
):
    db_type = _TYPES[kind]
    db = DatabaseManager()
    db.create_pool(db_type, PoolConfig(url=_url(kind, request, tmp_path), min_size=1, max_size=1))
    db.use_access_control(_acl())
    try:
        fresh = _probe(lambda: db.fetch_value(leak.probe, db_type=db_type))
        mallory = db.for_user("mallory")

        def attack() -> None:
            with mallory.connection(db_type) as conn:
                for sql in leak.change:
                    conn.execute(sql)
                if leak.driver is not None:
                    leak.driver(conn.driver_connection)  # refused to a session

        _attempt(attack)
        assert _probe(lambda: db.fetch_value(leak.probe, db_type=db_type)) == fresh
    finally:
        db.close_all()


@pytest.mark.parametrize(("kind", "leak"), _LEAKS)
def test_an_async_users_session_state_does_not_reach_the_application(
    kind, leak: Leak, request, tmp_path, leak_role
):
    db_type = _TYPES[kind]
    url = _url(kind, request, tmp_path)

    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(db_type, PoolConfig(url=url, min_size=1, max_size=1))
        adb.use_access_control(_acl())

        async def probe() -> Any:
            try:
                return await adb.fetch_value(leak.probe, db_type=db_type)
            except DBSystemError as exc:
                return f"error: {type(exc).__name__}"

        try:
            fresh = await probe()
            mallory = adb.for_user("mallory")
            try:
                async with mallory.connection(db_type) as conn:
                    for sql in leak.change:
                        await conn.execute(sql)
                    if leak.driver is not None:
                        leak.driver(conn.driver_connection)
            except PermissionDenied:
                pass
            assert await probe() == fresh
        finally:
            await adb.close_all()

    asyncio.run(main())


def _redis_pool(url: str) -> PoolConfig:
    return PoolConfig(url=f"{url}?client_name=attack_pool", min_size=1, max_size=1)


@pytest.mark.parametrize("leak", REDIS_LEAKS, ids=lambda leak: leak.name)
def test_a_users_redis_connection_state_does_not_reach_the_application(redis_url, leak):
    db = DatabaseManager()
    db.create_pool(REDIS, _redis_pool(redis_url))
    db.use_access_control(_acl())
    try:
        with db.connection(REDIS) as redis:
            fresh = _client_info(redis.execute("CLIENT", "INFO"))

        def attack() -> None:
            with db.for_user("mallory").connection(REDIS) as conn:
                for command in leak.change:
                    conn.execute(*command)

        _attempt(attack)
        with db.connection(REDIS) as redis:
            after = _client_info(redis.execute("CLIENT", "INFO"))
        assert (after[leak.field], after["db"], after["name"]) == (
            fresh[leak.field],
            fresh["db"],
            "attack_pool",
        )
    finally:
        db.close_all()


@pytest.mark.parametrize("leak", REDIS_LEAKS, ids=lambda leak: leak.name)
def test_an_async_users_redis_connection_state_does_not_reach_the_application(
    redis_url, leak: RedisLeak
):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(REDIS, _redis_pool(redis_url))
        adb.use_access_control(_acl())
        try:
            async with adb.connection(REDIS) as redis:
                fresh = _client_info(await redis.execute("CLIENT", "INFO"))
            try:
                async with adb.for_user("mallory").connection(REDIS) as conn:
                    for command in leak.change:
                        await conn.execute(*command)
            except PermissionDenied:
                pass
            async with adb.connection(REDIS) as redis:
                after = _client_info(await redis.execute("CLIENT", "INFO"))
            assert (after[leak.field], after["db"]) == (fresh[leak.field], fresh["db"])
        finally:
            await adb.close_all()

    asyncio.run(main())


# -- 2. a user cannot take the whole pool ----------------------------------------------------

_CAPS = [
    pytest.param(kind, how, id=f"{kind}-{how}")
    for kind in ("sqlite", "postgres", "mysql")
    for how in ("role", "session")
]


def _capped_session(db: Any, how: str) -> Any:
    if how == "role":
        return db.for_user("mallory")
    return db.for_user("mallory", max_connections=2)


@pytest.mark.parametrize(("kind", "how"), _CAPS)
def test_a_capped_user_waits_for_its_own_leases_and_others_are_served(kind, how, request, tmp_path):
    db_type = _TYPES[kind]
    db = DatabaseManager()
    config = PoolConfig(url=_url(kind, request, tmp_path), min_size=1, max_size=4)
    db.create_pool(db_type, config)
    db.use_access_control(_acl(cap=2 if how == "role" else None))
    mallory = _capped_session(db, how)
    try:
        first = mallory.connection(db_type)
        second = mallory.connection(db_type)
        with pytest.raises(LeaseLimitReached, match=r"user 'mallory'.*max_connections=2"):
            mallory.connection(db_type, timeout=0.2)
        # Another user and the application still get connections of the same pool.
        with db.for_user("bob").connection(db_type) as bobs, db.connection(db_type) as apps:
            assert bobs.fetch_value("SELECT 1") == 1
            assert apps.fetch_value("SELECT 1") == 1
        # The waiting user gets the lease it gives back, and no more than its cap.
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(mallory.connection(db_type)))
        waiter.start()
        first.release()
        waiter.join(5)
        assert len(got) == 1
        with pytest.raises(LeaseLimitReached):
            mallory.connection(db_type, timeout=0.05)
        got[0].release()
        second.release()
        assert db.get_pool(db_type).stats().active == 0
    finally:
        db.close_all()


@pytest.mark.parametrize(("kind", "how"), _CAPS)
def test_an_async_capped_user_waits_for_its_own_leases_and_others_are_served(
    kind, how, request, tmp_path
):
    db_type = _TYPES[kind]
    url = _url(kind, request, tmp_path)

    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(db_type, PoolConfig(url=url, min_size=1, max_size=4))
        adb.use_access_control(_acl(cap=2 if how == "role" else None))
        mallory = _capped_session(adb, how)
        try:
            first = await mallory.connection(db_type)
            second = await mallory.connection(db_type)
            with pytest.raises(LeaseLimitReached, match=r"user 'mallory'.*max_connections=2"):
                await mallory.connection(db_type, timeout=0.2)
            async with adb.for_user("bob").connection(db_type) as bobs:
                assert await bobs.fetch_value("SELECT 1") == 1
            async with adb.connection(db_type) as apps:
                assert await apps.fetch_value("SELECT 1") == 1
            waiting = asyncio.ensure_future(mallory.connection(db_type))
            await asyncio.sleep(0.05)
            assert not waiting.done()  # waits for one of its own
            await first.release()
            third = await asyncio.wait_for(waiting, 5)
            await third.release()
            await second.release()
            assert adb.pools()[(db_type, None)].stats().active == 0
        finally:
            await adb.close_all()

    asyncio.run(main())


def test_a_users_cap_is_the_smallest_of_its_roles_and_its_session(tmp_path):
    db = DatabaseManager()
    db.create_pool(LITE, PoolConfig(url=f"sqlite:///{tmp_path / 'c.db'}", max_size=5))
    acl = _acl(cap=3)
    db.use_access_control(acl)
    try:
        narrow = db.for_user("mallory", max_connections=1)  # below its role's 3
        held = [narrow.connection(LITE)]
        with pytest.raises(LeaseLimitReached, match="max_connections=1"):
            narrow.connection(LITE, timeout=0.05)
        held[0].release()
        wide = db.for_user("mallory", max_connections=4)  # above its role's 3
        held = [wide.connection(LITE) for _ in range(3)]
        with pytest.raises(LeaseLimitReached, match="max_connections=3"):
            wide.connection(LITE, timeout=0.05)
        for lease in held:
            lease.release()
    finally:
        db.close_all()


def test_a_lease_dropped_unreturned_gives_its_users_slot_back(tmp_path):
    db = DatabaseManager()
    db.create_pool(LITE, PoolConfig(url=f"sqlite:///{tmp_path / 'gc.db'}", max_size=3))
    db.use_access_control(_acl())
    try:
        mallory = db.for_user("mallory", max_connections=1)
        mallory.connection(LITE)  # dropped at once, never returned
        gc.collect()
        db.get_pool(LITE)._maintain()  # what the maintenance thread does
        with mallory.connection(LITE, timeout=1.0) as conn:
            assert conn.fetch_value("SELECT 1") == 1
    finally:
        db.close_all()


@pytest.mark.parametrize("bad", [0, -1, "2", 1.5])
def test_a_cap_must_be_a_positive_int(bad):
    with pytest.raises(ConfigurationError, match="max_connections"):
        Role("r", max_connections=bad)
    with pytest.raises(ConfigurationError, match="max_connections"):
        DatabaseManager().for_user("ann", max_connections=bad)


# -- 3. a mixed-user refusal is audited ------------------------------------------------------

_MIXES = [
    pytest.param("application", "mallory", id="user-inside-application"),
    pytest.param("mallory", "application", id="application-inside-user"),
    pytest.param("bob", "mallory", id="user-inside-other-user"),
]


def _who(db: Any, name: str) -> Any:
    return db if name == "application" else db.for_user(name)


@pytest.mark.parametrize(("outer", "inner"), _MIXES)
def test_a_mixed_user_refusal_is_audited(outer, inner, tmp_path):
    db = DatabaseManager()
    db.create_pool(LITE, f"sqlite:///{tmp_path / 'mix.db'}")
    db.use_access_control(_acl())
    memory = MemoryAuditSink()
    db.add_hook(AuditLog([memory], all_statements=True))
    try:
        with _who(db, outer).transaction():
            with pytest.raises(PermissionDenied, match="one user for its whole lease"):
                with _who(db, inner).transaction():
                    pass
        refused = [(e.user, e.action) for e in memory.events if e.outcome == "denied"]
        assert refused == [(None if inner == "application" else inner, "transaction")]
    finally:
        db.close_all()


@pytest.mark.parametrize(("outer", "inner"), _MIXES)
def test_an_async_mixed_user_refusal_is_audited(outer, inner, tmp_path):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(LITE, f"sqlite:///{tmp_path / 'mix.db'}")
        adb.use_access_control(_acl())
        memory = MemoryAuditSink()
        adb.add_hook(AuditLog([memory], all_statements=True))
        try:
            async with _who(adb, outer).transaction():
                with pytest.raises(PermissionDenied, match="one user for its whole lease"):
                    async with _who(adb, inner).transaction():
                        pass
            refused = [(e.user, e.action) for e in memory.events if e.outcome == "denied"]
            assert refused == [(None if inner == "application" else inner, "transaction")]
        finally:
            await adb.close_all()

    asyncio.run(main())


# -- 4. a session cannot mark its own statements as policed ----------------------------------

_POLICED_NAMES = [
    ("dbsystem.kernel.hooks", "policed"),
    ("dbsystem.kernel.hooks", "is_policed"),
    ("dbsystem.security.policies", "policed"),
    ("dbsystem.security.policies", "is_policed"),
    ("dbsystem.extend", "policed"),
    ("dbsystem.security", "policed"),
    ("dbsystem", "policed"),
]


@pytest.mark.parametrize(("module", "name"), _POLICED_NAMES)
def test_no_public_name_marks_statements_as_policed(module, name):
    imported = __import__(module, fromlist=[name])
    assert not hasattr(imported, name)
    assert name not in getattr(imported, "__all__", ())


def _tenant_db(tmp_path: Any) -> DatabaseManager:
    db = DatabaseManager()
    db.create_pool(LITE, f"sqlite:///{tmp_path / 'tenants.db'}")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, tenant INTEGER, total INTEGER)")
    db.execute("INSERT INTO orders (tenant, total) VALUES (1, 10), (2, 20)")
    acl = AccessControl()
    acl.create_role(
        Role(
            "tenant",
            grants={"orders": "SELECT"},
            policies={"orders": lambda ctx: col("tenant") == ctx.attrs["tenant"]},
        )
    )
    acl.assign_role("mallory", "tenant")
    db.use_access_control(acl)
    return db


_RAW_READS = [
    "SELECT * FROM orders",
    "SELECT total FROM orders WHERE tenant = 2",
    'SELECT "orders".total FROM "orders"',
]


@pytest.mark.parametrize("sql", _RAW_READS)
def test_the_private_mark_does_not_cover_a_raw_statement(sql, tmp_path):
    from dbsystem.kernel.hooks import _policed_for

    db = _tenant_db(tmp_path)
    try:
        mallory = db.for_user("mallory", attrs={"tenant": 1})
        with pytest.raises(PermissionDenied, match="row policy"):
            with _policed_for(sql):
                mallory.fetch_all(sql)
        with pytest.raises(PermissionDenied, match="row policy"):
            with _policed_for(None):
                mallory.fetch_all(sql)
        # The builder still applies the policy: only the session's own tenant.
        rows = mallory.query().select().from_("orders").all()
        assert [row["tenant"] for row in rows] == [1]
    finally:
        db.close_all()


@pytest.mark.parametrize("sql", _RAW_READS)
def test_the_private_mark_does_not_cover_an_async_raw_statement(sql, tmp_path):
    from dbsystem.kernel.hooks import _policed_for

    path = tmp_path / "tenants.db"
    _tenant_db(tmp_path).close_all()

    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(LITE, f"sqlite:///{path}")
        acl = AccessControl()
        acl.create_role(
            Role(
                "tenant",
                grants={"orders": "SELECT"},
                policies={"orders": lambda ctx: col("tenant") == ctx.attrs["tenant"]},
            )
        )
        acl.assign_role("mallory", "tenant")
        adb.use_access_control(acl)
        try:
            mallory = adb.for_user("mallory", attrs={"tenant": 1})
            with pytest.raises(PermissionDenied, match="row policy"):
                with _policed_for(sql):
                    await mallory.fetch_all(sql)
        finally:
            await adb.close_all()

    asyncio.run(main())


# -- 5. the ORM's MongoDB schema steps do not hand a session the driver database -------------


class Ledger(Entity):
    id: int = Field(primary_key=True)
    account: str = Field(index=True)


def _mongo_acl() -> AccessControl:
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"ledger": Permission.SELECT | Permission.INSERT}))
    acl.assign_role("mallory", "reader")
    return acl


_ORM_STEPS: list[tuple[str, Callable[[Any], Any]]] = [
    ("create_tables", lambda s: s.create_tables([Ledger])),
    ("drop_tables", lambda s: s.drop_tables([Ledger])),
    ("migrations_applied", lambda s: MigrationRunner(s, tempfile.mkdtemp()).applied()),
]


@pytest.mark.parametrize(("name", "step"), _ORM_STEPS, ids=[n for n, _ in _ORM_STEPS])
def test_a_sessions_orm_mongodb_schema_step_is_refused_and_audited(name, step):
    db = DatabaseManager()
    db.create_pool(MONGO, f"mongodb+mock://localhost/attack_{name}")
    db.use_access_control(_mongo_acl())
    memory = MemoryAuditSink()
    db.add_hook(AuditLog([memory]))
    try:
        with pytest.raises(PermissionDenied):
            step(db.for_user("mallory"))
        assert [e.outcome for e in memory.events if e.user == "mallory"] == ["denied"]
        step(db)  # the application's own work
    finally:
        db.close_all()


@pytest.mark.parametrize(("name", "step"), _ORM_STEPS, ids=[n for n, _ in _ORM_STEPS])
def test_an_async_sessions_orm_mongodb_schema_step_is_refused(name, step):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(MONGO, f"mongodb+mock://localhost/attack_async_{name}")
        adb.use_access_control(_mongo_acl())
        try:
            with pytest.raises(PermissionDenied):
                await adb.for_user("mallory").run_sync(step)
            await adb.run_sync(step)  # the application's own work
        finally:
            await adb.close_all()

    asyncio.run(main())
