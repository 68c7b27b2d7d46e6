"""Redis under Sentinel: ``redis+sentinel://host:26379,host:26380/mymaster/0``.

The URL lists sentinels, then the master's service name and the database number. The pool
asks the sentinels for the master's address (redis-py's ``redis.sentinel``): a connection
is opened to whoever is master at the time, and after a switch (``SENTINEL FAILOVER``, a
master lost) the connections to the old one are dropped as they fail or come back, and
new ones go to the new master: the application follows without a restart. Commands that
fail during the switch raise ``ConnectionFailed`` (Sentinel names no master for a few
seconds after a master is lost: ``MasterNotFoundError`` becomes ``ConnectionFailed`` too).

``?read_from=replicas`` makes the pool read from the replicas (round robin, the master
when none is up): a pool for reads beside the one for writes, as Redis refuses writes on a
replica (``READONLY``). The password in the URL is the Redis servers'; the sentinels are
asked without one unless ``?sentinel_password=`` is given. The same commands, builder,
hooks and statistics as one server (``RedisConnection``); the async manager uses
``redis.asyncio.sentinel`` with the same settings.
"""

from __future__ import annotations

from typing import Any

from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from dbsystem.backends.base import DriverBackend
from dbsystem.backends.redis import RedisBackend, _client_kwargs, _CountingPool
from dbsystem.errors import ConfigurationError
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.url import DatabaseURL

__all__ = ["RedisSentinelBackend"]

_READ_FROM = frozenset({"master", "replicas"})
_OWN_OPTIONS = ("read_from", "sentinel_password")


class _SentinelPool(_CountingPool, SentinelConnectionPool):
    """redis-py's Sentinel pool (connections to the current master, or the replicas)
    with the fair, counting behaviour of the single-server pool."""


class RedisSentinelBackend(RedisBackend):
    """Builds a redis-py client on the master (or replicas) a set of sentinels names; the
    rest (opening, handles, counters) is the single server's."""

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        DriverBackend.__init__(self, url, config)  # not RedisBackend's: no server address
        self.sentinel = True
        service, _, database = (url.database or "").partition("/")
        if not service or not url.hosts:
            raise ConfigurationError(
                "name the sentinels and the master: "
                "redis+sentinel://host:26379,host:26380/mymaster/0",
                backend=self.label,
            )
        self.read_from = config.options.get("read_from", "master")
        if self.read_from not in _READ_FROM:
            raise ConfigurationError(
                f"read_from={self.read_from!r} is not one of: master, replicas", backend=self.label
            )
        rest = {k: v for k, v in config.options.items() if k not in _OWN_OPTIONS}
        kwargs = _client_kwargs(
            url.replace(database=database or "0"),
            config.model_copy(update={"options": rest}),
            self.label,
        )
        kwargs.update(username=url.username, password=url.password)
        self.service = service
        self.sentinels = [(host, port or 26379) for host, port in url.hosts]
        self.sentinel_kwargs = {
            "socket_connect_timeout": config.connect_timeout,
            "socket_timeout": config.connect_timeout,
            "password": config.options.get("sentinel_password"),
        }
        self.client_kwargs = kwargs
        self.manager = Sentinel(self.sentinels, sentinel_kwargs=self.sentinel_kwargs)
        self.pool = _SentinelPool(
            service_name=service,
            sentinel_manager=self.manager,
            is_master=self.read_from == "master",
            check_connection=True,
            connection_class=SentinelManagedConnection,
            **kwargs,
        )
        import redis

        self.client = redis.Redis(connection_pool=self.pool)

    def async_client(self) -> Any:
        """The ``redis.asyncio`` client on the same sentinels, service and settings."""
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        manager = AsyncSentinel(self.sentinels, sentinel_kwargs=self.sentinel_kwargs)
        kwargs = {k: v for k, v in self.client_kwargs.items() if k != "timeout"}
        if self.read_from == "replicas":
            client = manager.slave_for(self.service, **kwargs)
        else:
            client = manager.master_for(self.service, **kwargs)
        client.dbsystem_sentinels = manager.sentinels  # closed with the client
        return client

    def dispose(self) -> None:
        """Close every connection, and the sentinels'."""
        super().dispose()
        for sentinel in self.manager.sentinels:
            sentinel.close()
