"""Redis on redis-py (hiredis when installed), and its mock on fakeredis (``redis+mock://``).

Pooling is redis-py's own ``BlockingConnectionPool`` with the pool settings mapped onto it
(``max_size`` -> ``max_connections``, ``acquire_timeout`` -> ``timeout``); dbsystem does not
pool twice. A thin subclass counts what ``PoolStats`` reports. ``min_size`` connections are
opened up front, so a wrong URL fails at ``create_pool``.

Every command goes through the pool's hook chain as a ``Statement`` (backend ``redis``,
operation ``command`` or ``pipeline``, the command words as text, the keys as resources, the
action from the command's kind), the same interception point the SQL backends use.

``redis+mock://`` runs the same code with fakeredis connections against an in-process fake
server per pool. Commands fakeredis does not implement raise ``NotSupportedError``.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, ClassVar, Self, cast

import redis
import redis.exceptions as redis_errors

from dbsystem.backends._redis_access import (
    CONNECTION,
    REFUSED,
    command_accesses,
    subscribe_accesses,
)
from dbsystem.backends._translate import translate
from dbsystem.backends.base import DriverBackend, check_options, driver_refused
from dbsystem.errors import (
    ConfigurationError,
    ConnectionFailed,
    CrossSlotError,
    DataError,
    DBSystemError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    PermissionDenied,
    PoolTimeout,
    ProgrammingError,
)
from dbsystem.kernel.config import PoolConfig, TLSConfig
from dbsystem.kernel.hooks import Description
from dbsystem.kernel.protocols import BackendKind
from dbsystem.kernel.url import DatabaseURL

__all__ = [
    "RedisBackend",
    "RedisConnection",
    "Subscription",
    "changes_session",
    "describe_commands",
    "describe_scan",
    "describe_subscription",
    "reset_commands",
    "resetting",
]

# Commands that change the state of the connection they run on (its database, name, client
# tracking, an open MULTI, watched keys, the protocol, the authenticated user, reply mode,
# subscriptions, replication roles): a connection that ran one is reset before redis-py's
# pool lends it again (``RESET``, then the pool's own AUTH, SELECT and client name).
_SESSION_COMMANDS = frozenset(
    "SELECT CLIENT MULTI WATCH HELLO AUTH RESET READONLY READWRITE ASKING SUBSCRIBE "
    "PSUBSCRIBE SSUBSCRIBE MONITOR SYNC PSYNC REPLCONF".split()
)
# True while a call that ran such a command is on its way: the pool's release resets.
_SESSION_CHANGED: ContextVar[bool] = ContextVar("dbsystem_redis_session_changed", default=False)


# CLIENT subcommands that leave the calling connection as it was (they read, or act on
# the server or on other clients); any other CLIENT subcommand marks the connection.
_CLIENT_STATELESS = frozenset(
    "PAUSE UNPAUSE KILL LIST INFO ID GETNAME TRACKINGINFO GETREDIR UNBLOCK HELP".split()
)


def _word(value: Any) -> str:
    return (value.decode() if isinstance(value, bytes) else str(value)).upper()


def _changes_session(args: Sequence[Any]) -> bool:
    if not args:
        return False
    name = _word(args[0])
    if name not in _SESSION_COMMANDS:
        return False
    if name == "CLIENT" and len(args) > 1:
        return _word(args[1]) not in _CLIENT_STATELESS
    return True


def changes_session(commands: Sequence[Sequence[Any]]) -> bool:
    """True if one of ``commands`` changes the state of its connection."""
    return any(_changes_session(command) for command in commands)


def resetting(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` run so that the driver connection it used is reset when it goes back to
    redis-py's pool (the sync and the async client's pools both read the mark)."""

    def marked() -> Any:
        token = _SESSION_CHANGED.set(True)
        try:
            return call()
        finally:
            _SESSION_CHANGED.reset(token)

    return marked


