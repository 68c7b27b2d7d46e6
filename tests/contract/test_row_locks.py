"""Row locks from the builder (``for_update``, ``for_share``) on the real servers: a second
connection's locking read waits, skips the locked rows, or fails at once; sync and async,
the ORM, SQLite's refusal, and access control counting a locking read as an UPDATE."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from dbsystem import (
    AsyncDatabaseManager,
    DatabaseError,
    DatabaseManager,
    DatabaseType,
    NotSupportedError,
    PermissionDenied,
    PoolConfig,
    QueryBuildError,
)
from dbsystem.orm import Entity, Field
from dbsystem.query import select
from dbsystem.security import AccessControl, Permission, Role
from tests.backend_params import SQL_TYPES

SERVERS = [
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=SERVERS)
def db(request):
    kind = request.param
    manager = DatabaseManager()
    url = request.getfixturevalue(f"{kind}_url")
    manager.create_pool(SQL_TYPES[kind], PoolConfig(url=url, max_size=4))
    manager.kind = kind  # type: ignore[attr-defined]
    table = f"locks_{uuid.uuid4().hex[:8]}"
    manager.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, state VARCHAR(10))")
    manager.execute(f"INSERT INTO {table} VALUES (1, 'new'), (2, 'new'), (3, 'new')")
    manager.table = table  # type: ignore[attr-defined]
    yield manager
    manager.execute(f"DROP TABLE IF EXISTS {table}")
    manager.close_all()


def _ids(rows) -> list[int]:
    return sorted(row["id"] for row in rows)


def test_a_second_locking_read_waits_for_the_first_transaction(db):
    t = db.table
    done: list[float] = []

    def second() -> None:
        with db.connection() as other, other.transaction():
            db.query().select("id").from_(t).where("id", "=", 1).for_update().all(other)
            done.append(time.monotonic())

    with db.connection() as first, first.transaction():
        locked = db.query().select("id").from_(t).where("id", "=", 1).for_update().all(first)
        assert _ids(locked) == [1]
        worker = threading.Thread(target=second)
        worker.start()
        time.sleep(0.7)
        assert done == []  # still waiting for the first transaction's lock
        released = time.monotonic()
    worker.join(10)
    assert len(done) == 1
    assert done[0] >= released


def test_skip_locked_leaves_out_the_rows_another_transaction_holds(db):
    t = db.table
    with db.connection() as first, first.transaction():
        db.query().select("id").from_(t).where("id", "=", 1).for_update().all(first)
        with db.connection() as other, other.transaction():
            rows = db.query().select("id").from_(t).for_update(skip_locked=True).all(other)
    assert _ids(rows) == [2, 3]


def test_nowait_fails_at_once_on_a_locked_row(db):
    t = db.table
    with db.connection() as first, first.transaction():
        db.query().select("id").from_(t).where("id", "=", 2).for_update().all(first)
        with db.connection() as other:
            started = time.monotonic()
            with pytest.raises(DatabaseError), other.transaction():
                db.query().select("id").from_(t).where("id", "=", 2).for_update(nowait=True).all(
                    other
                )
            assert time.monotonic() - started < 2


def test_shared_locks_coexist_and_block_an_update_lock(db):
    t = db.table
    with db.connection() as first, first.transaction():
        shared = db.query().select("id").from_(t).where("id", "=", 3).for_share().all(first)
        assert _ids(shared) == [3]
        with db.connection() as other:
            with other.transaction():
                again = db.query().select("id").from_(t).where("id", "=", 3).for_share(nowait=True)
                assert _ids(again.all(other)) == [3]
            with pytest.raises(DatabaseError), other.transaction():
                db.query().select("id").from_(t).where("id", "=", 3).for_update(nowait=True).all(
                    other
                )


def test_a_job_queue_hands_each_row_to_one_worker(db):
    t = db.table
    with db.connection() as first, first.transaction():
        mine = db.query().select("id").from_(t).order_by("id").limit(1).for_update(skip_locked=True)
        taken_first = mine.all(first)
        with db.connection() as other, other.transaction():
            taken_second = mine.all(other)
    assert _ids(taken_first) == [1]
    assert _ids(taken_second) == [2]


class Job(Entity, table="locks_jobs"):
    id: int = Field(primary_key=True)
    state: str = Field(default="new", max_length=10)


def test_the_orm_query_locks_its_rows(request, db):
    db.drop_tables([Job])
    db.create_tables([Job])
    other = DatabaseManager()  # a second client: its own transaction on its own connection
    other.create_pool(SQL_TYPES[db.kind], request.getfixturevalue(f"{db.kind}_url"))
    try:
        for key in (1, 2):
            Job(id=key).save(db)
        with db.transaction():
            held = Job.query(db).where(Job.id == 1).for_update().all()
            assert [job.id for job in held] == [1]
            with other.transaction():
                free = Job.query(other).for_update(skip_locked=True).all()
            assert [job.id for job in free] == [2]
    finally:
        other.close_all()
        db.drop_tables([Job])


def test_async_skip_locked_and_nowait(request, db):
    t, kind = db.table, db.kind

    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(
            SQL_TYPES[kind], PoolConfig(url=request.getfixturevalue(f"{kind}_url"))
        )
        try:
            async with adb.connection() as first, first.transaction():
                held = (
                    await adb.query()
                    .select("id")
                    .from_(t)
                    .where("id", "=", 1)
                    .for_update()
                    .all(first)
                )
                assert _ids(held) == [1]
                async with adb.connection() as other:
                    async with other.transaction():
                        rows = (
                            await adb.query()
                            .select("id")
                            .from_(t)
                            .for_update(skip_locked=True)
                            .all(other)
                        )
                    assert _ids(rows) == [2, 3]
                    with pytest.raises(DatabaseError):
                        async with other.transaction():
                            locked = adb.query().select("id").from_(t).where("id", "=", 1)
                            await locked.for_update(nowait=True).all(other)
        finally:
            await adb.close_all()

    asyncio.run(main())


# -- without a server ------------------------------------------------------------------------


def test_the_sql_each_dialect_gets():
    query = select("id").from_("jobs").where("state", "=", "new")
    assert query.for_update().build("postgresql")[0].endswith("FOR UPDATE")
    assert query.for_share().build("postgresql")[0].endswith("FOR SHARE")
    assert query.for_update(skip_locked=True).build("postgresql")[0].endswith("SKIP LOCKED")
    assert query.for_update(of="jobs").build("postgresql")[0].endswith("FOR UPDATE OF jobs")
    assert query.for_share(nowait=True).build("mysql")[0].endswith("LOCK IN SHARE MODE NOWAIT")
    assert query.for_update(nowait=True).build("mysql")[0].endswith("FOR UPDATE NOWAIT")


def test_a_locked_query_has_its_own_shape():
    query = select("id").from_("jobs")
    assert query.for_update().shape() != query.shape()
    assert query.for_update().shape() != query.for_share().shape()


def test_sqlite_refuses_row_locks(tmp_path):
    with pytest.raises(NotSupportedError, match="SQLite has no row locks"):
        select("id").from_("jobs").for_update().build("sqlite")


def test_mariadb_has_no_lock_of():
    with pytest.raises(NotSupportedError, match="no FOR UPDATE OF"):
        select("id").from_("jobs").for_update(of="jobs").build("mysql")


def test_bad_lock_options_are_refused():
    with pytest.raises(QueryBuildError, match="not both"):
        select("id").from_("jobs").for_update(skip_locked=True, nowait=True)
    with pytest.raises(QueryBuildError, match="True or False"):
        select("id").from_("jobs").for_update(nowait="yes")  # type: ignore[arg-type]
    with pytest.raises(QueryBuildError, match="invalid table"):
        select("id").from_("jobs").for_update(of="jobs; drop")


def test_a_locking_read_is_not_sent_to_a_replica():
    query = select("id").from_("jobs")
    assert query._reads is True
    assert query.for_update()._reads is False


@pytest.mark.postgres
def test_a_select_only_user_may_not_lock_rows(postgres_url):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.POSTGRES, postgres_url)
    table = f"locks_acl_{uuid.uuid4().hex[:8]}"
    manager.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    try:
        control = AccessControl()
        control.create_role(Role("firsthour_reader", grants={"*": Permission.SELECT}))
        control.assign_role("reader", "firsthour_reader")
        manager.use_access_control(control)
        session = manager.for_user("reader").query(DatabaseType.POSTGRES)
        assert session.select("id").from_(table).all() == []
        with pytest.raises(PermissionDenied, match="update"):
            session.select("id").from_(table).for_update().all()
        with pytest.raises(PermissionDenied, match="update"):
            session.select("id").from_(table).for_share().all()
    finally:
        manager.close_all()
        cleanup = DatabaseManager()
        cleanup.create_pool(DatabaseType.POSTGRES, postgres_url)
        cleanup.execute(f"DROP TABLE IF EXISTS {table}")
        cleanup.close_all()
