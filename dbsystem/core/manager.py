"""The engine's manager: one pool per database, the hooks, and the calls that lend and run.

``Engine`` is the part of ``DatabaseManager`` that needs no feature package: pools, hooks,
access-control installation, transactions and the one-statement calls. The public
``dbsystem.DatabaseManager`` (``dbsystem._facade``) adds what features contribute (the
builders' ``query()``, the ORM's ``create_tables``, ``for_user`` and ``health``), so this
module imports nothing above the engine, not even for typing.

Pools are keyed by database type and an optional name (several pools of one type:
``create_pool(DatabaseType.POSTGRES, cfg, name="analytics")``). The manager builds each
pool's backend from its URL, gives the pool its hook chain (the manager-wide hooks, plus
statement logging when asked), and lends connections: ``with db.connection(type) as conn``.

``DatabaseManager.instance()`` is the process-wide default; ``DatabaseManager()`` makes an
independent one (tests, several isolated applications in one process).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar, Unpack, cast, overload

from dbsystem._log import get_logger
from dbsystem.backends import database_type_for_url, get_backend_class
from dbsystem.backends._registry import scheme_database_type
from dbsystem.core._calls import BoundTransactions, Calls
from dbsystem.core.configfile import PoolSpec, load_toml
from dbsystem.core.connection import Connection, StatementLogger, sql_logger
from dbsystem.core.execution import DriverPool
from dbsystem.core.pool import ConnectionPool
from dbsystem.errors import ConfigurationError, InterfaceError, NotSupportedError
from dbsystem.kernel._singleton import ProcessWide
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.hooks import ExecutionHook, HookChain
from dbsystem.kernel.protocols import ConnectionOptions, connection_options, lookup_credential
from dbsystem.kernel.stats import PoolStats
from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.backends.base import Backend
    from dbsystem.backends.mock import MockBackend
    from dbsystem.backends.mongodb import MongoConnection
    from dbsystem.backends.redis import RedisConnection
    from dbsystem.core.replicas import ReplicaSet
    from dbsystem.core.topology import Topology

__all__ = ["Engine", "PoolKey", "replica_configs", "resolve_pool_config"]

logger = get_logger("dbsystem")
T = TypeVar("T")

PoolKey = DatabaseType | tuple[DatabaseType, str]

"""How ``pool_stats()`` names a pool: its type, or (type, name) for a named pool."""


class Engine(BoundTransactions[Connection], Calls, ProcessWide):
    """Holds the pools of an application and lends their connections. Thread-safe.

    Use it through ``dbsystem.DatabaseManager``, which adds the feature methods.
    """

    _default_class: ClassVar[type[Engine] | None] = None
    """The class ``instance()`` makes: set by the facade to ``dbsystem.DatabaseManager``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pools: dict[tuple[DatabaseType, str | None], ConnectionPool[Any]] = {}
        self._mode: DatabaseType | None = None
        # The type used when a call names none: the mode, else the only pools' type.
        # Recomputed when pools or the mode change, so the hot path reads one attribute.
        self._default: DatabaseType | None = None
        self._hooks: list[ExecutionHook] = []
        self._replicas: dict[tuple[DatabaseType, str | None], ReplicaSet] = {}
        self._access_control: Any = None
        self._health_monitor: Any = None  # set by HealthMonitor.start()

    # -- the process-wide instance ---------------------------------------------------------

    @classmethod
    def instance(cls) -> Self:
        """The process-wide manager, created on first call; always the same object (the
        facade's ``DatabaseManager``, whichever class of the two is asked)."""
        shared = Engine._default_class or cls
        return cast("Self", super(Engine, shared).instance())

    @classmethod
    def handle(cls) -> Self:
        """Alias of ``instance()``."""
        return cls.instance()

    @classmethod
    def _replace_instance(cls, new: Self | None) -> Self | None:
        """Swap the process-wide manager (the pytest plugin isolates tests this way)."""
        shared = Engine._default_class or cls
        return cast("Self | None", super(Engine, shared)._replace_instance(new))

    # -- pools -----------------------------------------------------------------------------

    def create_pool(
        self,
        db_type: DatabaseType | str,
        config: PoolConfig | str | None = None,
        *,
        name: str | None = None,
    ) -> ConnectionPool[Any]:
        """Create and open the pool for ``db_type`` (and ``name``), and return it.

        ``config`` may be a ``PoolConfig``, a URL string, or None to read the environment
        (``PoolConfig.from_env``). ``DatabaseType.NONE`` takes the type from the URL.
        A ``mock://`` URL is accepted for any SQL type. Opens ``min_size`` connections at
        once and raises ``ConnectionFailed`` if the first cannot be opened.
        """
        db_type, config = resolve_pool_config(db_type, config, name)
        key = (db_type, name)
        with self._lock:
            if key in self._pools:
                raise ConfigurationError(f"a pool for {_label(db_type, name)} already exists")
        backend_cls = get_backend_class(config.url.scheme)
        backend = backend_cls(config.url, config)
        label = getattr(backend, "label", backend.name)
        pool: Any
        if backend.kind != "sql":  # Redis, MongoDB: their drivers pool for themselves
            try:
                pool = DriverPool(
                    backend, name=name or db_type.value, hooks=self._chain_for(config)
                )
            except BaseException:
                backend.dispose()
                raise
            with self._lock:
                if key in self._pools:
                    pool.close()
                    backend.dispose()
                    raise ConfigurationError(f"a pool for {_label(db_type, name)} already exists")
                self._pools[key] = pool
                self._update_default()
            return pool  # type: ignore[no-any-return]
        pool = ConnectionPool(
            backend, lease_class=Connection, **self._pool_settings(db_type, name, config, label)
        )
        with self._lock:
            if key in self._pools:  # lost a race with another thread creating the same pool
                pool.close()
                backend.dispose()
                raise ConfigurationError(f"a pool for {_label(db_type, name)} already exists")
            self._pools[key] = pool
            self._update_default()
        if config.replicas:
            self._create_replicas(db_type, name, config)
        if config.patroni:
            from dbsystem.core.topology import PatroniWatcher

            self._replicas[(db_type, name)] = PatroniWatcher(self, db_type, name, config).replicas
        return pool  # type: ignore[no-any-return]

    def _pool_settings(
        self, db_type: DatabaseType, name: str | None, config: PoolConfig, label: str
    ) -> dict[str, Any]:
        """What a SQL pool (sync or async) takes from a ``PoolConfig``."""
        return {
            "name": name or db_type.value,
            "min_size": config.min_size,
            "max_size": config.max_size,
            "acquire_timeout": config.acquire_timeout,
            "idle_timeout": config.idle_timeout,
            "max_lifetime": config.max_lifetime,
            "health_check_interval": config.health_check_interval,
            "leak_threshold": config.leak_threshold,
            "max_waiting": config.max_waiting,
            "reconnect_timeout": config.reconnect_timeout,
            "backend_name": label,
            "hooks": self._chain_for(config),
            "describe": config.describe(),
        }

    def _create_replicas(self, db_type: DatabaseType, name: str | None, config: PoolConfig) -> None:
        from dbsystem.core.replicas import ReplicaSet, replica_options

        names = []
        for replica, replica_config in replica_configs(name, config):
            self.create_pool(db_type, replica_config, name=replica)
            names.append(replica)
        replicas = ReplicaSet(self, db_type, name, names, **replica_options(config))
        self._replicas[(db_type, name)] = replicas

    def topology(self, db_type: DatabaseType | None = None, name: str | None = None) -> Topology:
        """What the pool for ``db_type`` (and ``name``) believes about its cluster: the
        primary, the replicas with their lag, which of them get reads now
        (``dbsystem.core.topology``)."""
        from dbsystem.core.topology import current_topology

        chosen = db_type or self._default or self._default_type()
        return current_topology(
            self.backend(chosen, name).config, self._replicas.get((chosen, name))
        )

    def read_your_writes(self, seconds: float = 2.0) -> None:
        """After a write in a context (a thread, a task), send that context's reads to the
        primary for ``seconds``, so that it reads what it wrote (pools with replicas)."""
        from dbsystem.core.replicas import read_your_writes

        read_your_writes(self, seconds)

    def _read(
        self,
        db_type: DatabaseType | None,
        sql: str | None,
        call: Callable[[Any], T],
        context: Any = None,
    ) -> T:
        """``call(conn)`` on a replica when ``sql`` (None: a select builder) only reads;
        ``context`` is the user session's the statements run for (None: the manager's)."""
        chosen = db_type or self._default or self._default_type()
        replicas = self._replicas.get((chosen, None))
        if replicas is None:
            with self._connection_as(context, chosen, None) as conn:
                return call(conn)
        return replicas.read(sql, call, context)

    def _connection_as(
        self,
        context: Any,
        db_type: DatabaseType | None,
        name: str | None,
        timeout: float | None = None,
        label: str | None = None,
    ) -> Any:
        """A lease for ``context``: a user session's (within the user's cap on leases of
        the pool, ``acquire_as``), or None: the application's own (``connection()``)."""
        pool = self.get_pool(db_type, name)
        if context is None:
            return pool.acquire(timeout, label=label)
        return pool.acquire_as(context, timeout, label=label)

    def create_pools(self, specs: Sequence[PoolSpec]) -> None:
        """Create every pool in ``specs`` (from ``load_toml``); one marked default sets the mode."""
        for spec in specs:
            with spec.errors_named():
                self.create_pool(spec.db_type, spec.config, name=spec.name)
            if spec.default:
                self.set_mode(spec.db_type)

    def configure(self, path: str | os.PathLike[str]) -> None:
        """Create the pools a TOML file defines (see ``dbsystem.kernel.config.load_toml``)."""
        self.create_pools(load_toml(path))

    def get_pool(
        self, db_type: DatabaseType | None = None, name: str | None = None
    ) -> ConnectionPool[Any]:
        """The pool for ``db_type`` (default: the mode) and ``name``."""
        if db_type is None:
            db_type = self._default or self._default_type()
        pool = self._pools.get((db_type, name))
        if pool is None:
            existing = ", ".join(_label(t, n) for t, n in self._pools) or "none"
            raise InterfaceError(
                f"no pool for {_label(db_type, name)}; call create_pool() first (pools: {existing})"
            )
        return pool

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Backend:
        """The backend behind a pool (its URL, dialect and capabilities)."""
        return cast("Backend", self.get_pool(db_type, name).connector)

    def mock(self, db_type: DatabaseType | None = None, name: str | None = None) -> MockBackend:
        """The ``MockBackend`` behind a ``mock://`` pool, to script answers and assert calls."""
        from dbsystem.backends.mock import MockBackend

        backend = self.backend(db_type, name)
        if not isinstance(backend, MockBackend):
            raise InterfaceError(f"the pool for {_label(db_type, name)} is not a mock:// pool")
        return backend

    def close_pool(self, db_type: DatabaseType, name: str | None = None) -> None:
        """Close one pool and forget it."""
        with self._lock:
            pool = self._pools.pop((db_type, name), None)
            self._update_default()
        if pool is None:
            raise InterfaceError(f"no pool for {_label(db_type, name)}")
        _close(pool)

    def close_all(self) -> None:
        """Close every pool. The manager stays usable: new pools may be created."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            self._mode = None
            self._default = None
        for pool in pools:
            _close(pool)

    def pools(self) -> dict[tuple[DatabaseType, str | None], ConnectionPool[Any]]:
        """Every open pool, keyed ``(DatabaseType, name)`` (name None for the default)."""
        with self._lock:
            return dict(self._pools)

    def pool_stats(self) -> dict[PoolKey, PoolStats]:
        """A snapshot of every pool: ``{DatabaseType.SQLITE: PoolStats(...), ...}``.

        Named pools are keyed ``(DatabaseType, name)``.
        """
        with self._lock:
            items = list(self._pools.items())
        return {
            (db_type if name is None else (db_type, name)): pool.stats()
            for (db_type, name), pool in items
        }

    # -- default backend -------------------------------------------------------------------

    def set_mode(self, db_type: DatabaseType | str) -> None:
        """Make ``db_type`` the default for calls that name none (``db.fetch_all(...)``)."""
        with self._lock:
            self._mode = DatabaseType.parse(db_type)
            self._update_default()

    @property
    def mode(self) -> DatabaseType | None:
        """The default database type: the one set, or the only pools' type, or None."""
        return self._default

    def _update_default(self) -> None:
        if self._mode is not None:
            self._default = self._mode
            return
        types = {db_type for db_type, _ in self._pools}
        self._default = next(iter(types)) if len(types) == 1 else None

    def _resolve_type(self, db_type: DatabaseType | None) -> DatabaseType:
        """``db_type``, or the default type when None (an error naming why there is none)."""
        return db_type or self._default or self._default_type()

    def _default_type(self) -> DatabaseType:
        mode = self._default
        if mode is None:
            if not self._pools:
                raise InterfaceError("no pool has been created; call create_pool() first")
            raise InterfaceError(
                "several database types have pools; name one, or call set_mode() first"
            )
        return mode

    # -- hooks -----------------------------------------------------------------------------

    def add_hook(self, hook: ExecutionHook) -> ExecutionHook:
        """Install ``hook`` on every pool, present and future; return it."""
        with self._lock:
            self._hooks.append(hook)
            for pool in self._pools.values():
                pool.hooks.add(hook)
        return hook

    @property
    def hooks(self) -> tuple[ExecutionHook, ...]:
        """The hooks installed with ``add_hook``, in order."""
        return tuple(self._hooks)

    def remove_hook(self, hook: ExecutionHook) -> None:
        """Uninstall a hook installed with ``add_hook``."""
        with self._lock:
            self._hooks = [h for h in self._hooks if h is not hook]
            for pool in self._pools.values():
                pool.hooks.remove(hook)

    # -- security --------------------------------------------------------------------------

    def use_access_control(self, acl: Any) -> None:
        """Check every user-bound statement with ``acl`` (an ``AccessControl``)."""
        with self._lock:
            if self._access_control is not None:
                self.remove_hook(self._access_control)
            self._access_control = acl
        self.add_hook(acl)

    def _chain_for(self, config: PoolConfig) -> HookChain:
        chain = HookChain()
        if config.echo:
            chain.add(StatementLogger(logging.INFO, config.log_parameters))
        elif sql_logger.isEnabledFor(logging.DEBUG):
            chain.add(StatementLogger(logging.DEBUG, config.log_parameters))
        for hook in self._hooks:
            chain.add(hook)
        return chain

    # -- lending connections ---------------------------------------------------------------

    @overload
    def connection(  # type: ignore[overload-overlap]
        self, db_type: Literal[DatabaseType.REDIS], **options: Unpack[ConnectionOptions]
    ) -> RedisConnection: ...

    @overload
    def connection(  # type: ignore[overload-overlap]
        self, db_type: Literal[DatabaseType.MONGODB], **options: Unpack[ConnectionOptions]
    ) -> MongoConnection: ...

    @overload
    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> Connection: ...

    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> Connection | RedisConnection | MongoConnection:
        """Borrow a connection: ``with db.connection(DatabaseType.SQLITE) as conn: ...``.

        A ``Connection`` for SQL pools; a ``RedisConnection`` for Redis. Options
        (``ConnectionOptions``): ``name`` (a named pool), ``timeout`` (the wait for a free
        connection), ``label`` (names the borrower in the pool's ``holders()`` and
        ``dbsystem pools``; else its code location does).
        """
        if options:
            name, timeout, label = connection_options(options)
            return self.get_pool(db_type, name).acquire(timeout, label=label)  # type: ignore[return-value]
        return self.get_pool(db_type).acquire()  # type: ignore[return-value]

    def _default_for_bound(self) -> DatabaseType | None:
        return self._default

    def _bound_owner(self) -> Any:
        return self

    def _bound_context(self) -> Any:
        return None  # the application's own blocks

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()

    def __repr__(self) -> str:
        pools = ", ".join(_label(t, n) for t, n in self._pools)
        return f"<{type(self).__name__} pools=[{pools}]>"


