"""MongoDB on pymongo, and its mock on mongomock (``mongodb+mock://``).

Pooling is pymongo's own, with the pool settings mapped onto its options: ``max_size`` ->
``maxPoolSize``, ``min_size`` -> ``minPoolSize``, ``acquire_timeout`` ->
``waitQueueTimeoutMS``, ``idle_timeout`` -> ``maxIdleTimeMS``, ``connect_timeout`` ->
``connectTimeoutMS``/``serverSelectionTimeoutMS``. ``PoolStats`` comes from pymongo's
connection-pool monitoring events (CMAP), counted by a listener on the client.

Every operation goes through the pool's hook chain as a ``Statement`` (backend
``mongodb``, the operation name, the command document as text, the collections as
resources), as SQL statements and Redis commands do.

``mongodb+mock://`` uses mongomock: no server, no pool (its stats stay at zero), and what
mongomock does not implement (several aggregation stages and operators, transactions)
raises ``NotSupportedError``. The suite runs against a real server when
``DBSYSTEM_TEST_MONGO_URL`` is set.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, NoReturn, Self

from bson import errors as bson_errors
from pymongo import errors as mongo_errors
from pymongo import monitoring

from dbsystem.backends._mongo_access import operation_accesses
from dbsystem.backends._translate import translate
from dbsystem.backends.base import DriverBackend, check_options, driver_refused
from dbsystem.errors import (
    ConfigurationError,
    ConnectionFailed,
    ConnectionTimeout,
    DataError,
    DBSystemError,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    PoolTimeout,
    ProgrammingError,
)
from dbsystem.kernel.config import PoolConfig, TLSConfig
from dbsystem.kernel.hooks import Description
from dbsystem.kernel.protocols import BackendKind
from dbsystem.kernel.url import DatabaseURL

__all__ = ["MongoBackend", "MongoConnection"]

_OPTIONS = frozenset(
    {
        "replicaSet",
        "readPreference",
        "authSource",
        "appName",
        "retryWrites",
        "w",
        "directConnection",
    }
)


class _PoolListener(monitoring.ConnectionPoolListener):
    """Counts pymongo's connection-pool events into the ``PoolStats`` fields."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = self.active = self.waiting = 0
        self.acquired = self.timeouts = self.created = self.closed = 0
        self.wait_total = self.wait_max = 0.0

    def pool_created(self, event: Any) -> None: ...
    def pool_ready(self, event: Any) -> None: ...
    def pool_cleared(self, event: Any) -> None: ...
    def pool_closed(self, event: Any) -> None: ...
    def connection_ready(self, event: Any) -> None: ...

    def connection_created(self, event: Any) -> None:
        with self.lock:
            self.open += 1
            self.created += 1

    def connection_closed(self, event: Any) -> None:
        with self.lock:
            self.open = max(0, self.open - 1)
            self.closed += 1

    def connection_check_out_started(self, event: Any) -> None:
        with self.lock:
            self.waiting += 1

    def connection_check_out_failed(self, event: Any) -> None:
        with self.lock:
            self.waiting = max(0, self.waiting - 1)
            if event.reason == monitoring.ConnectionCheckOutFailedReason.TIMEOUT:
                self.timeouts += 1

    def connection_checked_out(self, event: Any) -> None:
        waited = getattr(event, "duration", None) or 0.0
        with self.lock:
            self.waiting = max(0, self.waiting - 1)
            self.active += 1
            self.acquired += 1
            self.wait_total += waited
            self.wait_max = max(self.wait_max, waited)

    def connection_checked_in(self, event: Any) -> None:
        with self.lock:
            self.active = max(0, self.active - 1)


def _tls_options(tls: TLSConfig | None) -> dict[str, Any]:
    if tls is None:
        return {}
    if tls.mode == "disable":
        return {"tls": False}
    if tls.mode == "prefer":
        raise ConfigurationError(
            "MongoDB cannot negotiate TLS: use tls mode 'disable' or a requiring mode",
            backend="mongodb",
        )
    options: dict[str, Any] = {"tls": True}
    if tls.mode == "require":
        options["tlsInsecure"] = True
    elif tls.mode == "verify-ca":
        options["tlsAllowInvalidHostnames"] = True
    if tls.ca_file is not None:
        options["tlsCAFile"] = str(tls.ca_file)
    if tls.cert_file is not None:
        options["tlsCertificateKeyFile"] = str(tls.cert_file)
    return options


