"""Change streams on the mock Redis (fakeredis): the same API runs in unit tests."""

from __future__ import annotations

import time

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.streams import StreamProcessor


def _collect(subscription, count: int, timeout: float = 5.0) -> list:
    events: list = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        event = subscription.get(timeout=0.1)
        if event is not None:
            events.append(event)
    return events


def test_pubsub_and_streams_on_the_mock_redis():
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, "redis+mock://")
    with StreamProcessor(db) as streams, db.connection(DatabaseType.REDIS) as conn:
        channel = streams.redis_pubsub("news")
        jobs = streams.redis_stream("jobs", group="g", consumer="c")
        for i in range(10):
            conn.execute("PUBLISH", "news", f"m{i}")
            conn.execute("XADD", "jobs", "*", "n", str(i))
        assert [e.payload for e in _collect(channel, 10)] == [f"m{i}" for i in range(10)]
        events = _collect(jobs, 10)
        assert [e.payload["n"] for e in events] == [str(i) for i in range(10)]
        for event in events:
            event.ack()
        assert conn.execute("XPENDING", "jobs", "g")["pending"] == 0
    assert streams.subscriptions == []
    db.close_all()
