"""Two-phase commit across PostgreSQL and MariaDB: commit, rollback at every step, and
recovery after the coordinator's process dies at each step (T-series of the test catalog)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid

import pytest

from dbsystem import (
    DatabaseManager,
    DatabaseType,
    DBSystemError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    PoolConfig,
    RecoveryReport,
    TransactionCoordinator,
)
from dbsystem.orm import Entity, Field

PG, MY = DatabaseType.POSTGRES, DatabaseType.MYSQL


@pytest.fixture
def db(postgres_url, mysql_url):
    manager = DatabaseManager()
    manager.create_pool(PG, PoolConfig(url=postgres_url, max_size=4))
    manager.create_pool(MY, PoolConfig(url=mysql_url, max_size=4))
    table = f"tpc_{uuid.uuid4().hex[:8]}"
    for db_type in (PG, MY):
        manager.execute(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note VARCHAR(40))", db_type=db_type
        )
    manager.t = table  # type: ignore[attr-defined]
    yield manager
    for db_type in (PG, MY):
        manager.execute(f"DROP TABLE {table}", db_type=db_type)
    manager.close_all()


def _ids(db, db_type) -> list[int]:
    rows = db.fetch_all(f"SELECT id FROM {db.t} ORDER BY id", db_type=db_type)
    return [r["id"] for r in rows]


def _in_doubt(db, coordinator) -> dict[str, list[str]]:
    prefix = coordinator._prefix
    pg = db.fetch_all(
        "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE :p", {"p": prefix + "%"}, db_type=PG
    )
    my = [r for r in db.fetch_all("XA RECOVER", db_type=MY) if prefix in str(r["data"])]
    return {"postgres": [r["gid"] for r in pg], "mysql": [str(r["data"]) for r in my]}


def test_both_commit_or_neither(db, tmp_path):
    coordinator = TransactionCoordinator(db, log=tmp_path / "2pc.log")
    with coordinator.transaction([PG, MY]) as tx:
        tx.connection(PG).execute(f"INSERT INTO {db.t} VALUES (1, 'pg')")
        tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES (1, 'my')")
        # Not visible outside before the commit.
        assert _ids(db, PG) == [] and _ids(db, MY) == []
    assert _ids(db, PG) == [1] and _ids(db, MY) == [1]
    assert tx.pending == []

    with pytest.raises(RuntimeError), coordinator.transaction([PG, MY]) as tx:
        tx.connection(PG).execute(f"INSERT INTO {db.t} VALUES (2, 'pg')")
        tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES (2, 'my')")
        raise RuntimeError("the application changed its mind")
    assert _ids(db, PG) == [1] and _ids(db, MY) == [1]

    with pytest.raises(IntegrityError), coordinator.transaction([PG, MY]) as tx:
        tx.connection(PG).execute(f"INSERT INTO {db.t} VALUES (3, 'pg')")
        tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES (1, 'dup')")  # fails
    assert _ids(db, PG) == [1] and _ids(db, MY) == [1]
    assert _in_doubt(db, coordinator) == {"postgres": [], "mysql": []}
    # Connections went back clean: the pools keep working.
    assert db.fetch_value("SELECT 1", db_type=PG) == 1
    assert db.fetch_value("SELECT 1", db_type=MY) == 1


@pytest.mark.parametrize("victim", [MY, PG], ids=["mysql-dies", "postgres-dies"])
def test_a_failed_prepare_rolls_back_the_prepared_participants(
    db, tmp_path, mysql_url, postgres_url, victim
):
    """T9: the victim's session dies in the block; it is prepared second, so the other
    branch is already prepared when its prepare fails, and must be rolled back."""
    order = [PG, MY] if victim is MY else [MY, PG]
    coordinator = TransactionCoordinator(db, log=tmp_path / "2pc.log")
    with pytest.raises(DBSystemError), coordinator.transaction(order) as tx:
        tx.connection(PG).execute(f"INSERT INTO {db.t} VALUES (1, 'pg')")
        tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES (1, 'my')")
        killer = DatabaseManager()
        if victim is MY:
            session = tx.connection(MY).fetch_value("SELECT CONNECTION_ID()")
            killer.create_pool(MY, mysql_url)
            killer.execute(f"KILL {int(session)}")
        else:
            session = tx.connection(PG).fetch_value("SELECT pg_backend_pid()")
            killer.create_pool(PG, postgres_url)
            killer.execute(f"SELECT pg_terminate_backend({int(session)})")
        killer.close_all()
    assert _ids(db, PG) == [] and _ids(db, MY) == []
    assert _in_doubt(db, coordinator) == {"postgres": [], "mysql": []}


class Account(Entity, table="tpc_accounts"):
    id: int = Field(primary_key=True)
    owner: str = ""


def test_the_orm_inside_a_distributed_transaction(db, tmp_path):
    db.create_tables([Account], db_type=PG)
    try:
        coordinator = TransactionCoordinator(db, log=tmp_path / "2pc.log")
        with pytest.raises(RuntimeError), coordinator.transaction([PG, MY]) as tx:
            Account(id=1, owner="ada").save(db, db_type=PG)  # joins the bound connection
            tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES (1, 'my')")
            raise RuntimeError
        assert db.fetch_all("SELECT * FROM tpc_accounts", db_type=PG) == []
        with coordinator.transaction([PG, MY]) as tx:
            Account(id=1, owner="ada").save(db, db_type=PG)
            tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES (1, 'my')")
        assert db.fetch_value("SELECT owner FROM tpc_accounts", db_type=PG) == "ada"
    finally:
        db.execute("DROP TABLE tpc_accounts", db_type=PG)


def test_participants_that_cannot_prepare(db, tmp_path, redis_url):
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/last.db")
    db.create_pool(DatabaseType.REDIS, redis_url)
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://tpc")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)", db_type=DatabaseType.SQLITE)
    coordinator = TransactionCoordinator(db, log=tmp_path / "2pc.log")
    with pytest.raises(NotSupportedError, match="last resource"):
        with coordinator.transaction([PG, DatabaseType.SQLITE, DatabaseType.REDIS]):
            pass
    with pytest.raises(NotSupportedError, match="MongoDB"):
        with coordinator.transaction([PG, DatabaseType.MONGODB]):
            pass
    with pytest.raises(InterfaceError):
        with coordinator.transaction([PG, PG]):
            pass
    # SQLite as the last resource: committed after PostgreSQL prepared.
    with coordinator.transaction([PG, DatabaseType.SQLITE]) as tx:
        tx.connection(PG).execute(f"INSERT INTO {db.t} VALUES (5, 'pg')")
        tx.connection(DatabaseType.SQLITE).execute("INSERT INTO t VALUES (5)")
    assert _ids(db, PG) == [5]
    assert db.fetch_value("SELECT id FROM t", db_type=DatabaseType.SQLITE) == 5
    # The last resource failing to commit rolls the prepared ones back.
    key = f"tpc:{uuid.uuid4().hex}"
    with pytest.raises(DBSystemError), coordinator.transaction([PG, DatabaseType.REDIS]) as tx:
        tx.connection(PG).execute(f"INSERT INTO {db.t} VALUES (6, 'pg')")
        tx.connection(DatabaseType.REDIS).execute("SET", key, "v")
        tx.connection(DatabaseType.REDIS).execute("NO_SUCH_COMMAND", key)
    assert _ids(db, PG) == [5]
    # Redis as the last resource: its queued commands run in MULTI/EXEC at the commit.
    with coordinator.transaction([PG, DatabaseType.REDIS]) as tx:
        tx.connection(PG).execute(f"INSERT INTO {db.t} VALUES (7, 'pg')")
        assert tx.connection(DatabaseType.REDIS).execute("SET", key, "v") is None
    assert _ids(db, PG) == [5, 7]
    with db.connection(DatabaseType.REDIS) as redis:
        assert redis.execute("GET", key) in (b"v", "v")
        redis.execute("DEL", key)


def test_redis_as_the_last_resource_is_all_or_nothing(db, tmp_path, redis_url):
    """A command that would fail inside EXEC (INCR of a text, a wrong type, a bad number)
    refuses the whole commit before anything changes: Redis untouched, MariaDB's XA
    branch rolled back. Redis alone would apply the other commands of the MULTI (issue 21)."""
    from dbsystem import OperationalError

    db.create_pool(DatabaseType.REDIS, redis_url)
    coordinator = TransactionCoordinator(db, log=tmp_path / "2pc.log")
    tag = uuid.uuid4().hex
    counter, text, items, table = (f"tpc:{tag}:{n}" for n in ("n", "s", "l", "h"))
    with db.connection(DatabaseType.REDIS) as redis:
        redis.execute("SET", counter, "1")
        redis.execute("SET", text, "not a number")
        redis.execute("RPUSH", items, "a")
    failing = [
        [("INCR", counter), ("INCR", text)],  # the example
        [("INCR", counter), ("HSET", items, "f", "v")],  # a list is not a hash
        [("SET", counter, "x"), ("INCRBY", counter, "2")],  # the earlier SET counts
        [("HSET", table, "f", "v"), ("HINCRBY", table, "f", "1")],
        [("INCRBY", counter, "1.5")],
        [("EXPIRE", counter, "soon")],
        [("ZADD", table, "nan", "m")],
    ]
    try:
        for note, commands in enumerate(failing, start=100):
            with pytest.raises(OperationalError, match="would fail inside EXEC"):
                with coordinator.transaction([MY, DatabaseType.REDIS]) as tx:
                    tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES ({note}, 'pg')")
                    for command in commands:
                        tx.connection(DatabaseType.REDIS).execute(*command)
            assert _ids(db, MY) == []
            with db.connection(DatabaseType.REDIS) as redis:
                assert redis.execute("GET", counter) in (b"1", "1")
                assert redis.execute("EXISTS", table) == 0
        with pytest.raises(NotSupportedError, match="check before EXEC"):
            with coordinator.transaction([MY, DatabaseType.REDIS]) as tx:
                tx.connection(DatabaseType.REDIS).execute("EVAL", "return 1", 0)
        # What can run, runs, in order: the checks follow each command's effect.
        with coordinator.transaction([MY, DatabaseType.REDIS]) as tx:
            tx.connection(MY).execute(f"INSERT INTO {db.t} VALUES (1, 'pg')")
            queue = tx.connection(DatabaseType.REDIS)
            queue.execute("INCRBY", counter, "41")
            queue.execute("DEL", text)
            queue.execute("INCR", text)
            queue.execute("HSET", table, "f", "1")
            queue.execute("HINCRBY", table, "f", "2")
            queue.execute("EXPIRE", table, "60")
        assert _ids(db, MY) == [1]
        with db.connection(DatabaseType.REDIS) as redis:
            assert redis.execute("GET", counter) in (b"42", "42")
            assert redis.execute("GET", text) in (b"1", "1")
            assert redis.execute("HGET", table, "f") in (b"3", "3")
    finally:
        with db.connection(DatabaseType.REDIS) as redis:
            redis.execute("DEL", counter, text, items, table)


CRASH_SCRIPT = """
import os, sys
from dbsystem import DatabaseManager, DatabaseType, PoolConfig, TransactionCoordinator