def translate_mongo(
    exc: BaseException, backend: str, statement: str | None, secrets: tuple[str, ...]
) -> DBSystemError:
    """A pymongo (or mongomock) exception as a dbsystem error."""
    override: type[DBSystemError]
    message = str(exc)
    if isinstance(exc, NotImplementedError):
        override = NotSupportedError
    elif isinstance(exc, mongo_errors.DuplicateKeyError):
        override = IntegrityError
    elif isinstance(exc, mongo_errors.BulkWriteError):
        codes = {e.get("code") for e in exc.details.get("writeErrors", [])}
        override = IntegrityError if 11000 in codes else DataError
    elif isinstance(exc, mongo_errors.ServerSelectionTimeoutError):
        override = ConnectionTimeout
        message = _unreachable(message)
    elif isinstance(exc, mongo_errors.WaitQueueTimeoutError):
        override = PoolTimeout
    elif isinstance(exc, (mongo_errors.ConnectionFailure, mongo_errors.AutoReconnect)):
        override = ConnectionFailed
    elif isinstance(exc, mongo_errors.OperationFailure):
        if "replica set" in message or "Transaction" in message:
            override = NotSupportedError
        else:
            override = ProgrammingError
    elif isinstance(
        exc,
        (
            bson_errors.InvalidDocument,
            mongo_errors.InvalidName,
            mongo_errors.InvalidOperation,
            TypeError,
            ValueError,
        ),
    ):
        override = DataError
    else:
        override = OperationalError
    return translate(
        exc,
        backend=backend,
        statement=statement,
        secrets=secrets,
        override=override,
        message=message,
    )


def _unreachable(text: str) -> str:
    """pymongo's server selection timeout in one line: what each server said and how long
    it was waited for, without the topology description that follows."""
    reasons, _, rest = text.partition(", Timeout: ")
    reasons = re.sub(r" \(configured timeouts: [^)]*\)", "", reasons).strip()
    waited = rest.partition(",")[0].strip()
    if not waited:
        return reasons or text
    return f"no MongoDB server answered within {waited}: {reasons}"


class MongoBackend(DriverBackend):
    """Builds the pymongo (or mongomock) client for a ``mongodb://`` URL."""

    name: ClassVar[str] = "mongodb"
    kind: ClassVar[BackendKind] = "document"

    def __init__(self, url: DatabaseURL, config: PoolConfig) -> None:
        super().__init__(url, config)
        check_options(config.options, _OPTIONS, "MongoDB", self.label)
        self.database_name = url.database or ("test" if self.mock else "")
        if not self.database_name:
            raise ConfigurationError(
                "name the database in the URL path: mongodb://host:27017/app", backend=self.label
            )
        self.listener = _PoolListener()
        if self.mock:
            import mongomock

            self.client: Any = mongomock.MongoClient()
            return
        import pymongo

        timeout_ms = int(config.connect_timeout * 1000)
        options: dict[str, Any] = {
            "maxPoolSize": config.max_size,
            "minPoolSize": config.min_size,
            "waitQueueTimeoutMS": int(config.acquire_timeout * 1000),
            "connectTimeoutMS": timeout_ms,
            "serverSelectionTimeoutMS": timeout_ms,
            "event_listeners": [self.listener],
            **_tls_options(config.tls),
            **config.options,
        }
        if config.idle_timeout is not None:
            options["maxIdleTimeMS"] = int(config.idle_timeout * 1000)
        try:
            self.client = pymongo.MongoClient(url.render(hide_password=False), **options)
        except (mongo_errors.PyMongoError, ValueError, TypeError) as exc:
            raise translate(
                exc, backend=self.label, secrets=self.secrets, override=ConfigurationError
            ) from exc

    @property
    def database(self) -> Any:
        """The pymongo (or mongomock) Database of the URL."""
        return self.client[self.database_name]

    def open(self, min_size: int) -> None:
        """Check the server answers now (as the SQL pools do), unless ``min_size`` is 0."""
        if not self.mock and min_size > 0:
            try:
                self.client.admin.command("ping")
            except mongo_errors.PyMongoError as exc:
                self.client.close()
                raise translate_mongo(exc, self.label, None, self.secrets) from exc

    def handle(self, pool: Any) -> MongoConnection:
        """A connection handle lent by the engine's ``DriverPool``."""
        return MongoConnection(pool)

    def pool_counters(self) -> dict[str, Any]:
        """pymongo's pool events, counted as ``PoolStats`` reports them (zero for the mock)."""
        s = self.listener
        with s.lock:
            return {
                "total": s.open,
                "active": s.active,
                "waiting": s.waiting,
                "acquired": s.acquired,
                "timeouts": s.timeouts,
                "created": s.created,
                "closed": s.closed,
                "wait_total": s.wait_total,
                "wait_max": s.wait_max,
            }

    def dispose(self) -> None:
        """Close the client and its pool."""
        self.client.close()