def reset_commands(connection: Any) -> list[tuple[Any, ...]] | None:
    """The commands that reset a redis-py connection and put the pool's settings back:
    ``RESET`` (ends MULTI, WATCH, client tracking, subscriptions, reply modes; back to
    database 0, RESP2, the default user), then the connection's own protocol, user and
    name (``HELLO``, or ``AUTH`` and ``CLIENT SETNAME`` on RESP2) and database (``SELECT``).
    None when that cannot restore it (a credential provider): the connection is then
    closed, and the next use opens a fresh one."""
    if getattr(connection, "credential_provider", None) is not None:
        return None
    protocol = str(getattr(connection, "protocol", 2) or 2)
    password = getattr(connection, "password", None)
    username = getattr(connection, "username", None)
    name = getattr(connection, "client_name", None)
    # RESET leaves CLIENT NO-EVICT on (Redis 7.0); a server without it answers an error,
    # and the connection is closed instead.
    commands: list[tuple[Any, ...]] = [("RESET",), ("CLIENT", "NO-EVICT", "OFF")]
    if protocol != "2":
        hello: tuple[Any, ...] = ("HELLO", protocol)
        if password:
            hello += ("AUTH", username or "default", password)
        if name:
            hello += ("SETNAME", name)
        commands.append(hello)
    else:
        if password:
            commands.append(("AUTH", username, password) if username else ("AUTH", password))
        if name:
            commands.append(("CLIENT", "SETNAME", name))
    if getattr(connection, "db", 0):
        commands.append(("SELECT", connection.db))
    return commands


def _reset_connection(connection: Any) -> None:
    commands = reset_commands(connection)
    if commands is None:
        connection.disconnect()
        return
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        for _ in commands:
            connection.read_response()
    except Exception:  # whatever went wrong, a closed connection reopens clean
        connection.disconnect()


_OPTIONS = frozenset({"decode_responses", "socket_timeout", "client_name"})


# Actions from the least to the most that one command can need, for its ``action``.
_RANK = {
    CONNECTION: 0,
    "select": 1,
    "insert": 2,
    "update": 3,
    "delete": 4,
    "execute": 5,
    "admin": 6,
    REFUSED: 7,
}


def classify_command(args: Sequence[Any]) -> tuple[str, tuple[str, ...]]:
    """The action and keys (channels, patterns) of one command: ``("GET", "user:1")`` ->
    ``("select", ("user:1",))``; the action is the most privileged the command needs
    (``command_accesses`` has each key's own)."""
    accesses = command_accesses(args)
    return _action(accesses), _resources(accesses)


def _error(
    exc: BaseException,
    backend: str,
    command: str | None,
    secrets: Sequence[str],
    commands: Sequence[Sequence[Any]] = (),
) -> DBSystemError:
    message = str(exc)
    override: type[DBSystemError]
    if _is_cross_slot(exc):
        return _cross_slot_error(exc, backend, command, secrets, commands)
    if isinstance(exc, redis_errors.ConnectionError) and "No connection available" in message:
        override = PoolTimeout
    elif isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
        override = ConnectionFailed
    elif isinstance(exc, redis_errors.RedisClusterException) and "cannot be connected" in message:
        override = ConnectionFailed  # no seed node of a cluster answered
    elif isinstance(exc, redis_errors.ResponseError):
        if backend.startswith("mock") and "unknown command" in message.lower():
            override = NotSupportedError
        else:
            override = ProgrammingError
    elif isinstance(exc, redis_errors.DataError):
        override = DataError
    else:
        override = OperationalError
    return translate(exc, backend=backend, statement=command, secrets=secrets, override=override)


def _is_cross_slot(exc: BaseException) -> bool:
    # redis-py refuses such commands before sending them; the server says CROSSSLOT.
    message = str(exc)
    return isinstance(exc, redis_errors.CrossSlotTransactionError) or (
        "CROSSSLOT" in message or "must map to the same key slot" in message
    )


def _cross_slot_error(
    exc: BaseException,
    backend: str,
    command: str | None,
    secrets: Sequence[str],
    commands: Sequence[Sequence[Any]],
) -> DBSystemError:
    from redis.crc import key_slot

    keys = dict.fromkeys(k for c in commands for k in classify_command(c)[1] if k != "*")
    slots = ", ".join(f"{k!r} (slot {key_slot(k.encode())})" for k in keys)
    return translate(
        exc,
        backend=backend,
        statement=command,
        secrets=secrets,
        override=CrossSlotError,
        message=(
            f"keys in different hash slots of the Redis Cluster: {slots or 'see the command'}. "
            "A multi-key command or a MULTI/EXEC transaction must keep its keys in one slot: "
            "give them a common hash tag, such as '{user:1}:profile' and '{user:1}:orders' "
            "(only the part in braces is hashed)"
        ),
    )