pg_url, my_url, table, log, step, nth = sys.argv[1:7]
db = DatabaseManager()
db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=pg_url))
db.create_pool(DatabaseType.MYSQL, PoolConfig(url=my_url))

class Dying(TransactionCoordinator):
    seen = 0
    def _step(self, name):
        if name == step:
            Dying.seen += 1
            if Dying.seen == int(nth):
                os._exit(17)  # no cleanup, no rollback: as if the machine lost power

coordinator = Dying(db, log=log)
with coordinator.transaction([DatabaseType.POSTGRES, DatabaseType.MYSQL]) as tx:
    tx.connection(DatabaseType.POSTGRES).execute(f"INSERT INTO {table} VALUES (1, 'pg')")
    tx.connection(DatabaseType.MYSQL).execute(f"INSERT INTO {table} VALUES (1, 'my')")
    if step == "body":
        os._exit(17)
sys.exit(0)
"""

# Every point a coordinator can die at: (step, which occurrence) -> committed after recovery.
CRASH_POINTS = {
    ("body", 1): False,  # in the block: both still active
    ("preparing", 1): False,  # before the first prepare
    ("preparing", 2): False,  # one prepared, the other not
    ("prepared", 1): False,  # both prepared, no decision
    ("decided", 1): True,  # the decision is logged, nothing committed
    ("committed-one", 1): True,  # one committed, the other prepared
    ("committed-all", 1): True,  # both committed, no "done" record
}


def _crash(postgres_url, mysql_url, table, log, step, nth) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASH_SCRIPT,
            postgres_url,
            mysql_url,
            table,
            str(log),
            step,
            str(nth),
        ],
        timeout=60,
    )
    assert done.returncode == 17


@pytest.mark.parametrize(("step", "nth"), list(CRASH_POINTS), ids=lambda v: str(v))
def test_recovery_after_a_crash_at_each_step(db, tmp_path, postgres_url, mysql_url, step, nth):
    log = tmp_path / "2pc.log"
    _crash(postgres_url, mysql_url, db.t, log, step, nth)
    recovered = TransactionCoordinator(db, log=log, recover=False)
    before = _in_doubt(db, recovered)
    prepared = {"preparing": nth - 1, "prepared": 2, "decided": 2, "committed-one": 1}
    assert sum(len(v) for v in before.values()) == prepared.get(step, 0)
    started = time.perf_counter()
    report = recovered.recover()
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0
    committed = CRASH_POINTS[(step, nth)]
    assert _in_doubt(db, recovered) == {"postgres": [], "mysql": []}
    expected = [1] if committed else []
    assert _ids(db, PG) == expected and _ids(db, MY) == expected
    done = report.committed if committed else report.rolled_back
    assert len(done) == prepared.get(step, 0)
    assert recovered.recover() == RecoveryReport()  # idempotent: nothing left to do
    assert log.read_text() == ""  # compacted once everything is finished


def test_recovery_at_random_points_is_all_or_nothing(db, tmp_path, postgres_url, mysql_url):
    """T10: crashes at random points (``DBSYSTEM_2PC_CRASHES``, default 20; 100 for the
    figure in docs/TRANSACTIONS.md), each followed by recovery in this process."""
    rng = random.Random(2026)
    points = list(CRASH_POINTS)
    consistent = 0
    crashes = int(os.environ.get("DBSYSTEM_2PC_CRASHES", "20"))
    for i in range(crashes):
        step, nth = rng.choice(points)
        log = tmp_path / f"2pc-{i}.log"
        _crash(postgres_url, mysql_url, db.t, log, step, nth)
        TransactionCoordinator(db, log=log)  # recovers as it starts
        pg, my = _ids(db, PG), _ids(db, MY)
        consistent += pg == my == ([1] if CRASH_POINTS[(step, nth)] else [])
        for db_type in (PG, MY):
            db.execute(f"DELETE FROM {db.t}", db_type=db_type)
    assert consistent == crashes


@pytest.mark.destructive
def test_a_prepared_transaction_survives_a_participant_restart(
    db, tmp_path, postgres_url, mysql_url
):
    """T11: the coordinator dies after its decision, PostgreSQL restarts; the gid survives
    and recovery commits it."""
    if os.environ.get("DBSYSTEM_TEST_DESTRUCTIVE") != "1":
        pytest.skip("restarts the local PostgreSQL: set DBSYSTEM_TEST_DESTRUCTIVE=1")
    from tests.server_control import restart_postgres

    log = tmp_path / "2pc.log"
    _crash(postgres_url, mysql_url, db.t, log, "decided", 1)
    restart_postgres()
    recovered = TransactionCoordinator(db, log=log, recover=False)
    for _ in range(50):  # the pool's old connections died with the server
        try:
            report = recovered.recover()
            break
        except DBSystemError:
            time.sleep(0.2)
    assert len(report.committed) == 2
    assert _ids(db, PG) == [1] and _ids(db, MY) == [1]


def test_recovery_runs_when_a_coordinator_is_made(db, tmp_path, postgres_url, mysql_url):
    log = tmp_path / "2pc.log"
    _crash(postgres_url, mysql_url, db.t, log, "decided", 1)
    TransactionCoordinator(db, log=log)  # recover=True by default
    assert _ids(db, PG) == [1] and _ids(db, MY) == [1]


def test_recovery_leaves_other_coordinators_alone(db, tmp_path, postgres_url, mysql_url):
    _crash(postgres_url, mysql_url, db.t, tmp_path / "a", "prepared", 1)
    other = TransactionCoordinator(db, log=tmp_path / "b")
    assert other.recover().rolled_back == []
    owner = TransactionCoordinator(db, log=tmp_path / "a", recover=False)
    assert len(owner.recover().rolled_back) == 2


def test_a_torn_decision_record_means_abort(tmp_path):
    from dbsystem.core.coordinator import _CoordinatorLog

    log = _CoordinatorLog(tmp_path / "2pc.log")
    log.append("g1", "commit", [], sync=True)
    with (tmp_path / "2pc.log").open("a") as fh:
        fh.write('{"gid": "g2", "state": "comm')  # the process died mid-write
    assert log.states() == {"g1": "commit"}


def test_t12_locks_held_in_doubt_time_out_clearly_and_are_listed(
    db, tmp_path, postgres_url, mysql_url
):
    """T12: a transaction left prepared holds its row locks; a conflicting write with a lock
    timeout fails fast and clearly, ``in_doubt()`` shows it, and recovery releases it."""
    from dbsystem import OperationalError

    db.execute(f"INSERT INTO {db.t} VALUES (1, 'seed')", db_type=PG)
    script = CRASH_SCRIPT.replace(
        "execute(f\"INSERT INTO {table} VALUES (1, 'pg')\")",
        "execute(f\"UPDATE {table} SET note = 'locked' WHERE id = 1\")",
    )
    log = tmp_path / "2pc.log"
    subprocess.run(
        [sys.executable, "-c", script, postgres_url, mysql_url, db.t, str(log), "prepared", "1"],
        timeout=60,
    )
    coordinator = TransactionCoordinator(db, log=log, recover=False)
    doubt = coordinator.in_doubt()
    assert sorted(d.pool for d in doubt) == ["mysql", "postgres"]
    assert not any(d.decided for d in doubt)
    pg = next(d for d in doubt if d.pool == "postgres")
    assert pg.prepared_at is not None
    started = time.monotonic()
    with pytest.raises(OperationalError, match="lock timeout"):
        with db.transaction(PG) as conn:
            conn.execute("SET LOCAL lock_timeout = '200ms'")
            conn.execute(f"UPDATE {db.t} SET note = 'mine' WHERE id = 1")
    assert time.monotonic() - started < 1.0
    coordinator.recover()
    assert coordinator.in_doubt() == []
    db.execute(f"UPDATE {db.t} SET note = 'mine' WHERE id = 1", db_type=PG)
    assert db.fetch_value(f"SELECT note FROM {db.t} WHERE id = 1", db_type=PG) == "mine"