_ACTIONS = {
    "find": "select",
    "find_one": "select",
    "count": "select",
    "distinct": "select",
    "aggregate": "select",
    "aggregate_write": "update",  # a pipeline ending in $out or $merge
    "insert_one": "insert",
    "insert_many": "insert",
    "update_one": "update",
    "update_many": "update",
    "replace_one": "update",
    "delete_one": "delete",
    "delete_many": "delete",
    "bulk_write": "multiple",
    "create_index": "ddl",
    "drop_index": "ddl",
    "drop": "ddl",
}


def operation_action(operation: str) -> str:
    """What a MongoDB operation does, as access control and audit see it (``find`` ->
    ``select``); an operation not listed is ``other``, which needs ADMIN."""
    return _ACTIONS.get(operation, "other")


class MongoConnection:
    """Runs MongoDB operations through the engine's pool (the hooks) and error translation."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._backend = pool.connector
        self._database: Any = pool.connector.database
        self._session: Any = None
        self._context: Any = None

    def run(
        self,
        operation: str,
        collection: str,
        command: dict[str, Any],
        call: Callable[[Any], Any],
        resources: tuple[str, ...] = (),
        read_preference: Any = None,
    ) -> Any:
        """Run ``call(collection_object)`` as ``operation``, through hooks and translation;
        a pymongo ``read_preference`` overrides the client's for this call."""
        target = self._database[collection]
        if read_preference is not None:
            target = target.with_options(read_preference=read_preference)
        try:
            return self._pool.run(
                self._context,
                operation,
                lambda: _description(operation, collection, command, resources),
                lambda: call(target),
            )
        except (mongo_errors.PyMongoError, NotImplementedError) as exc:
            raise translate_mongo(
                exc, self._pool.backend_name, _describe(command), self._backend.secrets
            ) from exc

    @property
    def database(self) -> Any:
        """The pymongo Database underneath, for what dbsystem does not wrap (what runs on
        it skips the hooks: refused on a connection lent to a user session)."""
        if self._context is not None:
            raise driver_refused(self._context, "the MongoDB database", self._pool.backend_name)
        return self._database

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def release(self) -> None:
        """Nothing to return (the driver returns its connection after each operation)."""

    def refuse(
        self, operation: str, collection: str, command: dict[str, Any], error: BaseException
    ) -> NoReturn:
        """Raise ``error`` for an operation refused before it ran (a row policy), through
        the hooks, so that the audit log records it as denied."""
        describe = lambda: _description(operation, collection, command)  # noqa: E731
        self._pool.refuse(self._context, operation, describe, error)
        raise error  # (refuse raised it already: this line only tells the type checker)

    @property
    def session(self) -> Any:
        """The session of the open ``transaction()``, or None."""
        return self._session

    @contextmanager
    def transaction(self) -> Iterator[MongoConnection]:
        """A multi-document transaction (replica sets and sharded clusters only).

        Standalone servers and mongomock raise ``NotSupportedError``. Pass
        ``session=conn.session`` in the operations inside (the builders do it for you
        when run with ``execute(conn)``).
        """
        if self._backend.mock:
            raise NotSupportedError("mongomock has no transactions", backend=self._backend.label)
        try:
            session = self._backend.client.start_session()
            session.start_transaction()
        except mongo_errors.PyMongoError as exc:
            raise translate_mongo(
                exc, self._backend.label, "startTransaction", self._backend.secrets
            ) from exc
        self._session = session
        try:
            yield self
        except BaseException:
            session.abort_transaction()
            raise
        else:
            try:
                session.commit_transaction()
            except mongo_errors.PyMongoError as exc:
                raise translate_mongo(
                    exc, self._backend.label, "commitTransaction", self._backend.secrets
                ) from exc
        finally:
            self._session = None
            session.end_session()

    def ping(self) -> None:
        """Raise ``ConnectionFailed`` if the server does not answer."""
        if self._backend.mock:
            return
        try:
            self._backend.client.admin.command("ping")
        except mongo_errors.PyMongoError as exc:
            raise translate_mongo(exc, self._backend.label, None, self._backend.secrets) from exc


def _description(
    operation: str, collection: str, command: dict[str, Any], resources: tuple[str, ...] = ()
) -> Description:
    """What a MongoDB operation touches, as the engine's ``Statement`` tells the hooks:
    each collection with its own action (``dbsystem.backends._mongo_access``)."""
    accesses = operation_accesses(operation, collection, command)
    named = (r for a, r in accesses if a != "refused")
    return Description(
        text=_describe(command),
        action=operation_action(operation),
        resources=tuple(dict.fromkeys((collection, *resources, *named))),
        accesses=accesses,
    )


def _describe(command: dict[str, Any]) -> str:
    from bson import json_util

    try:
        return str(json_util.dumps(command, sort_keys=False))
    except (TypeError, ValueError):
        return repr(command)