def replica_configs(name: str | None, config: PoolConfig) -> list[tuple[str, PoolConfig]]:
    """The pool name and settings of each read replica ``config`` lists."""
    return [
        (f"{name or ''}__replica{number}", config.model_copy(update={"url": url, "replicas": ()}))
        for number, url in enumerate(config.replicas, start=1)
    ]


def _label(db_type: DatabaseType | None, name: str | None) -> str:
    kind = db_type.value if db_type is not None else "the default type"
    return f"{kind} ({name!r})" if name else kind


def _close(pool: ConnectionPool[Any]) -> None:
    pool.close()
    dispose = getattr(pool.connector, "dispose", None)
    if dispose is not None:
        dispose()


def resolve_pool_config(
    db_type: DatabaseType | str, config: PoolConfig | str | None, name: str | None
) -> tuple[DatabaseType, PoolConfig]:
    """The pool's type and settings as ``create_pool`` takes them: a ``PoolConfig``, a URL,
    or None (the environment); the credential applied; the URL checked against the type."""
    db_type = DatabaseType.parse(db_type)
    if db_type is DatabaseType.ORACLE:
        raise NotSupportedError("Oracle is reserved but not supported by this release")
    if config is None:
        config = PoolConfig.from_env(name or db_type.value)
    elif isinstance(config, str):
        config = PoolConfig(url=config)
    elif not isinstance(config, PoolConfig):
        raise ConfigurationError("config must be a PoolConfig, a URL string, or None")
    if config.credential is not None:
        username, password = lookup_credential(config.credential)
        url = config.url.replace(password=password)
        if username is not None:
            url = url.replace(username=username)
        config = config.model_copy(update={"url": url})
    if db_type is DatabaseType.NONE:
        db_type = database_type_for_url(config.url)
    return db_type, _check_url_matches(db_type, config)


def _check_url_matches(db_type: DatabaseType, config: PoolConfig) -> PoolConfig:
    """Refuse a URL for another database type; give a bare ``mock://`` the pool's dialect."""
    url = config.url
    url_type = scheme_database_type(url.scheme)
    if url_type is None:  # mock://DIALECT serves any SQL type; its host must agree
        if not db_type.is_sql:
            raise ConfigurationError(
                f"{url.scheme}:// is a SQL mock; it cannot serve a {db_type.value} pool"
            )
        if url.host and DatabaseType.parse(url.host) is not db_type:
            raise ConfigurationError(f"{url} mocks {url.host}, but the pool is for {db_type.value}")
        if not url.host:
            dialect = _MOCK_DIALECTS.get(db_type, db_type.value)
            return config.model_copy(update={"url": url.replace(host=dialect)})
        return config
    if url_type is not db_type:
        raise ConfigurationError(
            f"a {url.scheme}:// URL connects to {url_type.value}, not {db_type.value}"
        )
    return config


_MOCK_DIALECTS = {DatabaseType.POSTGRES: "postgresql"}
