"""``StreamProcessor``: one place to subscribe to a manager's change sources and stop them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from dbsystem.streams._base import ChangeEvent, Subscription
from dbsystem.streams.mongodb import MongoChangeStream
from dbsystem.streams.postgres import PostgresListener, install_change_trigger
from dbsystem.streams.redis import (
    RedisChannelListener,
    RedisStreamConsumer,
    RedisStreamOptions,
)

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["StreamProcessor"]

Callback = Callable[[ChangeEvent], Any]


class StreamProcessor:
    """Subscribes to live changes of ``db``'s pools; each method returns a started
    ``Subscription`` (iterate it, or pass ``callback=``), and ``stop()`` ends them all.

        streams = StreamProcessor(db)
        orders = streams.listen("orders_changes", json=True)     # PostgreSQL NOTIFY
        for event in orders:                                      # blocks; stop() ends it
            print(event.payload["op"], event.payload["row"])

        streams.redis_stream("jobs", group="workers", consumer="w1", callback=handle)
        ...
        streams.stop()

    Each subscription has a thread and a connection of its own and reconnects by itself.
    """

    def __init__(self, db: DatabaseManager) -> None:
        self.db = db
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()

    def _started(self, subscription: Subscription) -> Subscription:
        subscription.start()
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def listen(
        self,
        *channels: str,
        name: str | None = None,
        json: bool = False,
        callback: Callback | None = None,
        **options: Any,
    ) -> Subscription:
        """PostgreSQL ``LISTEN`` on ``channels`` (``json=True`` decodes payloads)."""
        return self._started(
            PostgresListener(self.db, channels, name=name, json=json, callback=callback, **options)
        )

    def install_change_trigger(
        self, table: str, *, channel: str | None = None, name: str | None = None
    ) -> str:
        """Make ``table``'s row changes notify a channel as JSON; returns the channel
        (``listen(channel, json=True)`` reads it)."""
        return install_change_trigger(self.db, table, channel=channel, name=name)

    def redis_pubsub(
        self,
        *channels: str,
        name: str | None = None,
        patterns: bool = False,
        callback: Callback | None = None,
        **options: Any,
    ) -> Subscription:
        """Redis ``SUBSCRIBE`` (``patterns=True``: ``PSUBSCRIBE``) on ``channels``."""
        return self._started(
            RedisChannelListener(
                self.db, channels, name=name, patterns=patterns, callback=callback, **options
            )
        )

    def redis_stream(self, stream: str, **options: Unpack[RedisStreamOptions]) -> Subscription:
        """A consumer of a Redis Streams consumer group (``event.ack()`` when handled);
        ``options`` are ``RedisStreamConsumer``'s (``group`` and ``consumer`` required)."""
        return self._started(RedisStreamConsumer(self.db, stream, **options))

    def mongo_changes(
        self,
        collection: str,
        *,
        name: str | None = None,
        pipeline: Sequence[Mapping[str, Any]] = (),
        callback: Callback | None = None,
        **options: Any,
    ) -> Subscription:
        """A MongoDB change stream on ``collection`` (``NotSupportedError`` without one)."""
        return self._started(
            MongoChangeStream(
                self.db, collection, name=name, pipeline=pipeline, callback=callback, **options
            )
        )

    @property
    def subscriptions(self) -> list[Subscription]:
        """The subscriptions started here and not stopped."""
        with self._lock:
            return [s for s in self._subscriptions if s.running]

    def stop(self) -> None:
        """Stop every subscription (each thread exits, each connection closes)."""
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.stop()

    def __enter__(self) -> StreamProcessor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