def describe_commands(commands: Sequence[Sequence[Any]], *, watch: bool = False) -> Description:
    """What Redis commands touch, as the engine's ``Statement`` tells the hooks (the sync
    and the async connection's): every key, channel and pattern of every command, each
    with its own action (``dbsystem.backends._redis_access``).

    Each command is checked for itself: a keyless admin command must not borrow the keys
    of its neighbours in a pipeline.
    """
    if len(commands) == 1:  # the common case, without the merging below
        found = command_accesses(commands[0], watch=watch)
        if len(found) == 1:
            action, resource = found[0]
            keys = () if action == REFUSED else (resource,)
            return Description(_text(commands), action, keys, found)
        return Description(_text(commands), _action(found), _resources(found), found)
    actions: set[str] = set()
    accesses: list[tuple[str, str]] = []
    for command in commands:
        found = command_accesses(command, watch=watch)
        actions.add(_action(found))
        accesses.extend(found)
    return Description(
        text=_text(commands),
        action=actions.pop() if len(actions) == 1 else "multiple",
        resources=_resources(accesses),
        accesses=tuple(dict.fromkeys(accesses)),
    )


def _action(accesses: Sequence[tuple[str, str]]) -> str:
    """The most privileged action of one command's accesses (its ``Statement.action``)."""
    return max((a for a, _ in accesses), key=_RANK.__getitem__, default=CONNECTION)


def _resources(accesses: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r for a, r in accesses if a != REFUSED))


def describe_scan(match: str | None) -> Description:
    """What a SCAN over ``match`` touches (the sync and the async connection's): a read of
    every key the pattern can name (``"*"`` without one)."""
    return describe_commands([["SCAN", "0"] + (["MATCH", match] if match else [])])


def _text(commands: Sequence[Sequence[Any]]) -> str:
    # The command words, for hooks and error messages (built only when one needs them).
    return "; ".join(" ".join(str(a) for a in command) for command in commands)


class _FairGate:
    """At most ``slots`` holders; waiters are served first come, first served.

    redis-py's blocking pool waits on a ``LifoQueue``, where a newly arriving thread can
    take a connection ahead of one that has waited long: under constant contention (50
    threads on 10 connections) a waiter starved past its timeout (measured: 40 timeouts in
    60 s). Here a freed slot is handed to the oldest waiter directly.
    """

    def __init__(self, slots: int) -> None:
        self._lock = threading.Lock()
        self._free = slots
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float | None) -> bool:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return True
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:  # handed a slot just as the wait timed out: keep it
                return True
        return False

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()  # the slot passes on, never freed between
            else:
                self._free += 1


class _CountingPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, fair to waiters, counting what ``PoolStats`` reports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = _FairGate(self.max_connections)
        self._stats_lock = threading.Lock()
        self.n_active = 0
        self.n_acquired = 0
        self.n_timeouts = 0
        self.n_created = 0
        self.wait_total = 0.0
        self.wait_max = 0.0

    def make_connection(self) -> Any:
        connection = super().make_connection()
        with self._stats_lock:
            self.n_created += 1
        return connection

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        if not self._gate.acquire(self.timeout):
            with self._stats_lock:
                self.n_timeouts += 1
            raise redis_errors.ConnectionError("No connection available.")
        try:
            connection = super().get_connection(*args, **kwargs)
        except BaseException as exc:
            self._gate.release()
            if isinstance(exc, redis_errors.ConnectionError) and "No connection available" in str(
                exc
            ):
                with self._stats_lock:
                    self.n_timeouts += 1
            raise
        waited = time.monotonic() - start
        with self._stats_lock:
            self.n_active += 1
            self.n_acquired += 1
            self.wait_total += waited
            self.wait_max = max(self.wait_max, waited)
        return connection

    def release(self, connection: Any) -> None:
        if _SESSION_CHANGED.get():
            _reset_connection(connection)
        super().release(connection)
        self._gate.release()
        with self._stats_lock:
            self.n_active = max(0, self.n_active - 1)

    @property
    def n_open(self) -> int:
        return len(getattr(self, "_connections", ()))


