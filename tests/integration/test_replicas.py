"""Read replicas on a real PostgreSQL streaming replica (port 5433, made by pg_basebackup):
reads on the replica, writes and transactions on the primary, read-your-writes, fall-back
when the replica stops, and a lagging replica taken out of rotation."""

from __future__ import annotations

import os
import shutil
import time
import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, ExecutionHook, PermissionDenied, PoolConfig
from dbsystem.orm import Entity, Field
from dbsystem.query import col, func
from dbsystem.security import AccessControl, Permission, Role
from tests.conftest import skip_or_fail
from tests.server_control import (
    start_postgres_replica,
    start_postgres_replica_process,
    stop_postgres_replica,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(180)]
PG = DatabaseType.POSTGRES


@pytest.fixture(scope="module")
def replica_url(postgres_url):
    missing = None
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        missing = "a streaming replica needs root (to run the server as postgres)"
    elif shutil.which("pg_basebackup") is None:
        missing = "pg_basebackup is missing"
    if missing:
        skip_or_fail(missing)
    url = start_postgres_replica()
    yield url
    stop_postgres_replica()


def _port(db, **kwargs) -> int:
    return int(db.fetch_value("SELECT inet_server_port()", **kwargs))


@pytest.fixture
def db(postgres_url, replica_url):
    manager = DatabaseManager()
    manager.create_pool(PG, PoolConfig(url=postgres_url, replicas=[replica_url], max_size=4))
    table = f"rep_{uuid.uuid4().hex[:8]}"
    manager.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT)")
    manager.t = table  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10  # the table reaches the replica
    while time.monotonic() < deadline:
        with manager.connection(PG, name="__replica1") as conn:
            if conn.fetch_value("SELECT to_regclass(:t) IS NOT NULL", {"t": table}):
                break
        time.sleep(0.05)
    yield manager
    manager.execute(f"DROP TABLE {table}")
    manager.close_all()


def test_reads_go_to_the_replica_and_writes_to_the_primary(db):
    assert _port(db) == 5433  # a read
    assert db.execute(f"INSERT INTO {db.t} VALUES (1, 'a')") == 1  # a write: primary
    rows = db.fetch_all(f"INSERT INTO {db.t} VALUES (2, 'b') RETURNING id")
    assert rows == [{"id": 2}]  # a write through fetch_all still goes to the primary
    q = db.query(PG)
    assert q.select(col("id")).from_(db.t).where(col("id") == 99).all() == []
    with db.connection(PG) as conn:  # a connection you borrow is the primary's
        assert conn.fetch_value("SELECT inet_server_port()") == 5432
    with db.transaction(PG):  # inside a transaction, reads stay on the primary
        assert _port(db) == 5432
    deadline = time.monotonic() + 5  # replication is asynchronous: the rows arrive
    while db.fetch_value(f"SELECT COUNT(*) FROM {db.t}") != 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_read_your_writes_pins_reads_to_the_primary_for_a_while(db):
    db.read_your_writes(0.5)
    assert _port(db) == 5433
    db.execute(f"INSERT INTO {db.t} VALUES (3, 'c')")
    assert _port(db) == 5432  # just wrote: the primary
    assert db.fetch_value(f"SELECT note FROM {db.t} WHERE id = 3") == "c"
    time.sleep(0.6)
    assert _port(db) == 5433


def test_a_stopped_replica_is_left_out_and_comes_back(db):
    assert _port(db) == 5433
    stop_postgres_replica()
    try:
        ports = [_port(db) for _ in range(5)]
        assert ports == [5432] * 5  # no caller error: the primary answers
    finally:
        start_postgres_replica_process()
    deadline = time.monotonic() + 10
    while _port(db) != 5433:
        assert time.monotonic() < deadline, "the replica did not come back into rotation"
        time.sleep(0.2)


def test_a_lagging_replica_gets_no_reads(postgres_url, replica_url):
    db = DatabaseManager()
    db.create_pool(
        PG, PoolConfig(url=postgres_url, replicas=[replica_url], max_replica_lag=0.3, max_size=2)
    )
    table = f"lag_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (id INTEGER)")
    with db.connection(PG, name="__replica1") as replica:
        replica.fetch_value("SELECT pg_wal_replay_pause()")
        try:
            time.sleep(0.1)
            db.execute(f"INSERT INTO {table} VALUES (1)")  # the replica falls behind
            time.sleep(1.2)
            assert _port(db) == 5432  # too far behind: the primary answers
        finally:
            replica.fetch_value("SELECT pg_wal_replay_resume()")
    deadline = time.monotonic() + 10
    while _port(db) != 5433:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.2)
    db.execute(f"DROP TABLE {table}")
    db.close_all()


class _Pools(ExecutionHook):
    """Records which pool ran each statement."""

    def __init__(self) -> None:
        self.pools: list[str] = []

    def after_execute(self, statement) -> None:
        self.pools.append(statement.pool)


def test_orm_reads_go_to_the_replica_and_its_writes_to_the_primary(db):
    class Note(Entity, table=db.t):
        id: int = Field(primary_key=True)
        note: str = ""

    pools = db.add_hook(_Pools())
    Note(id=7, note="seven").save(db)
    assert pools.pools == ["postgres"]  # the primary pool
    deadline = time.monotonic() + 5
    while not Note.query(db).where(Note.id == 7).all():  # replication is asynchronous
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert set(pools.pools[1:]) == {"__replica1"}
    assert Note.query(db).count() == 1 and pools.pools[-1] == "__replica1"


def test_user_sessions_read_on_the_replica_and_are_still_checked(db):
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"*": Permission.SELECT}, functions={"inet_server_port"}))
    acl.assign_role("analyst", "reader")
    db.use_access_control(acl)
    analyst = db.for_user("analyst")
    assert int(analyst.fetch_value("SELECT inet_server_port()")) == 5433
    assert analyst.query(PG).select(col("id")).from_(db.t).all() == []
    with pytest.raises(PermissionDenied):  # a write: checked, and refused
        analyst.execute(f"INSERT INTO {db.t} VALUES (5, 'x')")
    with pytest.raises(PermissionDenied):  # a read by a user without a grant, on the replica
        db.for_user("nobody").fetch_all(f"SELECT * FROM {db.t}")
    assert db.fetch_value(f"SELECT COUNT(*) FROM {db.t}") == 0


def test_the_async_manager_reads_from_the_replica_and_falls_back(postgres_url, replica_url):
    import asyncio

    from dbsystem import AsyncDatabaseManager

    async def port(adb) -> int:
        return int(await adb.fetch_value("SELECT inet_server_port()"))

    async def main() -> None:
        adb = AsyncDatabaseManager()
        config = PoolConfig(url=postgres_url, replicas=[replica_url], max_replica_lag=5.0)
        await adb.create_pool(PG, config)
        try:
            assert await port(adb) == 5433  # a read, on the streaming replica
            q = adb.query(PG).select(func.inet_server_port().as_("port"))
            assert await q.scalar_value() == 5433  # a select builder, on the replica too
            async with adb.transaction(PG) as conn:
                assert await conn.fetch_value("SELECT inet_server_port()") == 5432
            stop_postgres_replica()
            try:
                assert [await port(adb) for _ in range(3)] == [5432] * 3  # no caller error
            finally:
                start_postgres_replica_process()
        finally:
            await adb.close_all()

    asyncio.run(main())
