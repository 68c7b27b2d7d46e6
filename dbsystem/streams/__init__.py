"""Live changes: PostgreSQL LISTEN/NOTIFY (and a row-change trigger), Redis pub/sub and
Redis Streams consumer groups, MongoDB change streams. See docs/STREAMS.md."""

from dbsystem.streams._base import ChangeEvent, Subscription
from dbsystem.streams.mongodb import MongoChangeStream
from dbsystem.streams.postgres import PostgresListener, install_change_trigger
from dbsystem.streams.processor import StreamProcessor
from dbsystem.streams.redis import RedisChannelListener, RedisStreamConsumer

__all__ = [
    "ChangeEvent",
    "MongoChangeStream",
    "PostgresListener",
    "RedisChannelListener",
    "RedisStreamConsumer",
    "StreamProcessor",
    "Subscription",
    "install_change_trigger",
]
