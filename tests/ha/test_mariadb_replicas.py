"""Read replicas on a real MariaDB replica (a second ``mariadbd`` replicating from a first,
both started by the tests): reads on the replica, writes and transactions on the primary,
a replica that stops applying is left out under ``max_replica_lag``, a killed replica's
reads fall back to the primary without an error, and it comes back."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from tests.ha.cluster import MARIADB_PORTS, wait_for

pytestmark = [pytest.mark.ha, pytest.mark.slow, pytest.mark.timeout(180)]
MY = DatabaseType.MYSQL
PRIMARY, REPLICA = MARIADB_PORTS


def _port(db, **kwargs) -> int:
    return int(db.fetch_value("SELECT @@port", **kwargs))


@pytest.fixture
def db(mariadb_replication):
    manager = DatabaseManager()
    manager.create_pool(
        MY,
        PoolConfig(
            url=mariadb_replication.url(PRIMARY),
            replicas=[mariadb_replication.url(REPLICA)],
            max_replica_lag=5,
            max_size=4,
        ),
    )
    table = f"rep_{uuid.uuid4().hex[:8]}"
    manager.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT)")
    manager.t = table  # type: ignore[attr-defined]
    wait_for(
        lambda: mariadb_replication.sql(REPLICA, f"SHOW TABLES FROM ha LIKE '{table}'") == table,
        10,
        "the table on the replica",
    )
    yield manager
    manager.execute(f"DROP TABLE {table}")
    manager.close_all()


def test_reads_go_to_the_replica_and_writes_to_the_primary(db):
    assert _port(db) == REPLICA
    assert db.execute(f"INSERT INTO {db.t} VALUES (1, 'a')") == 1
    with db.connection(MY) as conn:
        assert conn.fetch_value("SELECT @@port") == PRIMARY
    with db.transaction(MY):
        assert _port(db) == PRIMARY
    wait_for(lambda: db.fetch_value(f"SELECT COUNT(*) FROM {db.t}") == 1, 10, "the row replicated")


def test_a_replica_that_stops_applying_gets_no_reads(mariadb_replication, db):
    mariadb_replication.stop_replica_sql()
    try:
        db.execute(f"INSERT INTO {db.t} VALUES (2, 'b')")
        wait_for(lambda: _port(db) == PRIMARY, 5, "reads back on the primary")
        assert db.fetch_value(f"SELECT COUNT(*) FROM {db.t}") == 1  # the primary has it
    finally:
        mariadb_replication.start_replica_sql()
    wait_for(lambda: _port(db) == REPLICA, 10, "the replica back in rotation")


def test_a_killed_replica_falls_back_to_the_primary_and_returns(mariadb_replication, db):
    mariadb_replication.kill(REPLICA)
    try:
        ports = [_port(db) for _ in range(5)]  # no error: the primary answers
        assert set(ports) == {PRIMARY}
    finally:
        mariadb_replication.restart(REPLICA)
    wait_for(lambda: _port(db) == REPLICA, 30, "the restarted replica back in rotation")