def _tls_kwargs(tls: TLSConfig | None, scheme: str) -> dict[str, Any]:
    if tls is None:
        return {"ssl": True} if scheme == "rediss" else {}
    if tls.mode == "disable":
        if scheme == "rediss":
            raise ConfigurationError("rediss:// with tls mode 'disable' contradicts itself")
        return {}
    if tls.mode == "prefer":
        raise ConfigurationError(
            "Redis cannot negotiate TLS: use tls mode 'disable' or a requiring mode",
            backend="redis",
        )
    kwargs: dict[str, Any] = {
        "ssl": True,
        "ssl_cert_reqs": ssl.CERT_NONE if tls.mode == "require" else ssl.CERT_REQUIRED,
        "ssl_check_hostname": tls.mode == "verify-full",
    }
    if tls.ca_file is not None:
        kwargs["ssl_ca_certs"] = str(tls.ca_file)
    if tls.cert_file is not None and tls.key_file is not None:
        kwargs["ssl_certfile"] = str(tls.cert_file)
        kwargs["ssl_keyfile"] = str(tls.key_file)
    return kwargs


def _client_kwargs(url: DatabaseURL, config: PoolConfig, label: str) -> dict[str, Any]:
    """redis-py's client settings from a URL and pool config (a server's or a cluster's)."""
    check_options(config.options, _OPTIONS, "Redis", label)
    try:
        database = int(url.database or 0)
    except ValueError:
        raise ConfigurationError(
            f"the Redis database must be a number, not {url.database!r}", backend=label
        ) from None
    decode = config.options.get("decode_responses", "true").lower() not in ("false", "0")
    kwargs: dict[str, Any] = {
        "db": database,
        "decode_responses": decode,
        "socket_connect_timeout": config.connect_timeout,
        "max_connections": config.max_size,
        "timeout": config.acquire_timeout,
    }
    if "socket_timeout" in config.options:
        kwargs["socket_timeout"] = float(config.options["socket_timeout"])
    elif config.statement_timeout is not None:
        kwargs["socket_timeout"] = config.statement_timeout
    if "client_name" in config.options:
        kwargs["client_name"] = config.options["client_name"]
    return kwargs


class RedisBackend(DriverBackend):
    """Builds the redis-py pool for a ``redis://``, ``rediss://`` or ``redis+mock://`` URL."""

    name: ClassVar[str] = "redis"
    kind: ClassVar[BackendKind] = "kv"

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)
        kwargs = _client_kwargs(url, config, self.label)
        if self.mock:
            import fakeredis

            kwargs["connection_class"] = getattr(
                fakeredis, "FakeRedisConnection", getattr(fakeredis, "FakeConnection", None)
            )
            kwargs["server"] = fakeredis.FakeServer()
        else:
            kwargs.update(
                host=url.host or "localhost",
                port=url.port or 6379,
                username=url.username,
                password=url.password,
            )
            kwargs.update(_tls_kwargs(config.tls, url.scheme))
            if kwargs.get("ssl"):
                kwargs["connection_class"] = redis.SSLConnection
            kwargs.pop("ssl", None)
        self.pool = _CountingPool(**kwargs)
        self.client = redis.Redis(connection_pool=self.pool)

    def open(self, min_size: int) -> None:
        """Open ``min_size`` connections now, so that a wrong URL fails at ``create_pool``."""
        _open_connections(self.pool, min_size, self)

    def handle(self, pool: Any) -> RedisConnection:
        """A connection handle lent by the engine's ``DriverPool``."""
        return RedisConnection(pool)

    def pool_counters(self) -> dict[str, Any]:
        """redis-py's pool, counted as ``PoolStats`` reports it."""
        return _counters([self.pool])

    def dispose(self) -> None:
        """Close every connection."""
        self.pool.disconnect()


def _open_connections(pool: _CountingPool, count: int, backend: Any) -> None:
    opened = []
    try:
        for _ in range(count):
            opened.append(pool.get_connection())
    except redis_errors.RedisError as exc:
        raise _error(exc, backend.label, None, backend.secrets) from exc
    finally:
        for connection in opened:
            pool.release(connection)


def _counters(pools: Sequence[_CountingPool]) -> dict[str, Any]:
    """The counters of one or more (a cluster's nodes) redis-py pools, summed."""
    counters = dict.fromkeys(("total", "active", "acquired", "timeouts", "created"), 0)
    wait_total = wait_max = 0.0
    for pool in pools:
        with pool._stats_lock:
            counters["total"] += pool.n_open
            counters["active"] += pool.n_active
            counters["acquired"] += pool.n_acquired
            counters["timeouts"] += pool.n_timeouts
            counters["created"] += pool.n_created
            wait_total += pool.wait_total
            wait_max = max(wait_max, pool.wait_max)
    return {**counters, "wait_total": wait_total, "wait_max": wait_max}


