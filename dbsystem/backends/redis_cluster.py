"""Redis Cluster on redis-py's cluster client: ``redis+cluster://host:port,host:port``.

``rediss+cluster://`` (or a ``TLSConfig``) connects to every node over TLS.

The URL lists seed nodes; the client discovers the rest of the cluster from them, sends
each command to the node that owns its key's hash slot and follows MOVED/ASK redirections
as slots move. The connections, builder and hooks are the ones of a single Redis server
(``RedisConnection``): only the client differs.

Each node gets its own fair, counting pool (the single-server ``_CountingPool``), so
``max_size`` and ``acquire_timeout`` apply per node and ``PoolStats`` sums the nodes.

A cluster keeps every key of a multi-key command or a MULTI/EXEC transaction in one slot;
a command that spans slots raises ``CrossSlotError`` naming the keys, their slots and the
fix (a common ``{hash tag}``). Pipelines without a transaction may span slots: the client
splits them by node. A cluster has one database (0); pub/sub and SCAN work across nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import redis.exceptions as redis_errors
from redis.cluster import ClusterNode, RedisCluster

from dbsystem.backends.base import DriverBackend
from dbsystem.backends.redis import (
    RedisBackend,
    RedisConnection,
    _client_kwargs,
    _counters,
    _CountingPool,
    _error,
    _open_connections,
    _tls_kwargs,
)
from dbsystem.errors import ConfigurationError
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.protocols import BackendKind
from dbsystem.kernel.url import DatabaseURL

__all__ = ["RedisClusterBackend", "RedisClusterConnection"]

# Keyless commands whose answer is about the whole keyspace: redis-py sends them to one
# node, which would count or list a third of a three-node cluster's keys.
_EVERY_PRIMARY = frozenset({"DBSIZE", "KEYS"})


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class RedisClusterBackend(DriverBackend):
    """Builds redis-py's cluster client for a ``redis+cluster://`` URL."""

    name: ClassVar[str] = RedisBackend.name
    kind: ClassVar[BackendKind] = RedisBackend.kind

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)  # never a mock: redis+cluster:// URLs only
        self.cluster = True
        kwargs = _client_kwargs(url, config, self.label)
        if kwargs.pop("db"):
            raise ConfigurationError(
                "a Redis Cluster has only database 0: drop the database from the URL",
                backend=self.label,
            )
        if not url.hosts:
            raise ConfigurationError(
                "name the seed nodes: redis+cluster://host:7000,host:7001", backend=self.label
            )
        kwargs.update(username=url.username, password=url.password)
        tls = _tls_kwargs(config.tls, "rediss" if url.scheme == "rediss+cluster" else "redis")
        self.startup_nodes = [
            ClusterNode(host, port or 6379)  # type: ignore[no-untyped-call]
            for host, port in url.hosts
        ]
        self.client_kwargs = {**kwargs, **tls}
        first = self.startup_nodes[0]
        try:  # connects to a seed and reads the slot map: a wrong URL fails here
            self.client: Any = RedisCluster(
                # redis-py gives nodes the connection_pool_class only for a client made
                # from a URL: name the first seed as one (credentials stay in kwargs).
                url=f"{'rediss' if tls else 'redis'}://{_host(first.host)}:{first.port}",
                startup_nodes=self.startup_nodes,
                connection_pool_class=_CountingPool,
                require_full_coverage=True,
                **self.client_kwargs,
            )
        except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
            raise _error(exc, self.label, None, self.secrets) from exc

    def node_pools(self) -> list[_CountingPool]:
        """The connection pool of every node the client knows."""
        return [
            node.redis_connection.connection_pool
            for node in self.client.get_nodes()
            if node.redis_connection is not None
        ]

    def response_callbacks(self) -> dict[str, Any]:
        """The reply parsers of the clients on each node (the same for every node)."""
        node = self.client.get_default_node()
        if node is None or node.redis_connection is None:
            return {}
        callbacks: dict[str, Any] = node.redis_connection.response_callbacks
        return callbacks

    def open(self, min_size: int) -> None:
        """Open ``min_size`` connections on every node now (a wrong URL fails early)."""
        for pool in self.node_pools():
            _open_connections(pool, min_size, self)

    def handle(self, pool: Any) -> RedisClusterConnection:
        """A connection handle lent by the engine's ``DriverPool``."""
        return RedisClusterConnection(pool)

    def pool_counters(self) -> dict[str, Any]:
        """The nodes' pools summed; ``min_size`` and ``max_size`` are per node."""
        return _counters(self.node_pools())

    def dispose(self) -> None:
        """Close every node's connections."""
        self.client.close()


class RedisClusterConnection(RedisConnection):
    """A ``RedisConnection`` whose keyspace-wide commands (DBSIZE, KEYS) ask every primary
    and combine the answers (a sum, a concatenation)."""

    def _command(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        if str(args[0]).upper() in _EVERY_PRIMARY:
            options = {**options, "target_nodes": RedisCluster.PRIMARIES}
        return super()._command(args, options)

    def _commands(
        self, commands: Sequence[tuple[Sequence[Any], dict[str, Any]]], *, transaction: bool
    ) -> list[Any]:
        results = super()._commands(commands, transaction=transaction)
        if not transaction:
            return results
        # redis-py's cluster MULTI/EXEC applies only its cluster-specific reply callbacks
        # (SET answers 'OK' where a server's transaction answers True): apply the rest, so
        # a transaction returns the same values on a cluster as on one server.
        node_callbacks = self._backend.response_callbacks()
        cluster_callbacks = self._backend.client.cluster_response_callbacks
        parsed = []
        for (args, options), result in zip(commands, results, strict=True):
            name = str(args[0]).upper()
            callback = node_callbacks.get(name)
            fresh = callback is not None and name not in cluster_callbacks
            if fresh and not isinstance(result, Exception):
                result = callback(result, **options)
            parsed.append(result)
        return parsed
