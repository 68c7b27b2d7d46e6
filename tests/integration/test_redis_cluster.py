"""Redis Cluster on a real three-master cluster (redis-server processes on ports 7100-7102,
made by ``redis-cli --cluster create``): keys spread over the nodes, cross-slot commands
refused with the hash-tag fix named, transactions kept in one slot, slots moved under a
live client, and the settings checked.

The shared Redis suite (tests/backends/test_redis.py) also runs on this cluster.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest
import redis

from dbsystem import (
    AsyncDatabaseManager,
    ConfigurationError,
    ConnectionFailed,
    CrossSlotError,
    DatabaseManager,
    DatabaseType,
    NotSupportedError,
    PoolConfig,
    ProgrammingError,
)
from tests.server_control import REDIS_CLUSTER_PORTS

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]
R = DatabaseType.REDIS


@pytest.fixture
def db(redis_cluster_url):
    manager = DatabaseManager()
    manager.create_pool(R, PoolConfig(url=redis_cluster_url, max_size=4, acquire_timeout=2))
    manager.connection(R).execute("FLUSHDB")
    yield manager
    manager.connection(R).execute("FLUSHDB")
    manager.close_all()


def _node_keys() -> dict[int, set[str]]:
    keys = {}
    for port in REDIS_CLUSTER_PORTS:
        with redis.Redis(port=port, decode_responses=True) as node:
            keys[port] = set(node.keys("*"))
    return keys


def test_keys_spread_over_every_node_and_read_back(db):
    q = db.query(R)
    for number in range(60):
        q = q.set(f"user:{number}", number)
    assert q.execute() == [True] * 60  # one pipeline, split by node
    per_node = _node_keys()
    assert all(per_node.values()), per_node  # every master holds some of the keys
    assert set().union(*per_node.values()) == {f"user:{n}" for n in range(60)}
    conn = db.connection(R)
    assert conn.execute("GET", "user:42") == "42"
    # Keyspace-wide answers cover the whole cluster, not the node a command landed on.
    assert conn.execute("DBSIZE") == 60
    assert len(conn.execute("KEYS", "user:*")) == 60
    assert len(set(conn.scan(match="user:*"))) == 60


def test_a_multi_key_command_across_slots_names_the_keys_and_the_fix(db):
    conn = db.connection(R)
    with pytest.raises(CrossSlotError) as info:
        conn.execute("MGET", "user:1", "order:9")
    error = info.value
    assert isinstance(error, ProgrammingError) and error.backend == "redis"
    assert "'user:1' (slot 10778)" in str(error) and "'order:9' (slot" in str(error)
    assert "hash tag" in str(error) and "{user:1}" in str(error)
    # The fix works: a common hash tag puts both keys in one slot.
    conn.execute("SET", "{user:1}:name", "ada")
    conn.execute("SET", "{user:1}:email", "ada@example.com")
    assert conn.execute("MGET", "{user:1}:name", "{user:1}:email") == ["ada", "ada@example.com"]


def test_a_transaction_must_stay_in_one_slot_and_writes_nothing_otherwise(db):
    q = db.query(R)
    with pytest.raises(CrossSlotError, match="'a' \\(slot 15495\\), 'b' \\(slot 3300\\)"):
        q.set("a", 1).set("b", 2).multi().execute()
    assert q.exists("a").exists("b").execute() == [0, 0]  # refused before anything ran
    # In one slot the transaction runs, with the replies of a single server's MULTI/EXEC.
    result = q.set("{cart:7}:n", 1).incr("{cart:7}:n").hgetall("{cart:7}:h").multi().execute()
    assert result == [True, 2, {}]


def test_optimistic_locking_in_one_slot(db):
    conn = db.connection(R)
    conn.execute("SET", "{acct:1}:balance", 100)

    def debit(pipe):
        balance = int(pipe.get("{acct:1}:balance"))
        pipe.multi()
        pipe.set("{acct:1}:balance", balance - 30)
        pipe.rpush("{acct:1}:log", "debit 30")
        return balance - 30

    assert conn.optimistic(debit, "{acct:1}:balance") == 70
    assert conn.execute("GET", "{acct:1}:balance") == "70"


def test_pub_sub_across_the_cluster(db):
    conn = db.connection(R)
    with conn.subscribe("events") as subscription:
        assert db.query(R).publish("events", "hello").execute() >= 0
        message = subscription.get(timeout=5)
    assert message == {"channel": "events", "data": "hello"}


def test_slots_moved_under_a_live_client_are_followed(db, redis_cluster_url):
    q = db.query(R)
    key = "moving:key"
    q.set(key, "before").execute()
    slot = redis.cluster.key_slot(key.encode())
    owner, target = _owner_and_other(slot)
    # Move the key's slot to another master the way an operator does (MIGRATE via redis-cli).
    subprocess.run(
        [
            "redis-cli", "--cluster", "reshard", f"127.0.0.1:{owner}",
            "--cluster-from", _node_id(owner), "--cluster-to", _node_id(target),
            "--cluster-slots", str(_slots_before(owner, slot)), "--cluster-yes",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert _owner_and_other(slot)[0] == target
    # The client's slot map is stale: the MOVED reply sends it to the new owner.
    assert q.get(key).execute() == "before"
    assert q.set(key, "after").get(key).execute() == [True, "after"]


def _cluster_slots() -> list[tuple[int, int, int]]:
    with redis.Redis(port=REDIS_CLUSTER_PORTS[0]) as node:
        return [(r[0], r[1], r[2][1]) for r in node.execute_command("CLUSTER", "SLOTS")]


def _owner_and_other(slot: int) -> tuple[int, int]:
    owner = next(port for low, high, port in _cluster_slots() if low <= slot <= high)
    return owner, next(p for p in REDIS_CLUSTER_PORTS if p != owner)


def _slots_before(owner: int, slot: int) -> int:
    # redis-cli reshard moves the owner's lowest slots first: move up to and with ``slot``.
    return sum(
        min(high, slot) - low + 1
        for low, high, port in _cluster_slots()
        if port == owner and low <= slot
    )


def _node_id(port: int) -> str:
    with redis.Redis(port=port, decode_responses=True) as node:
        return str(node.execute_command("CLUSTER", "MYID"))


def test_pool_stats_sum_the_nodes(db):
    for number in range(30):
        db.query(R).get(f"k{number}").execute()
    stats = db.pool_stats()[R]
    assert stats.acquired >= 30 and stats.active == 0
    assert stats.max_size == 4 and 3 <= stats.total <= 12  # max_size is per node


def test_settings_are_checked_and_the_password_never_shows(redis_cluster_url):
    with pytest.raises(ConfigurationError, match="only database 0"):
        DatabaseManager().create_pool(R, redis_cluster_url + "/2")
    with pytest.raises(ConfigurationError, match="unknown Redis URL option"):
        DatabaseManager().create_pool(R, redis_cluster_url + "/?colour=red")
    with pytest.raises(ConnectionFailed) as info:
        DatabaseManager().create_pool(
            R,
            PoolConfig(url="redis+cluster://:Secr3tPw@127.0.0.1:1,127.0.0.1:2", connect_timeout=1),
        )
    assert "Secr3tPw" not in str(info.value) and info.value.backend == "redis"


def test_the_async_manager_refuses_a_cluster_clearly(redis_cluster_url):
    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(R, redis_cluster_url)
        try:
            with pytest.raises(NotSupportedError, match="Redis Cluster"):
                async with adb.connection(R) as conn:
                    await conn.execute("PING")
        finally:
            await adb.close_all()

    asyncio.run(main())
