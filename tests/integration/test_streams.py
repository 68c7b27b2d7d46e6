"""Change streams on the real PostgreSQL and Redis: delivery order, callbacks, a clean stop,
resubscription after the server drops the connection; MongoDB refused on mongomock."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, NotSupportedError, PoolConfig
from dbsystem.streams import ChangeEvent, StreamProcessor

pytestmark = pytest.mark.timeout(60)


def _collect(subscription, count: int, timeout: float = 10.0) -> list[ChangeEvent]:
    events: list[ChangeEvent] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        event = subscription.get(timeout=0.2)
        if event is not None:
            events.append(event)
    return events


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _pending(conn, stream: str, group: str) -> int:
    summary = conn.execute("XPENDING", stream, group)
    return int(summary["pending"] if isinstance(summary, dict) else summary[0])


@pytest.fixture
def pg(postgres_url):
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=postgres_url, max_size=3))
    yield db
    db.close_all()


@pytest.fixture
def rd(redis_url):
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, PoolConfig(url=redis_url, max_size=3))
    yield db
    db.close_all()


def _listeners(db, channel: str) -> int:
    return int(
        db.fetch_value(
            "SELECT count(*) FROM pg_stat_activity WHERE query = :q", {"q": f"LISTEN {channel}"}
        )
    )


def test_notify_arrives_in_order_and_stops_cleanly(pg):
    channel = f"ch_{uuid.uuid4().hex[:8]}"
    with StreamProcessor(pg) as streams:
        sub = streams.listen(channel)
        for i in range(200):
            pg.execute("SELECT pg_notify(:c, :p)", {"c": channel, "p": str(i)})
        events = _collect(sub, 200)
        assert [e.payload for e in events] == [str(i) for i in range(200)]
        assert {e.channel for e in events} == {channel} and events[0].source == "postgres"
        assert _listeners(pg, channel) == 1
        started = time.monotonic()
        streams.stop()
        assert time.monotonic() - started < 1.0
    assert not sub.running
    assert list(sub) == []  # an iteration over a stopped subscription ends
    _until(lambda: _listeners(pg, channel) == 0)  # its connection closed


def test_the_row_trigger_and_a_callback(pg):
    table = f"stream_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
    try:
        streams = StreamProcessor(pg)
        channel = streams.install_change_trigger(table)
        assert streams.install_change_trigger(table) == channel  # idempotent
        got: list[ChangeEvent] = []
        done = threading.Event()

        def handle(event: ChangeEvent) -> None:
            got.append(event)
            if len(got) == 3:
                done.set()

        streams.listen(channel, json=True, callback=handle)
        pg.execute(f"INSERT INTO {table} VALUES (1, 'ada')")
        pg.execute(f"UPDATE {table} SET name = 'bob' WHERE id = 1")
        pg.execute(f"DELETE FROM {table} WHERE id = 1")
        pg.execute(f"INSERT INTO {table} VALUES (2, :big)", {"big": "x" * 9000})
        assert done.wait(10)
        assert [(e.payload["op"], e.payload["row"]) for e in got[:3]] == [
            ("INSERT", {"id": 1, "name": "ada"}),
            ("UPDATE", {"id": 1, "name": "bob"}),
            ("DELETE", {"id": 1, "name": "bob"}),
        ]
        _until(lambda: len(got) == 4)
        assert got[3].payload == {"op": "INSERT", "table": table, "truncated": True}
        streams.stop()
    finally:
        pg.execute(f"DROP TABLE {table}")


def test_a_killed_listener_resubscribes_by_itself(pg):
    channel = f"ch_{uuid.uuid4().hex[:8]}"
    with StreamProcessor(pg) as streams:
        sub = streams.listen(channel)
        pid = sub.backend_pid
        pg.execute("SELECT pg_terminate_backend(:pid)", {"pid": pid})
        _until(lambda: sub.reconnects == 1 and sub.backend_pid not in (None, pid))
        pg.execute("SELECT pg_notify(:c, 'after')", {"c": channel})
        assert [e.payload for e in _collect(sub, 1)] == ["after"]
        assert sub.last_error is not None


def test_a_bad_channel_name_is_refused_before_a_round_trip(pg):
    from dbsystem import QueryBuildError

    with pytest.raises(QueryBuildError):
        StreamProcessor(pg).listen("x; DROP TABLE users")


def test_redis_pubsub_in_order_and_after_a_kill(rd):
    channel = f"ch:{uuid.uuid4().hex[:8]}"
    with StreamProcessor(rd) as streams, rd.connection(DatabaseType.REDIS) as conn:
        sub = streams.redis_pubsub(channel)
        for i in range(200):
            conn.execute("PUBLISH", channel, str(i))
        assert [e.payload for e in _collect(sub, 200)] == [str(i) for i in range(200)]
        conn.execute("CLIENT", "KILL", "TYPE", "pubsub")
        _until(lambda: sub.reconnects >= 1)
        _until(lambda: conn.execute("PUBSUB", "NUMSUB", channel)[1] == 1)
        conn.execute("PUBLISH", channel, "after")
        assert [e.payload for e in _collect(sub, 1)] == ["after"]
        patterns = streams.redis_pubsub(f"{channel}:*", patterns=True)
        conn.execute("PUBLISH", f"{channel}:x", "p")
        (event,) = _collect(patterns, 1)
        assert (event.channel, event.payload) == (f"{channel}:x", "p")


def test_redis_streams_consumer_group_with_ack_and_redelivery(rd):
    stream = f"stream:{uuid.uuid4().hex[:8]}"
    with rd.connection(DatabaseType.REDIS) as conn:
        streams = StreamProcessor(rd)
        sub = streams.redis_stream(stream, group="workers", consumer="w1")
        for i in range(50):
            conn.execute("XADD", stream, "*", "n", str(i))
        events = _collect(sub, 50)
        assert [e.payload["n"] for e in events] == [str(i) for i in range(50)]
        for event in events[:30]:
            event.ack()
        assert _pending(conn, stream, "workers") == 20
        streams.stop()
        # The same consumer, restarted, gets its 20 unacknowledged entries again first.
        again = StreamProcessor(rd).redis_stream(stream, group="workers", consumer="w1")
        conn.execute("XADD", stream, "*", "n", "50")
        redelivered = _collect(again, 21)
        assert [e.payload["n"] for e in redelivered] == [str(i) for i in range(30, 51)]
        for event in redelivered:
            event.ack()
        _until(lambda: _pending(conn, stream, "workers") == 0)
        # A second consumer of the group shares the work; none is delivered twice.
        other = StreamProcessor(rd).redis_stream(stream, group="workers", consumer="w2")
        for i in range(51, 151):
            conn.execute("XADD", stream, "*", "n", str(i))
        first: list[ChangeEvent] = []
        second: list[ChangeEvent] = []
        deadline = time.monotonic() + 10
        while len(first) + len(second) < 100 and time.monotonic() < deadline:
            first += _collect(again, 100, 0.2)
            second += _collect(other, 100, 0.2)
        numbers = sorted(int(e.payload["n"]) for e in first + second)
        assert numbers == list(range(51, 151))
        again.stop()
        other.stop()
        conn.execute("DEL", stream)


def test_redis_stream_consumer_reconnects(rd):
    stream = f"stream:{uuid.uuid4().hex[:8]}"
    with rd.connection(DatabaseType.REDIS) as conn, StreamProcessor(rd) as streams:
        sub = streams.redis_stream(stream, group="g", consumer="c", auto_ack=True)
        conn.execute("XADD", stream, "*", "n", "0")
        assert len(_collect(sub, 1)) == 1
        # Every other client goes, the consumer's included (whatever it last ran).
        assert conn.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
        conn.execute("XADD", stream, "*", "n", "1")
        assert [e.payload["n"] for e in _collect(sub, 1)] == ["1"]
        assert _pending(conn, stream, "g") == 0  # auto_ack
        conn.execute("DEL", stream)


def test_mongodb_change_streams_need_a_replica_set():
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://streams")
    with pytest.raises(NotSupportedError, match="change streams"):
        StreamProcessor(db).mongo_changes("orders")
    db.close_all()
