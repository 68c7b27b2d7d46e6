"""``AsyncDatabaseManager``: the asyncio twin of ``DatabaseManager``, name for name.

    adb = AsyncDatabaseManager.instance()
    await adb.create_pool(DatabaseType.POSTGRES, PoolConfig(url=...))
    async with adb.connection(DatabaseType.POSTGRES) as conn:
        rows = await conn.fetch_all("SELECT ... WHERE id = :id", {"id": 1})
    rows = await adb.query(DatabaseType.POSTGRES).select("*").from_("users").limit(10).execute()
    name = await adb.query(DatabaseType.REDIS).hget("user:1", "name").execute()

SQL pools are ``AsyncConnectionPool``s: PostgreSQL on psycopg's ``AsyncConnection``,
SQLite, MySQL and ``mock://`` on a worker thread per connection. Redis connections run on
``redis.asyncio`` (fakeredis' async client for ``redis+mock://``). MongoDB pools are the
synchronous ones (pymongo's client is thread-safe), driven from a thread per call.
``adb.query()`` gives each kind its builders (``AsyncQueryFactory``, ``AsyncRedisQuery``,
``AsyncMongoQuery``): the synchronous builders' code, whose ``execute()`` is awaited. Hooks
(access control, audit, metrics) are shared with an internal ``DatabaseManager`` and see
every statement of every kind.

The methods are ``DatabaseManager``'s, name for name and parameter for parameter
(``tests/unit/test_parity.py`` keeps it so), awaitable where they do I/O.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar, Unpack, overload

from dbsystem.aio._bridge import SyncBridge
from dbsystem.aio._threaded import ThreadedConnector
from dbsystem.aio.connection import AsyncConnection
from dbsystem.aio.pool import AsyncConnectionPool
from dbsystem.backends import get_backend_class
from dbsystem.core._calls import refuse_mixed_users
from dbsystem.core.configfile import PoolSpec, load_toml
from dbsystem.core.manager import Engine, PoolKey, _label, replica_configs, resolve_pool_config
from dbsystem.core.session import SessionContext, session_context
from dbsystem.errors import ConfigurationError, InterfaceError
from dbsystem.kernel._singleton import ProcessWide
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.hooks import ExecutionHook
from dbsystem.kernel.protocols import (
    BackendInfo,
    ConnectionOptions,
    TransactionOptions,
    connection_options,
    transaction_options,
)
from dbsystem.kernel.rows import rows_as
from dbsystem.kernel.stats import PoolStats
from dbsystem.kernel.types import DatabaseType, ExecuteResult, Params, Row
from dbsystem.query.mongo import AsyncMongoQuery
from dbsystem.query.redis import AsyncRedisQuery
from dbsystem.query.sql import Async, QueryFactory

if TYPE_CHECKING:
    from dbsystem.aio._redis import AsyncRedisConnection
    from dbsystem.aio.replicas import AsyncReplicaSet
    from dbsystem.backends.mock import MockBackend
    from dbsystem.core.topology import Topology

__all__ = ["AsyncDatabaseManager", "AsyncQueryFactory", "AsyncUserSession"]

Key = tuple[DatabaseType, str | None]
T = TypeVar("T")
C = TypeVar("C")

# The connections of open adb.transaction() blocks, per task: (manager id, type, name) -> conn.
_BOUND: ContextVar[dict[tuple[int, DatabaseType, str | None], Any]] = ContextVar(
    "dbsystem_async_bound_connections",
    default={},  # noqa: B039 - never mutated, only replaced
)


@contextmanager
def _bound(key: tuple[int, DatabaseType, str | None], conn: Any) -> Iterator[None]:
    token = _BOUND.set({**_BOUND.get(), key: conn})
    try:
        yield
    finally:
        _BOUND.reset(token)


@asynccontextmanager
async def _transaction_block(
    key: tuple[int, DatabaseType, str | None],
    context: Any,
    borrow: Callable[[], Any],
    isolation: str | None,
    readonly: bool,
) -> AsyncIterator[Any]:
    """``core._calls.bound_block``'s rule, awaited: a nested block of the same user is a
    savepoint, another user's is refused (``refuse_mixed_users``), else a connection that
    already carries ``context`` is borrowed and bound for the block."""
    async with AsyncExitStack() as stack:
        conn: Any = _BOUND.get().get(key)
        if conn is None:
            conn = await stack.enter_async_context(borrow())
            stack.enter_context(_bound(key, conn))
        else:
            refuse_mixed_users(conn, context)
        await stack.enter_async_context(conn.transaction(isolation, readonly))
        yield conn


def _bound_to(key: tuple[int, DatabaseType, str | None], context: Any) -> Any:
    conn = _BOUND.get().get(key)
    return conn if conn is not None and conn._context is context else None


class AsyncQueryFactory(QueryFactory[Async]):
    """``adb.query(type)``: the same builders, whose ``execute()`` (``all()``, ``first()``,
    ``scalar_value()``) return coroutines."""

    __slots__ = ()
    is_async = True


# adb.query(): the builders of a pool's kind of backend (its ``kind``; SQL by default).
_BUILDERS: dict[str, Any] = {"kv": AsyncRedisQuery, "document": AsyncMongoQuery}


def _builders(
    owner: Any, manager: AsyncDatabaseManager, db_type: DatabaseType, name: str | None
) -> AsyncQueryFactory | AsyncRedisQuery | AsyncMongoQuery:
    kind = manager.backend(db_type, name).kind
    found: AsyncQueryFactory | AsyncRedisQuery | AsyncMongoQuery
    found = _BUILDERS.get(kind, AsyncQueryFactory)(owner, db_type, name)
    return found


class _Acquire(Generic[C]):
    """``adb.connection(...)``: ``async with`` it, or ``await`` it for a lease to release
    (``C``: an ``AsyncConnection`` for SQL, an ``AsyncRedisConnection`` for Redis)."""

    __slots__ = ("_context", "_key", "_label", "_lease", "_manager", "_timeout")

    def __init__(
        self,
        manager: AsyncDatabaseManager,
        key: Key,
        timeout: float | None,
        context: Any,
        label: str | None = None,
    ):
        self._manager, self._key, self._timeout = manager, key, timeout
        self._context = context
        self._label = label
        self._lease: Any = None

    async def _get(self) -> Any:  # a C
        pool = self._manager._pools.get(self._key)
        if pool is not None:
            context = self._context
            if context is None:
                return await pool.acquire(self._timeout, label=self._label)
            # A user session's: within the user's cap on leases of this pool.
            return await pool.acquire_as(context, self._timeout, label=self._label)
        manager = self._manager  # Redis, MongoDB
        lease = await manager._acquire_threaded(self._key, self._timeout, self._label)
        getattr(lease, "_lease", lease)._context = self._context
        return lease

    def __await__(self) -> Generator[Any, None, C]:
        return self._get().__await__()

    async def __aenter__(self) -> C:
        self._lease = await self._get()
        lease: C = self._lease
        return lease

    async def __aexit__(self, *exc_info: object) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and not lease.released:
            await lease.release()


class _ThreadedLease:
    """A Redis or MongoDB connection driven from asyncio: each method runs on a thread."""

    def __init__(self, lease: Any) -> None:
        self._lease = lease
        self._released = False

    @property
    def released(self) -> bool:
        """True once the connection went back to its pool."""
        return self._released

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._lease, name)
        if not callable(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(functools.partial(attribute, *args, **kwargs))

        return call

    async def in_thread(self, fn: Callable[[Any], T]) -> T:
        """``fn(connection)`` on a worker thread, with the synchronous connection (the
        MongoDB builders run their operation this way)."""
        return await asyncio.to_thread(fn, self._lease)

    async def release(self) -> None:
        """Return the connection to its pool."""
        self._released = True
        await asyncio.to_thread(self._lease.release)


class _Calls:
    user_session = False
    """The one-statement calls of a manager or a session, each on a connection of its own."""

    connection: Callable[..., Any]  # the manager's, or the session's (with its user)
    _replicas: Mapping[Key, Any]  # the manager's read replicas
    _aread: Callable[..., Awaitable[Any]]  # a read on a replica (the session's: with its user)
    _owner: Callable[[], AsyncDatabaseManager]  # the manager (a session's: its manager's)

    @overload
    def query(  # type: ignore[overload-overlap]
        self, db_type: Literal[DatabaseType.REDIS], *, name: str | None = None
    ) -> AsyncRedisQuery: ...
    @overload
    def query(  # type: ignore[overload-overlap]
        self, db_type: Literal[DatabaseType.MONGODB], *, name: str | None = None
    ) -> AsyncMongoQuery: ...
    @overload
    def query(
        self, db_type: DatabaseType | None = None, *, name: str | None = None
    ) -> AsyncQueryFactory: ...

    def query(
        self, db_type: DatabaseType | None = None, *, name: str | None = None
    ) -> AsyncQueryFactory | AsyncRedisQuery | AsyncMongoQuery:
        """The query builders for a pool (SQL, Redis or MongoDB), run as this manager or
        session; ``execute()`` is awaited."""
        manager = self._owner()
        return _builders(self, manager, db_type or manager._default_type(), name)

    _bound_context: Callable[[], Any]  # whose blocks: None (the application) or a session's

    @asynccontextmanager
    async def transaction(
        self, db_type: DatabaseType | None = None, **options: Unpack[TransactionOptions]
    ) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction, committed when the block exits cleanly.

        Options (``TransactionOptions``): ``name`` (a named pool), ``isolation`` (e.g.
        ``"serializable"``), ``readonly``. Inside the block (in this task)
        ``bound_connection`` returns it, and a nested ``transaction()`` for the same pool
        reuses it as a savepoint. A user session's
        carries its user from the BEGIN on, and is refused inside another user's open
        block on the same pool (as the sync one's).
        """
        name, isolation, readonly = transaction_options(options)
        manager = self._owner()
        key = (id(manager), db_type or manager._default_type(), name)

        def borrow() -> Any:
            return self.connection(key[1], name=name)

        context = self._bound_context()
        async with _transaction_block(key, context, borrow, isolation, readonly) as conn:
            yield conn

    def bound_connection(
        self, db_type: DatabaseType | None = None, name: str | None = None
    ) -> AsyncConnection | None:
        """The connection of this caller's ``transaction()`` block open in this task, or
        None (a block of another user is not this caller's)."""
        manager = self._owner()
        chosen = db_type or manager.mode
        if chosen is None:
            return None
        conn: AsyncConnection | None = _bound_to((id(manager), chosen, name), self._bound_context())
        return conn

    async def execute(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> ExecuteResult:
        """Run one statement, autocommitted."""
        async with self.connection(db_type) as conn:
            result: ExecuteResult = await conn.execute(sql, params)
            return result

    async def executemany(
        self,
        sql: str,
        seq_params: Sequence[Mapping[str, Any]],
        *,
        db_type: DatabaseType | None = None,
    ) -> ExecuteResult:
        """Run one statement per parameter mapping."""
        async with self.connection(db_type) as conn:
            result: ExecuteResult = await conn.executemany(sql, seq_params)
            return result

    @overload
    async def fetch_all(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> list[Row]: ...
    @overload
    async def fetch_all(
        self,
        sql: str,
        params: Params = None,
        *,
        db_type: DatabaseType | None = None,
        row_type: type[T],
    ) -> list[T]: ...

    async def fetch_all(
        self,
        sql: str,
        params: Params = None,
        *,
        db_type: DatabaseType | None = None,
        row_type: type[T] | None = None,
    ) -> list[Row] | list[T]:
        """Every row of a query, as a dict or a ``row_type`` (as ``DatabaseManager.fetch_all``;
        on a replica when the pool has them and it only reads)."""
        rows: list[Row]
        if self._replicas:
            rows = await self._aread(db_type, sql, lambda c: c.fetch_all(sql, params))
        else:
            async with self.connection(db_type) as conn:
                rows = await conn.fetch_all(sql, params)
        return rows if row_type is None else rows_as(rows, row_type)

    async def fetch_one(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> Row | None:
        """The first row of a query, or None (on a replica, as ``fetch_all``)."""
        if self._replicas:
            first: Row | None = await self._aread(db_type, sql, lambda c: c.fetch_one(sql, params))
            return first
        async with self.connection(db_type) as conn:
            row: Row | None = await conn.fetch_one(sql, params)
            return row

    async def fetch_value(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> Any:
        """The first column of the first row, or None (on a replica, as ``fetch_all``)."""
        if self._replicas:
            return await self._aread(db_type, sql, lambda c: c.fetch_value(sql, params))
        async with self.connection(db_type) as conn:
            return await conn.fetch_value(sql, params)

    async def insert_many(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, db_type: DatabaseType | None = None
    ) -> int:
        """Insert many rows at once, all or nothing."""
        async with self.connection(db_type) as conn:
            count: int = await conn.insert_many(table, rows)
            return count


class _AsyncSchema:
    """``create_tables``/``drop_tables`` of the async manager and session: the ORM's
    schema code (``SchemaMixin``), run through ``run_sync``."""

    run_sync: Callable[..., Awaitable[Any]]

    async def create_tables(
        self, entities: Sequence[type[Any]], *, db_type: DatabaseType | None = None
    ) -> None:
        """Create the tables (or collections) of entity classes: the ORM's schema code,
        run through ``run_sync`` (its statements on the async pools)."""
        await self.run_sync(lambda db: db.create_tables(entities, db_type=db_type))

    async def drop_tables(
        self, entities: Sequence[type[Any]], *, db_type: DatabaseType | None = None
    ) -> None:
        """Drop the tables (or collections) of entity classes, if they exist."""
        await self.run_sync(lambda db: db.drop_tables(entities, db_type=db_type))


class AsyncDatabaseManager(_AsyncSchema, _Calls, ProcessWide):
    """One async pool per database type (and name), builders bound to them, shared hooks."""

    def __init__(self) -> None:
        self.sync = Engine()
        """The synchronous manager underneath: Redis and MongoDB pools, hooks, access control."""
        self._pools: dict[Key, AsyncConnectionPool[Any]] = {}
        self._redis_clients: dict[Key, Any] = {}  # redis.asyncio clients, made on first use
        self._redis_pipelines: dict[Key, Any] = {}  # their AutoPipelines (pipelining=True)
        self._mode: DatabaseType | None = None
        self._replicas: dict[Key, AsyncReplicaSet] = {}

    @classmethod
    def handle(cls) -> Self:
        """Alias of ``instance()``."""
        return cls.instance()

    def _owner(self) -> AsyncDatabaseManager:
        return self

    # -- pools -----------------------------------------------------------------------------

    async def create_pool(
        self,
        db_type: DatabaseType | str,
        config: PoolConfig | str | None = None,
        *,
        name: str | None = None,
    ) -> Any:
        """Create and open the pool for ``db_type`` (and ``name``); the same arguments as
        ``DatabaseManager.create_pool``."""
        db_type, config = resolve_pool_config(db_type, config, name)
        key = (db_type, name)
        if key in self._pools or key in self.sync.pools():
            raise ConfigurationError(f"a pool for {db_type.value} ({name}) already exists")
        backend = get_backend_class(config.url.scheme)(config.url, config)
        if backend.kind != "sql":  # Redis, MongoDB
            backend.dispose()
            return await asyncio.to_thread(self.sync.create_pool, db_type, config, name=name)
        connector: Any
        if backend.name == "postgresql":
            from dbsystem.aio._postgres import AsyncPostgresConnector

            connector = AsyncPostgresConnector(backend)
        else:
            connector = ThreadedConnector(backend)
        label = getattr(backend, "label", backend.name)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            connector,
            lease_class=AsyncConnection,
            **self.sync._pool_settings(db_type, name, config, label),
        )
        await pool.open()
        self._pools[key] = pool
        if config.replicas:
            await self._create_replicas(db_type, name, config)
        if config.patroni:
            from dbsystem.aio.replicas import AsyncPatroniWatcher

            watcher = AsyncPatroniWatcher(self, db_type, name, config)
            await watcher.start()
            self._replicas[key] = watcher.replicas
        return pool

    async def _create_replicas(
        self, db_type: DatabaseType, name: str | None, config: PoolConfig
    ) -> None:
        from dbsystem.aio.replicas import AsyncReplicaSet
        from dbsystem.core.replicas import replica_options

        names = []
        for replica, replica_config in replica_configs(name, config):
            await self.create_pool(db_type, replica_config, name=replica)
            names.append(replica)
        owner: Any = self  # the async manager has the calls the replica set makes
        replicas = AsyncReplicaSet(owner, db_type, name, names, **replica_options(config))
        self._replicas[(db_type, name)] = replicas

    def topology(self, db_type: DatabaseType | None = None, name: str | None = None) -> Topology:
        """What the pool believes about its cluster, as ``DatabaseManager.topology``."""
        from dbsystem.core.topology import current_topology

        chosen = db_type or self._default_type()
        replicas = self._replicas.get((chosen, name))
        return current_topology(self.backend(chosen, name).config, replicas)

    def read_your_writes(self, seconds: float = 2.0) -> None:
        """After a write in a task, send that task's reads to the primary for ``seconds``
        (pools with replicas), as ``DatabaseManager.read_your_writes``."""
        from dbsystem.core.replicas import read_your_writes

        read_your_writes(self, seconds)

    async def _aread(
        self,
        db_type: DatabaseType | None,
        sql: str | None,
        call: Callable[[Any], Awaitable[T]],
        context: Any = None,
    ) -> T:
        """``await call(conn)`` on a replica when ``sql`` (None: a select builder) only
        reads; ``context`` is the user session's the statements run for."""
        chosen = db_type or self._default_type()
        replicas = self._replicas.get((chosen, None))
        if replicas is None:
            async with _Acquire[Any](self, (chosen, None), None, context) as conn:
                return await call(conn)
        return await replicas.aread(sql, call, context)

    async def create_pools(self, specs: Sequence[PoolSpec]) -> None:
        """Create every pool in ``specs`` (from ``load_toml``); one marked default sets the mode."""
        for spec in specs:
            with spec.errors_named():
                await self.create_pool(spec.db_type, spec.config, name=spec.name)
            if spec.default:
                self.set_mode(spec.db_type)

    async def configure(self, path: str | os.PathLike[str]) -> None:
        """Create the pools a TOML file defines (see ``dbsystem.core.configfile.load_toml``)."""
        await self.create_pools(await asyncio.to_thread(load_toml, path))

    def get_pool(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The pool for ``db_type`` (default: the mode) and ``name``: an
        ``AsyncConnectionPool`` for SQL, the synchronous driver pool for Redis and MongoDB."""
        key = (db_type or self._default_type(), name)
        pool = self.pools().get(key)
        if pool is None:
            existing = ", ".join(_label(t, n) for t, n in self.pools()) or "none"
            raise InterfaceError(
                f"no pool for {_label(*key)}; call create_pool() first (pools: {existing})"
            )
        return pool

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The backend behind a pool (its URL, dialect and capabilities)."""
        pool = self.get_pool(db_type, name)
        return pool.backend if isinstance(pool, AsyncConnectionPool) else pool.connector

    def mock(self, db_type: DatabaseType | None = None, name: str | None = None) -> MockBackend:
        """The ``MockBackend`` behind a ``mock://`` pool, to script answers and assert calls."""
        return Engine.mock(self, db_type, name)  # type: ignore[arg-type]  # (the same code)

    def pools(self) -> dict[Key, Any]:
        """Every open pool, async SQL pools and Redis/MongoDB pools alike."""
        return {**self.sync.pools(), **self._pools}

    def pool_stats(self) -> dict[PoolKey, PoolStats]:
        """A snapshot of every pool, keyed as ``DatabaseManager.pool_stats`` keys them."""
        return {
            (db_type if name is None else (db_type, name)): pool.stats()
            for (db_type, name), pool in self.pools().items()
        }

    def set_mode(self, db_type: DatabaseType | str) -> None:
        """Make ``db_type`` the default for calls that name none."""
        self._mode = DatabaseType.parse(db_type)

    @property
    def mode(self) -> DatabaseType | None:
        """The default type: the one set, or the only pools' type, or None."""
        if self._mode is not None:
            return self._mode
        # Read on every call that names no type: no copy of the pools unless there are
        # Redis/MongoDB (synchronous engine) pools to count as well.
        types = {db_type for db_type, _ in self._pools}
        if self.sync._pools:
            types.update(db_type for db_type, _ in self.sync.pools())
        return next(iter(types)) if len(types) == 1 else None

    async def close_pool(self, db_type: DatabaseType, name: str | None = None) -> None:
        """Close one pool and forget it."""
        key = (db_type, name)
        pool = self._pools.pop(key, None)
        if pool is not None:
            await _close(pool)
            return
        client = self._redis_clients.pop(key, None)
        self._redis_pipelines.pop(key, None)
        if client is not None:
            await _close_redis(client)
        await asyncio.to_thread(self.sync.close_pool, db_type, name)

    async def close_all(self) -> None:
        """Close every pool. The manager stays usable: new pools may be created."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await _close(pool)
        clients, self._redis_clients = list(self._redis_clients.values()), {}
        self._redis_pipelines = {}
        for client in clients:
            await _close_redis(client)
        await asyncio.to_thread(self.sync.close_all)

    async def __aenter__(self) -> AsyncDatabaseManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_all()

    # -- connections -----------------------------------------------------------------------

    @overload
    def connection(  # type: ignore[overload-overlap]
        self, db_type: Literal[DatabaseType.REDIS], **options: Unpack[ConnectionOptions]
    ) -> _Acquire[AsyncRedisConnection]: ...
    @overload
    def connection(
        self, db_type: Literal[DatabaseType.MONGODB], **options: Unpack[ConnectionOptions]
    ) -> _Acquire[Any]: ...
    @overload
    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> _Acquire[AsyncConnection]: ...

    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> _Acquire[Any]:
        """``async with adb.connection(t) as conn`` (or ``conn = await adb.connection(t)``
        and ``await conn.release()``). Options (``ConnectionOptions``): ``name``,
        ``timeout``, ``label`` (names the borrower in the pool's ``holders()``; else its
        code location does)."""
        if options:
            name, timeout, label = connection_options(options)
            return _Acquire(self, (db_type or self._default_type(), name), timeout, None, label)
        return _Acquire(self, (db_type or self._default_type(), None), None, None)

    def _connection_as(self, context: Any, db_type: DatabaseType, name: str | None) -> Any:
        """``connection()`` for ``context`` (a user session's, or None: the application's)."""
        return _Acquire(self, (db_type, name), None, context)

    def _default_type(self) -> DatabaseType:
        mode = self.mode
        if mode is None:
            raise InterfaceError(
                "several database types have pools; name one, or call set_mode() first"
                if self.pools()
                else "no pool has been created; call create_pool() first"
            )
        return mode

    async def _acquire_threaded(self, key: Key, timeout: float | None, label: str | None) -> Any:
        sync_pool = self.sync.get_pool(*key)
        if self.sync.backend(*key).kind == "kv":  # Redis: redis.asyncio
            from dbsystem.aio._redis import AsyncRedisConnection, async_redis_client, autopipeline

            client = self._redis_clients.get(key)
            if client is None:
                client = self._redis_clients[key] = async_redis_client(sync_pool)
                self._redis_pipelines[key] = autopipeline(sync_pool, client)
            return AsyncRedisConnection(sync_pool, client, self._redis_pipelines.get(key))
        return _ThreadedLease(await asyncio.to_thread(sync_pool.acquire, timeout, label=label))

    def _bound_context(self) -> Any:
        return None  # the application's own blocks

    async def health(self, *, check: bool = False) -> dict[str, Any]:
        """Each pool's health (``BackendHealth``), keyed ``"postgres"``, ``"redis/cache"``...:
        every pool checked now (``check`` is accepted for ``DatabaseManager.health``'s
        signature; an async manager has no background health monitor to read from)."""
        from dbsystem.monitoring.health import amanager_health

        return dict(await amanager_health(self))

    async def run_sync(self, fn: Callable[[Any], T]) -> T:
        """Run synchronous code that takes a manager (the ORM, migrations) on a worker
        thread, its statements on this manager's async pools, the loop never blocked:
        ``user = await adb.run_sync(lambda db: User.get(db, 1))``."""
        bridge = SyncBridge(self, asyncio.get_running_loop(), None)
        return await asyncio.to_thread(fn, bridge)

    # -- hooks and security ----------------------------------------------------------------

    def add_hook(self, hook: ExecutionHook) -> ExecutionHook:
        """Install ``hook`` on every pool, present and future (sync ones included)."""
        self.sync.add_hook(hook)
        for pool in self._pools.values():
            pool.hooks.add(hook)
        return hook

    def remove_hook(self, hook: ExecutionHook) -> None:
        """Uninstall a hook installed with ``add_hook``."""
        self.sync.remove_hook(hook)
        for pool in self._pools.values():
            pool.hooks.remove(hook)

    @property
    def hooks(self) -> tuple[ExecutionHook, ...]:
        """The hooks installed with ``add_hook``, in order."""
        return self.sync.hooks

    def use_access_control(self, acl: Any) -> None:
        """Check every user-bound statement with ``acl`` (an ``AccessControl``)."""
        previous = self.sync._access_control
        if previous is not None:
            self.remove_hook(previous)
        self.sync._access_control = acl
        self.add_hook(acl)

    def for_user(
        self,
        user: str,
        *,
        session_id: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        max_connections: int | None = None,
    ) -> AsyncUserSession:
        """A session whose every statement is checked for ``user`` and audited;
        ``max_connections`` caps the connections of one pool it holds at once (its roles'
        ``Role(max_connections=...)`` cap it too: the smallest applies)."""
        if self.sync._access_control is None:
            from dbsystem.security.rbac import AccessControl

            self.use_access_control(AccessControl.instance())
        return AsyncUserSession(self, session_context(user, session_id, attrs, max_connections))


class AsyncUserSession(_AsyncSchema, _Calls):
    """``adb.for_user(...)``: the manager's API, each statement carrying the user."""

    user_session = True

    def __init__(self, manager: AsyncDatabaseManager, context: SessionContext) -> None:
        self._manager = manager  # private: the application's manager runs unchecked
        self.context = context

    def _owner(self) -> AsyncDatabaseManager:
        return self._manager

    @overload
    def connection(  # type: ignore[overload-overlap]
        self, db_type: Literal[DatabaseType.REDIS], **options: Unpack[ConnectionOptions]
    ) -> _Acquire[AsyncRedisConnection]: ...
    @overload
    def connection(
        self, db_type: Literal[DatabaseType.MONGODB], **options: Unpack[ConnectionOptions]
    ) -> _Acquire[Any]: ...
    @overload
    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> _Acquire[AsyncConnection]: ...

    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> _Acquire[Any]:
        """A connection whose statements carry the session's user (options: the manager's
        ``connection()``'s)."""
        manager = self._manager
        name, timeout, label = connection_options(options)
        key = (db_type or manager._default_type(), name)
        return _Acquire(manager, key, timeout, self.context, label)

    @property
    def mode(self) -> DatabaseType | None:
        """The manager's default database type."""
        return self._manager.mode

    def _bound_context(self) -> Any:
        return self.context

    @property
    def _replicas(self) -> Mapping[Key, Any]:  # type: ignore[override]
        return self._manager._replicas

    async def _aread(
        self, db_type: DatabaseType | None, sql: str | None, call: Callable[[Any], Awaitable[T]]
    ) -> T:
        """A read on a replica (see ``AsyncDatabaseManager._aread``), as this user."""
        return await self._manager._aread(db_type, sql, call, self.context)

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> BackendInfo:
        """What the session may know of a pool's backend (``BackendInfo``), as the sync
        session's ``backend()``."""
        return BackendInfo.of(self._manager.backend(db_type, name))

    async def run_sync(self, fn: Callable[[Any], T]) -> T:
        """``AsyncDatabaseManager.run_sync`` as this session's user (the ORM, checked)."""
        bridge = SyncBridge(self, asyncio.get_running_loop(), self.context)
        return await asyncio.to_thread(fn, bridge)

    def __repr__(self) -> str:
        return f"<AsyncUserSession user={self.context.user!r} session={self.context.session_id!r}>"


async def _close(pool: AsyncConnectionPool[Any]) -> None:
    await pool.close()
    if pool.backend is not None:
        pool.backend.dispose()


async def _close_redis(client: Any) -> None:
    await client.aclose()
    await client.connection_pool.disconnect()  # (a pool given to a client stays open)
    for sentinel in getattr(client, "dbsystem_sentinels", ()):  # redis+sentinel://
        await sentinel.aclose()