class RedisConnection:
    """Runs Redis commands through the engine's pool (the hooks) and error translation."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._backend = pool.connector
        self._client: redis.Redis = pool.connector.client
        self._context: Any = None

    @property
    def client(self) -> redis.Redis:
        """The redis-py client underneath, for what dbsystem does not wrap (what runs on it
        skips the hooks: refused on a connection lent to a user session)."""
        if self._context is not None:
            raise driver_refused(self._context, "the Redis client", self._pool.backend_name)
        return self._client

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def release(self) -> None:
        """Nothing to return (the driver returns its connection after each command)."""

    def _run(
        self, operation: str, commands: Sequence[Sequence[Any]], call: Callable[[], Any]
    ) -> Any:
        try:
            describe = lambda: describe_commands(commands)  # noqa: E731 - only when hooked
            return self._pool.run(self._context, operation, describe, call)
        except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
            raise _error(
                exc, self._pool.backend_name, _text(commands), self._backend.secrets, commands
            ) from exc

    def execute(self, *args: Any) -> Any:
        """Run one command: ``conn.execute("HSET", "user:1", "name", "ada")``."""
        if not args:
            raise InterfaceError("execute() needs a command")
        return self._command(args, {})

    def pipeline(
        self, commands: Sequence[Sequence[Any]], *, transaction: bool = False
    ) -> list[Any]:
        """Run several commands in one round trip; ``transaction=True`` wraps them in
        MULTI/EXEC (all or nothing). Returns one result per command."""
        return self._commands([(tuple(c), {}) for c in commands], transaction=transaction)

    def _command(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        call = lambda: self._client.execute_command(*args, **options)  # noqa: E731
        if _changes_session(args):
            call = resetting(call)
        return self._run("command", [args], call)

    def _commands(
        self, commands: Sequence[tuple[Sequence[Any], dict[str, Any]]], *, transaction: bool
    ) -> list[Any]:
        def call() -> list[Any]:
            pipe = self._client.pipeline(transaction=transaction)
            for args, options in commands:
                pipe.execute_command(*args, **options)
            return list(pipe.execute())

        words = [args for args, _ in commands]
        result: list[Any] = self._run(
            "pipeline", words, resetting(call) if changes_session(words) else call
        )
        return result

    def optimistic(self, func: Callable[[Any], Any], *watch: str, retries: int = 10) -> Any:
        """Optimistic locking: WATCH ``watch`` keys, call ``func(pipe)`` (read with ``pipe``,
        then ``pipe.multi()`` and queue writes); retried when a watched key changed.

        Every command on ``pipe`` takes the one path through the hooks: ``WATCH`` and the
        reads before ``multi()`` one by one, the queued commands as one pipeline at
        ``EXEC``; so on a user session each is checked (every key with its own action)
        and audited, as ``execute`` and ``pipeline`` are.
        """
        cluster = getattr(self._backend, "cluster", False)
        if cluster and self._context is not None:
            denied = PermissionDenied(
                f"user {self._context.user!r}: optimistic() on a Redis Cluster runs outside "
                "the checks; use the builder's multi() instead",
                backend=self._pool.backend_name,
            )
            self._pool.refuse(
                self._context, "transaction", lambda: describe_commands([("WATCH", *watch)]), denied
            )
        try:
            for _ in range(retries):
                with self._client.pipeline(transaction=True) as pipe:  # a cluster's too
                    if not cluster:
                        pipe.__class__ = _CheckedPipeline
                        cast(_CheckedPipeline, pipe)._dbsystem_owner = self
                    try:
                        pipe.watch(*watch)
                        result = func(pipe)
                        pipe.execute()
                        return result
                    except redis_errors.WatchError:
                        continue
        except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
            text = _text([("WATCH", *watch)])
            raise _error(exc, self._pool.backend_name, text, self._backend.secrets) from exc
        raise OperationalError(
            f"optimistic transaction on {list(watch)} kept conflicting ({retries} tries)",
            backend=self._pool.backend_name,
        )

    def scan(self, match: str | None = None, count: int | None = None) -> Iterator[str]:
        """Iterate over keys with SCAN (never KEYS), lazily: ``conn.scan(match="user:*")``.

        ``match`` is a glob pattern (``*``, ``?``, ``[...]``; escape them with ``\\``).
        """
        keys = self._scan(match, count, describe_scan(match).text)
        return self._pool.run_stream(  # type: ignore[no-any-return]
            self._context, "scan", lambda: describe_scan(match), keys
        )

    def _scan(self, match: str | None, count: int | None, text: str) -> Iterator[str]:
        try:
            yield from self._client.scan_iter(match=match, count=count)
        except redis_errors.RedisError as exc:
            raise _error(exc, self._pool.backend_name, text, self._backend.secrets) from exc

    def publish(self, channel: str, message: Any) -> int:
        """PUBLISH; returns how many subscribers received it."""
        result: int = self.execute("PUBLISH", channel, message)
        return result

    def subscribe(
        self, *channels: str, patterns: bool = False, sharded: bool = False
    ) -> Subscription:
        """A subscription to ``channels`` (``patterns=True``: PSUBSCRIBE to glob patterns;
        ``sharded=True``: SSUBSCRIBE to sharded channels): iterate for messages, ``stop()``
        to end. Checked and audited like a command: a read of each channel, and a pattern
        needs a grant covering all it can match."""
        return Subscription(self, channels, patterns=patterns, sharded=sharded)

    def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the server does not answer."""
        self.execute("PING")


