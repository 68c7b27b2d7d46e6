"""What a pool believes about its cluster, and the Patroni watcher that keeps it current.

``PoolConfig(url="postgresql://app@h1:5441,h2:5442,h3:5443/shop?target_session_attrs=read-write",
patroni="http://h1:8008,http://h2:8008,http://h3:8008")``: the writes go where libpq's
``target_session_attrs`` finds the primary (``dbsystem.backends._pg_hosts``); the reads of
``db.fetch_*`` and the select builders go to the replicas Patroni lists. A thread reads
Patroni's REST API (``GET /cluster``, from the first of the given URLs that answers) every
second, and at once when a read on a replica fails; a replica joins the read rotation
(``dbsystem.core.replicas``) when Patroni reports it running with a known lag, and leaves it
when it is gone, stopped, promoted or its lag unknown. Each replica gets its own pool
(``__patroni_<member>``, no connection opened before its first read, and
``target_session_attrs=standby``, so a connection to a replica that was promoted is dropped).

The async manager's watcher (``dbsystem.aio.replicas.AsyncPatroniWatcher``) follows the
same plan (``PatroniState``) from a task of its event loop.

``db.topology()`` returns the last view: a ``Topology`` of ``Member``s (primary, replicas,
their lag in bytes as Patroni reports it, whether they are in the read rotation).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from dbsystem._log import get_logger
from dbsystem.core.replicas import ReplicaSet, replica_options
from dbsystem.errors import ConnectionFailed, DBSystemError, PoolTimeout
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine

__all__ = [
    "Member",
    "PatroniState",
    "PatroniWatcher",
    "Topology",
    "current_topology",
    "fetch_cluster",
]

T = TypeVar("T")
logger = get_logger("dbsystem.pool")

REFRESH_EVERY = 1.0  # seconds between two reads of Patroni's /cluster
_HTTP_TIMEOUT = 1.0
_RUNNING = frozenset({"running", "streaming"})


@dataclass(frozen=True, slots=True)
class Member:
    """One server of a cluster as the pool sees it."""

    name: str
    role: str
    """``primary`` or ``replica``."""
    host: str | None
    port: int | None
    state: str = "unknown"
    """Patroni's state (``running``, ``streaming``, ``stopped``...), ``configured`` for a
    replica listed in ``PoolConfig.replicas``."""
    lag: int | None = None
    """Bytes of WAL behind the primary (Patroni's figure); None if unknown or the primary."""
    in_rotation: bool = False
    """True for a replica that gets reads now."""


@dataclass(frozen=True, slots=True)
class Topology:
    """A pool's view of its cluster: where writes go, where reads may go."""

    source: str
    """``patroni`` (read from its REST API), ``configured`` (``PoolConfig``) or ``none``."""
    primary: Member | None
    replicas: tuple[Member, ...] = ()
    refreshed_at: float | None = None
    """``time.time()`` of the last successful read of the source (None: never, or static)."""
    error: str | None = None
    """Why the last refresh failed (None: it did not)."""
    members: tuple[Member, ...] = field(default=(), repr=False)


def current_topology(config: PoolConfig, replicas: ReplicaSet | None) -> Topology:
    """``db.topology()`` (sync and async): the Patroni watcher's last view, or, without
    Patroni, the pool's URL and its configured replicas; ``in_rotation`` as of now."""
    watcher = getattr(replicas, "watcher", None)
    if isinstance(watcher, PatroniState):
        return watcher.view()
    url = config.url
    primary = Member("primary", "primary", url.host, url.port, "configured")
    members = []
    if replicas is not None:
        rotation = set(replicas.available())
        for name, replica_url in zip(replicas.replicas, config.replicas, strict=False):
            members.append(
                Member(
                    name,
                    "replica",
                    replica_url.host,
                    replica_url.port,
                    "configured",
                    in_rotation=name in rotation,
                )
            )
    return Topology("configured", primary, tuple(members))


def fetch_cluster(urls: list[str]) -> list[dict[str, Any]]:
    errors = []
    for base in urls:
        try:
            with urllib.request.urlopen(f"{base}/cluster", timeout=_HTTP_TIMEOUT) as answer:
                return list(json.loads(answer.read())["members"])
        except (OSError, ValueError, KeyError) as exc:
            errors.append(f"{base}: {exc}")
    raise ConnectionFailed("no Patroni REST API answered: " + "; ".join(errors))


class PatroniReplicaSet(ReplicaSet):
    """A ``ReplicaSet`` whose replicas come and go with Patroni's view; a failing read
    asks the watcher for a refresh at once."""

    watcher: PatroniState

    def _failed(self, replica: str, exc: BaseException) -> None:
        super()._failed(replica, exc)
        self.watcher.refresh_soon()

    def read(self, sql: str | None, call: Callable[[Any], T], context: Any = None) -> T:
        try:
            return super().read(sql, call, context)
        except (ConnectionFailed, PoolTimeout):
            self.watcher.refresh_soon()
            raise


class PatroniState:
    """What the sync and async watchers share, I/O-free: the last view, the member ->
    replica pool map, and the plan that brings the pools in line with a ``/cluster``."""

    replicas: ReplicaSet

    def _setup(self, db_type: DatabaseType, name: str | None, config: PoolConfig) -> None:
        self.urls = [u.strip().rstrip("/") for u in (config.patroni or "").split(",")]
        self.db_type, self.name, self.config = db_type, name, config
        self.topology = Topology("patroni", None)
        self._pools: dict[str, str] = {}  # member name -> replica pool name
        self._label = name or db_type.value

    def refresh_soon(self) -> None:
        """Read the cluster again now (a read failed: the topology may have changed)."""

    def view(self) -> Topology:
        """The last topology read, ``in_rotation`` as of now (failures, lag limit)."""
        topology = self.topology
        rotation = set(self.replicas.available())
        replicas = tuple(
            replace(m, in_rotation=self._pools.get(m.name) in rotation) for m in topology.replicas
        )
        return replace(topology, replicas=replicas)

    def _failed_read(self, exc: DBSystemError) -> None:
        old = self.topology
        self.topology = replace(old, error=str(exc))
        logger.warning("pool %r: %s", self._label, exc)

    def _plan(
        self, raw: list[dict[str, Any]]
    ) -> tuple[list[tuple[str, str, PoolConfig]], list[str]]:
        """From ``/cluster``: the replica pools to open (member, pool name, settings) and
        the members whose pools to close. Records the new view."""
        members = [_member(m) for m in raw]
        usable = {m.name: m for m in members if m.role == "replica" and m.in_rotation}
        primary = next((m for m in members if m.role == "primary"), None)
        replicas = tuple(m for m in members if m.role == "replica")
        self.topology = Topology("patroni", primary, replicas, time.time(), None, tuple(members))
        to_open = [
            (m.name, f"{self.name or ''}__patroni_{m.name}", self._replica_config(m))
            for m in usable.values()
            if m.name not in self._pools
        ]
        return to_open, [n for n in self._pools if n not in usable]

    def _replica_config(self, member: Member) -> PoolConfig:
        # The backend reads its libpq options from config.options (the URL's copy too).
        options = {**self.config.options, "target_session_attrs": "standby"}
        options.pop("load_balance_hosts", None)
        url = self.config.url.replace(host=member.host, port=member.port, options=options)
        return self.config.model_copy(
            update={"url": url, "options": options, "patroni": None, "replicas": (), "min_size": 0}
        )

    def _opened(self, member: str, pool_name: str) -> None:
        self._pools[member] = pool_name
        logger.info("replica %s (%s) joins the read rotation", member, pool_name)

    def _rotation(self, leaving: list[str]) -> list[str]:
        """The replica pools to close; the rest are the read rotation from now on."""
        closing = [self._pools.pop(member) for member in leaving]
        for member, pool_name in zip(leaving, closing, strict=True):
            logger.info("replica %s (%s) leaves the read rotation", member, pool_name)
        self.replicas.replicas = list(self._pools.values())
        return closing


def _member(raw: dict[str, Any]) -> Member:
    role = "primary" if raw.get("role") in ("leader", "master", "standby_leader") else "replica"
    lag = raw.get("lag")
    state = str(raw.get("state", "unknown"))
    known = isinstance(lag, int)
    return Member(
        str(raw.get("name")),
        role,
        raw.get("host"),
        int(raw["port"]) if raw.get("port") else None,
        state,
        lag if known else None,
        in_rotation=role == "replica" and state in _RUNNING and known,
    )


class PatroniWatcher(PatroniState):
    """Reads Patroni's ``/cluster`` every second (a thread) and keeps a pool's read
    replicas in step."""

    def __init__(
        self, db: Engine, db_type: DatabaseType, name: str | None, config: PoolConfig
    ) -> None:
        self._setup(db_type, name, config)
        self._db = weakref.ref(db)
        self._pool = db.get_pool(db_type, name)
        self.replicas = PatroniReplicaSet(db, db_type, name, [], **replica_options(config))
        self.replicas.watcher = self
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.refresh()
        self._thread = threading.Thread(
            target=self._run, name=f"dbsystem-patroni-{self._label}", daemon=True
        )
        self._thread.start()

    def refresh_soon(self) -> None:
        """Read the cluster again now (a read failed: the topology may have changed)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._pool._closed:
            self._wake.wait(REFRESH_EVERY)
            self._wake.clear()
            if self._pool._closed or self._db() is None:
                break
            try:
                self.refresh()
            except Exception:  # never let the watcher die
                logger.exception("pool %r: Patroni topology refresh failed", self._label)
        self._close(self._rotation(list(self._pools)))

    def refresh(self) -> Topology:
        """Read ``/cluster`` and bring the read rotation in line with it."""
        with self._lock:
            try:
                raw = fetch_cluster(self.urls)
            except DBSystemError as exc:
                self._failed_read(exc)
                return self.topology
            to_open, leaving = self._plan(raw)
            db = self._db()
            for member, pool_name, config in to_open:
                if db is None:
                    break
                try:
                    db.create_pool(self.db_type, config, name=pool_name)
                except DBSystemError as exc:
                    logger.warning("pool %r: replica %s not added: %s", pool_name, member, exc)
                else:
                    self._opened(member, pool_name)
            self._close(self._rotation(leaving))
            return self.topology

    def _close(self, pool_names: list[str]) -> None:
        db = self._db()
        for pool_name in pool_names:
            if db is None:
                break
            try:
                db.close_pool(self.db_type, pool_name)
            except DBSystemError:
                pass  # closed with the others (close_all)
