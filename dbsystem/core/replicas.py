"""Read replicas: reads on a healthy replica, everything else on the primary.

``db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=primary, replicas=[url1, url2]))``
makes the primary pool and one pool per replica (named ``__replica1``, ``__replica2``...).
Reads, meaning the manager's ``fetch_all``/``fetch_one``/``fetch_value`` of SQL that only
reads (classified with sqlglot) and the select builders of ``db.query()``, go to a replica
chosen by ``replica_policy``:
- ``round_robin``;
- ``least_connections`` (fewest lent out);
- ``lowest_latency`` (a moving average of each replica's reads).

Reads stay on the primary:
- inside a ``db.transaction()`` block of this context;
- within ``read_your_writes`` seconds of a write in this context
  (``db.read_your_writes(2.0)`` turns it on);
- when every replica is out.

A replica is out of rotation for a second after a connection to it fails; a read that
finds it failing runs again on the primary, so the caller sees no error. A replica whose
lag is over ``max_replica_lag`` is out until it catches up. Lag is checked at most twice a
second per replica, on PostgreSQL (``pg_last_wal_replay_lsn``) and MySQL
(``Seconds_Behind_Master``).

Writes, DDL, raw ``execute`` and everything on a connection you borrow yourself
(``db.connection()``) go to the primary. Replica reads are eventually consistent: a row
written a moment ago may not be there yet.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from dbsystem._log import get_logger
from dbsystem.errors import ConnectionFailed, DBSystemError, PoolTimeout
from dbsystem.kernel.hooks import ExecutionHook, Statement, classify_sql
from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = ["ReplicaSet"]

T = TypeVar("T")
logger = get_logger("dbsystem.pool")

_RETRY_AFTER = 1.0  # seconds a failing replica stays out of rotation
_LAG_EVERY = 0.5  # seconds between lag checks of one replica
_WRITES = frozenset({"insert", "update", "delete", "ddl", "multiple", "unknown"})

# (the primary pool's name) -> when this context last wrote through it
_last_write: ContextVar[dict[str, float]] = ContextVar(
    "dbsystem_last_write",
    default={},  # noqa: B039 - replaced, never mutated
)


class _WriteTracker(ExecutionHook):
    """Remembers, per context, when each pool was last written to (read_your_writes)."""

    def after_execute(self, statement: Statement) -> None:
        if statement.executed and statement.action in _WRITES:
            _last_write.set({**_last_write.get(), statement.pool: time.monotonic()})


_LAG_SQL = {
    "postgresql": (
        "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
        "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END AS lag"
    ),
    "mysql": "SHOW REPLICA STATUS",
}


def _lag_of(row: Any) -> float:
    """Seconds behind, from the row of ``_LAG_SQL`` (none: not a replica, so no lag)."""
    if row is None:
        return 0.0
    value = row.get("lag", row.get("Seconds_Behind_Master"))
    return float("inf") if value is None else float(value)


def read_your_writes(manager: Any, seconds: float) -> None:
    """``manager.read_your_writes(seconds)`` (the sync and the async manager's): after a
    write in a context, that context's reads go to the primary for ``seconds``."""
    if not any(isinstance(h, _WriteTracker) for h in manager.hooks):
        manager.add_hook(_WriteTracker())
    for replicas in manager._replicas.values():
        replicas.read_your_writes = seconds


def replica_options(config: Any) -> dict[str, Any]:
    """The ``ReplicaSet``/``AsyncReplicaSet`` settings a ``PoolConfig`` gives."""
    return {"policy": config.replica_policy, "max_lag": config.max_replica_lag}


class ReplicaSet:
    """The replicas of one primary pool, and the choice among them."""

    def __init__(
        self,
        db: DatabaseManager,
        db_type: DatabaseType,
        primary: str | None,
        replicas: list[str],
        *,
        policy: str,
        max_lag: float | None,
    ) -> None:
        self.db, self.db_type, self.primary = db, db_type, primary
        self.replicas = replicas
        self.policy = policy
        self.max_lag = max_lag
        self.read_your_writes: float | None = None
        self.primary_pool_name = db.get_pool(db_type, primary).name
        self._dialect = str(getattr(db.backend(db_type, primary), "dialect", ""))
        self._turn = itertools.count()
        self._out_until: dict[str, float] = {}
        self._lag: dict[str, tuple[float, float]] = {}  # replica -> (checked at, lag)
        self._latency: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- choosing --------------------------------------------------------------------------

    def pinned(self) -> str | None:
        """Why reads must go to the primary now, or None."""
        from dbsystem.core._calls import BOUND as _BOUND

        if any(key[1] == self.db_type for key in _BOUND.get()):
            return "a transaction is open"
        window = self.read_your_writes
        if window is not None:
            wrote = _last_write.get().get(self.primary_pool_name)
            if wrote is not None and time.monotonic() - wrote < window:
                return "read your writes"
        return None

    def available(self) -> list[str]:
        """The replicas in rotation now (up, and within the lag limit)."""
        now = time.monotonic()
        return [
            r for r in self.replicas if self._out_until.get(r, 0.0) <= now and self._lag_ok(r, now)
        ]

    def choose(self) -> str | None:
        """The replica for the next read, or None for the primary."""
        candidates = self.available()
        if not candidates:
            return None
        if self.policy == "least_connections":
            return min(candidates, key=lambda r: self.db.get_pool(self.db_type, r).stats().active)
        if self.policy == "lowest_latency":
            return min(candidates, key=lambda r: self._latency.get(r, 0.0))
        return candidates[next(self._turn) % len(candidates)]

    def _lag_ok(self, replica: str, now: float) -> bool:
        if self.max_lag is None:
            return True
        checked = self._lag.get(replica)
        if checked is None or now - checked[0] >= _LAG_EVERY:
            checked = (now, self._measure_lag(replica))
            self._lag[replica] = checked
        return checked[1] <= self.max_lag

    def _measure_lag(self, replica: str) -> float:
        sql = _LAG_SQL.get(self._dialect)
        if sql is None:
            return 0.0
        try:
            with self.db.connection(self.db_type, name=replica, timeout=1.0) as conn:
                return _lag_of(conn.fetch_one(sql))
        except DBSystemError:
            return float("inf")

    def _failed(self, replica: str, exc: BaseException) -> None:
        """Out of rotation for a while: its read runs again on the primary."""
        self._out_until[replica] = time.monotonic() + _RETRY_AFTER
        logger.warning("replica %r out of rotation for %g s: %s", replica, _RETRY_AFTER, exc)

    def _served(self, replica: str, started: float) -> None:
        """A read's time, for the lowest-latency policy's moving average."""
        if self.policy == "lowest_latency":
            took = time.perf_counter() - started
            self._latency[replica] = 0.8 * self._latency.get(replica, took) + 0.2 * took

    # -- running ---------------------------------------------------------------------------

    def read(self, sql: str | None, call: Callable[[Any], T], context: Any = None) -> T:
        """Run ``call(conn)`` on a replica if ``sql`` only reads (None: a select builder);
        ``context`` is a user session's, carried by the connection for its checks."""
        replica = None
        if sql is None or classify_sql(sql, self._dialect)[0] == "select":
            replica = None if self.pinned() else self.choose()
        if replica is not None:
            started = time.perf_counter()
            try:
                with self.db._connection_as(context, self.db_type, replica) as conn:
                    result = call(conn)
            except (ConnectionFailed, PoolTimeout) as exc:
                self._failed(replica, exc)
            else:
                self._served(replica, started)
                return result
        with self.db._connection_as(context, self.db_type, self.primary) as conn:
            return call(conn)