_MESSAGES = frozenset({"message", "pmessage", "smessage"})


def describe_subscription(command: str, channels: Sequence[str]) -> Description:
    """What ``SUBSCRIBE``/``PSUBSCRIBE``/``SSUBSCRIBE`` of ``channels`` touches: a read of
    each channel or pattern (the connections' ``subscribe()`` and the stream listeners')."""
    return Description(
        " ".join([command, *channels]), "select", tuple(channels), subscribe_accesses(channels)
    )


class _CheckedPipeline(redis.client.Pipeline):
    """redis-py's pipeline whose commands take the one path (``RedisConnection.optimistic``):
    the immediate ones (WATCH, reads before MULTI) each through the pool's hooks, the
    queued ones as one pipeline at ``execute``."""

    _dbsystem_owner: RedisConnection

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        owner = self._dbsystem_owner
        return owner._pool.run(
            owner._context,
            "command",
            lambda: describe_commands([args], watch=True),
            lambda: super(_CheckedPipeline, self).immediate_execute_command(*args, **options),
        )

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        owner = self._dbsystem_owner
        stack = [args for args, _ in self.command_stack]
        result: list[Any] = owner._pool.run(
            owner._context,
            "pipeline",
            lambda: describe_commands(stack),
            lambda: super(_CheckedPipeline, self).execute(raise_on_error),
        )
        return result


class Subscription:
    """Messages from Redis pub/sub channels, as dicts ``{"channel": ..., "data": ...}``.

    Iterate to receive; ``stop()`` (from any thread) ends the iteration cleanly and closes
    the connection. Also a context manager.
    """

    def __init__(
        self,
        conn: RedisConnection,
        channels: Sequence[str],
        *,
        patterns: bool = False,
        sharded: bool = False,
    ) -> None:
        if not channels:
            raise InterfaceError("subscribe() needs at least one channel")
        if patterns and sharded:
            raise InterfaceError("sharded channels take no patterns (Redis has no SPSUBSCRIBE)")
        self._conn = conn
        self._stopped = threading.Event()
        command = "PSUBSCRIBE" if patterns else "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        described = describe_subscription(command, channels)
        try:
            self._pubsub = conn._client.pubsub(ignore_subscribe_messages=True)
            start = getattr(self._pubsub, command.lower())
            conn._pool.run(conn._context, "subscribe", lambda: described, lambda: start(*channels))
        except redis_errors.RedisError as exc:
            raise _error(exc, conn._pool.backend_name, command, conn._backend.secrets) from exc

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self._stopped.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.05)
            except redis_errors.RedisError as exc:
                if self._stopped.is_set():
                    return
                raise _error(
                    exc, self._conn._pool.backend_name, "SUBSCRIBE", self._conn._backend.secrets
                ) from exc
            if message is not None and message.get("type") in _MESSAGES:
                yield {"channel": message["channel"], "data": message["data"]}

    def get(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopped.is_set():
            message = self._pubsub.get_message(timeout=min(0.05, timeout))
            if message is not None and message.get("type") in _MESSAGES:
                return {"channel": message["channel"], "data": message["data"]}
        return None

    def stop(self) -> None:
        """End the subscription; a loop over it finishes."""
        self._stopped.set()

    def close(self) -> None:
        """Stop and close the connection."""
        self.stop()
        self._pubsub.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
