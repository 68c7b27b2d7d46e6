"""Redis pub/sub, and Redis Streams read by a consumer group with acknowledgement."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis import exceptions as redis_errors

from dbsystem.errors import InterfaceError
from dbsystem.kernel.types import DatabaseType
from dbsystem.streams._base import ChangeEvent, Subscription, application_backend

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["RedisChannelListener", "RedisStreamConsumer"]


def _own_client(db: DatabaseManager, name: str | None) -> Any:
    """A client with a connection pool of its own, on the pool's server and settings: a
    subscriber holds its connection, which must not take one from the application."""
    shared = application_backend(db, DatabaseType.REDIS, name).pool
    pool = redis.ConnectionPool(
        connection_class=shared.connection_class, max_connections=2, **shared.connection_kwargs
    )
    return redis.Redis(connection_pool=pool)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisChannelListener(Subscription):
    """SUBSCRIBE to channels (``patterns=True``: PSUBSCRIBE). At most once, like NOTIFY:
    messages published while it reconnects are lost."""

    source = "redis"

    def __init__(
        self,
        db: DatabaseManager,
        channels: Sequence[str],
        *,
        name: str | None = None,
        patterns: bool = False,
        callback: Callable[[ChangeEvent], Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(callback=callback, **options)
        if not channels:
            raise InterfaceError(
                "RedisChannelListener: channels is empty; SUBSCRIBE needs at least one"
            )
        self.channels = list(channels)
        self.patterns = patterns
        self._client = _own_client(db, name)
        self._pubsub: Any = None

    def _open(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            if self.patterns:
                pubsub.psubscribe(*self.channels)
            else:
                pubsub.subscribe(*self.channels)
        except BaseException:
            pubsub.close()
            raise
        self._pubsub = pubsub

    def _read(self) -> None:
        pubsub = self._pubsub
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] in ("message", "pmessage"):
                self._emit(ChangeEvent("redis", _text(message["channel"]), message["data"]))

    def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except redis_errors.RedisError:
                pass


class RedisStreamConsumer(Subscription):
    """One consumer of a consumer group on a stream (XREADGROUP), at least once.

    The group is created if missing (at ``start_id``: ``"$"`` new entries only, ``"0"``
    the whole stream). On start and after each reconnection the consumer first re-reads
    its own pending entries (delivered, never acknowledged), then new ones. Call
    ``event.ack()`` when an entry is handled (XACK); ``auto_ack=True`` acknowledges each
    entry as it is delivered (at most once instead).
    """

    source = "redis-stream"

    def __init__(
        self,
        db: DatabaseManager,
        stream: str,
        *,
        group: str,
        consumer: str,
        name: str | None = None,
        start_id: str = "$",
        auto_ack: bool = False,
        count: int = 100,
        callback: Callable[[ChangeEvent], Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(callback=callback, **options)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.start_id, self.auto_ack, self.count = start_id, auto_ack, count
        self._client = _own_client(db, name)
        self._cursor = "0"  # the pending entries are read from here; ">" once they are done

    def _open(self) -> None:
        try:
            self._client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._cursor = "0"

    def _read(self) -> None:
        client, stream = self._client, self.stream
        while not self._stopping.is_set():
            cursor = self._cursor
            reply = client.xreadgroup(
                self.group,
                self.consumer,
                {stream: cursor},
                count=self.count,
                block=None if cursor != ">" else 200,
            )
            entries = reply[0][1] if reply else []
            if cursor != ">" and not entries:
                self._cursor = ">"  # the pending ones are all delivered
                continue
            for entry_id, fields in entries:
                if cursor != ">":
                    self._cursor = _text(entry_id)
                if fields is None:  # pending, but trimmed from the stream meanwhile
                    client.xack(stream, self.group, entry_id)
                    continue
                event = ChangeEvent(
                    "redis-stream",
                    stream,
                    {_text(k): v for k, v in fields.items()},
                    _text(entry_id),
                    _ack=functools.partial(self._ack, entry_id),
                )
                if self.auto_ack:
                    self._ack(entry_id)
                self._emit(event)

    def _ack(self, entry_id: Any) -> None:
        self._client.xack(self.stream, self.group, entry_id)

    def _close(self) -> None:
        self._client.connection_pool.disconnect()
