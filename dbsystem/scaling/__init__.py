"""Scale-out above the engine: client-side sharding of the builders (``ShardedPool``).

Read replicas are the engine's (``PoolConfig(replicas=...)``, ``dbsystem.core.replicas``);
sharding routes builder statements by a shard key, so it sits above the query package.
"""

from dbsystem.scaling.sharding import Route, ShardedPool, stable_hash

__all__ = ["Route", "ShardedPool", "stable_hash"]
