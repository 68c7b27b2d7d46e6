"""Redis pub/sub, and Redis Streams read by a consumer group with acknowledgement.

A listener holds a connection of its own (a subscriber blocks it), but what it asks the
server for takes the one path: each time it subscribes (at start and after every
reconnection) the ``SUBSCRIBE``/``PSUBSCRIBE``, or the consumer group's ``XGROUP CREATE``
with the ``XREADGROUP``/``XACK`` it will run, goes through the pool's hooks as a
``Statement``: access control checks it for a user session (``db.for_user(...)``: a read
of each channel or pattern; INSERT, SELECT and UPDATE on the stream) and the audit log
records it, for the application's listeners too. A refusal stops the listener.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Required, TypedDict

import redis
from redis import exceptions as redis_errors

from dbsystem.backends.redis import describe_commands, describe_subscription
from dbsystem.errors import InterfaceError
from dbsystem.kernel.hooks import Description
from dbsystem.kernel.types import DatabaseType
from dbsystem.streams._base import ChangeEvent, Subscription, application_backend

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["RedisChannelListener", "RedisStreamConsumer", "RedisStreamOptions"]


class RedisStreamOptions(TypedDict, total=False):
    """The keyword options of ``RedisStreamConsumer`` (declared once here, for
    ``StreamProcessor.redis_stream`` too, which passes them on)."""

    group: Required[str]
    consumer: Required[str]
    name: str | None
    start_id: str
    auto_ack: bool
    count: int
    callback: Callable[[ChangeEvent], Any] | None
    reconnect_delay: float
    max_reconnect_delay: float


def _route(db: Any, name: str | None) -> tuple[Any, Any, Any]:
    """(the Redis backend, the pool whose hooks see the listener's commands, the user
    session's context or None) for a manager or a user session of one."""
    from dbsystem.core.manager import Engine
    from dbsystem.core.session import EngineSession

    if isinstance(db, (Engine, EngineSession)):
        handle = db.connection(DatabaseType.REDIS, name=name)
        return handle._backend, handle._pool, handle._context
    # (an asyncio manager's sync bridge: the application's only)
    return application_backend(db, DatabaseType.REDIS, name), None, None


def _own_client(backend: Any) -> Any:
    """A client with a connection pool of its own, on the pool's server and settings: a
    subscriber holds its connection, which must not take one from the application."""
    shared = backend.pool
    pool = redis.ConnectionPool(
        connection_class=shared.connection_class, max_connections=2, **shared.connection_kwargs
    )
    return redis.Redis(connection_pool=pool)


class _Routed:
    """The listener's commands through the pool's hooks (checked and audited)."""

    def __init__(self, db: Any, name: str | None) -> None:
        backend, self._pool, self._context = _route(db, name)
        self._client = _own_client(backend)

    def _hooked(self, describe: Callable[[], Description], call: Callable[[], Any]) -> Any:
        if self._pool is None:
            return call()
        return self._pool.run(self._context, "subscribe", describe, call)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisChannelListener(_Routed, Subscription):
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
        Subscription.__init__(self, callback=callback, **options)
        if not channels:
            raise InterfaceError(
                "RedisChannelListener: channels is empty; SUBSCRIBE needs at least one"
            )
        self.channels = list(channels)
        self.patterns = patterns
        _Routed.__init__(self, db, name)
        self._pubsub: Any = None

    def _open(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        command = "PSUBSCRIBE" if self.patterns else "SUBSCRIBE"
        start = pubsub.psubscribe if self.patterns else pubsub.subscribe
        try:
            self._hooked(
                lambda: describe_subscription(command, self.channels),
                lambda: start(*self.channels),
            )
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


class RedisStreamConsumer(_Routed, Subscription):
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
        Subscription.__init__(self, callback=callback, **options)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.start_id, self.auto_ack, self.count = start_id, auto_ack, count
        _Routed.__init__(self, db, name)
        self._cursor = "0"  # the pending entries are read from here; ">" once they are done

    def _open(self) -> None:
        stream, group = self.stream, self.group
        # What the consumer will run, checked and audited once per connection.
        commands = [
            ("XGROUP", "CREATE", stream, group, self.start_id, "MKSTREAM"),
            ("XREADGROUP", "GROUP", group, self.consumer, "STREAMS", stream, ">"),
            ("XACK", stream, group, "0-0"),
        ]

        def create() -> None:
            try:
                self._client.xgroup_create(stream, group, id=self.start_id, mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        self._hooked(lambda: describe_commands(commands), create)
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
