"""OpenTelemetry tracing: one CLIENT span per statement, on every backend.

    from opentelemetry.sdk.trace import TracerProvider
    from dbsystem.integrations.opentelemetry import instrument, uninstrument

    instrument(db, tracer_provider=TracerProvider())   # or an AsyncDatabaseManager
    ...
    uninstrument(db)

``instrument`` installs an ``ExecutionHook`` on the manager (the interception point the
metrics use), so every statement of every kind is seen: raw SQL, builders, the ORM,
transactions (``BEGIN``/``COMMIT``), Redis commands and pipelines, MongoDB operations, for
the application and for user sessions alike. Without ``instrument`` nothing is installed
and statements pay nothing.

Each span follows the database semantic conventions (stable since semconv 1.33):

==========================  ===============================================================
``db.system.name``          ``postgresql``, ``mysql``, ``mariadb`` (a ``mariadb://`` URL),
                            ``sqlite``, ``redis``, ``mongodb``
``db.operation.name``       the SQL keyword (``SELECT``, ``BEGIN``...), the Redis command
                            (``PIPELINE`` for a pipeline), the MongoDB command (``find``)
``db.collection.name``      the table or collection, when the statement touches exactly one
``db.query.text``           the statement's *shape*: literals replaced by ``?`` and bound
                            parameters left as their placeholders, so no value is recorded
                            (Redis: the command and one ``?`` per argument; MongoDB: the
                            command document with every value replaced by ``?``)
``db.namespace``            the database (name, file, or Redis database number)
``server.address``,         the server the pool connects to (the URL's first host)
``server.port``
``error.type``              the exception's qualified class name, with an ERROR status
==========================  ===============================================================

The span is named ``{db.operation.name} {db.collection.name}`` (the operation alone, or the
system, when the rest is unknown). It is the child of the span current where the statement
was called, in threads and in asyncio tasks alike (the hook runs in the caller's context),
and is recorded when the statement ends with its real start and end times. A wait for a
pooled connection (an acquire that found none idle) is an event ``dbsystem.pool.wait`` on
the first span that follows it in the same thread or task on that pool, with the wait in
``dbsystem.pool.wait.duration`` (seconds) and the pool in ``db.client.connection.pool.name``.

Error messages are not recorded (a database's message may quote a value): the span carries
the error's type and the status description names it.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, NamedTuple

from dbsystem._version import __version__
from dbsystem.errors import ConfigurationError
from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.kernel.url import DatabaseURL
from dbsystem.security.audit import statement_shape

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the extra is installed in the tests
    trace = None  # type: ignore[assignment]

__all__ = ["TracingHook", "instrument", "is_instrumented", "uninstrument"]

_SQL_SYSTEMS = {"postgresql": "postgresql", "mysql": "mysql", "sqlite": "sqlite"}
_QUERY_ACTIONS = {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


class _Target(NamedTuple):
    """What every span of one pool carries: the system and where it connects."""

    system: str
    attributes: dict[str, str | int]


# The last wait for a connection in this thread or task, until a span of that pool takes it.
_pending_wait: ContextVar[tuple[str, float, int] | None] = ContextVar(
    "dbsystem_otel_pending_wait", default=None
)


class TracingHook(ExecutionHook):
    """The ``ExecutionHook`` that ``instrument`` installs: a span per statement.

    ``manager`` is the ``DatabaseManager`` or ``AsyncDatabaseManager`` whose pools it names
    (``server.address`` and the rest are read from the pool's URL, once per pool).
    """

    def __init__(self, manager: Any, tracer_provider: Any = None) -> None:
        _require_api()
        self._tracer = trace.get_tracer("dbsystem", __version__, tracer_provider=tracer_provider)
        self._manager = weakref.ref(manager)
        self._targets: dict[tuple[str, str], _Target] = {}
        self._lock = threading.Lock()

    # -- the hook --------------------------------------------------------------------------

    def after_wait(self, pool: str, waited: float) -> None:
        """Remember the wait for the next span of ``pool`` in this thread or task."""
        if waited > 0:
            _pending_wait.set((pool, waited, time.time_ns()))

    def after_execute(self, statement: Statement) -> None:
        """Record ``statement`` as a finished CLIENT span under the caller's current span."""
        end = time.time_ns()
        start = end - int((statement.duration or 0.0) * 1e9)
        target = self._target(statement)
        attributes = dict(target.attributes)
        name, described = _described(
            _Shape(
                target.system,
                statement.text,
                statement.operation == "pipeline",
                statement.action,
                statement.resources,
                statement.operation,
            )
        )
        attributes.update(described)
        if statement.operation == "executemany" and isinstance(statement.params, list | tuple):
            attributes["db.operation.batch.size"] = len(statement.params)
        span = self._tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start
        )
        waited = _pending_wait.get()
        if waited is not None and waited[0] == statement.pool:
            _pending_wait.set(None)
            span.add_event(
                "dbsystem.pool.wait",
                {
                    "db.client.connection.pool.name": statement.pool,
                    "dbsystem.pool.wait.duration": waited[1],
                },
                timestamp=waited[2],
            )
        error = statement.error
        if error is not None:
            kind = type(error)
            error_type = f"{kind.__module__}.{kind.__qualname__}"
            span.set_attribute("error.type", error_type)
            refused = "" if statement.executed else " (refused before it ran)"
            span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}{refused}"))
        span.end(end_time=end)

    # -- where each pool connects ----------------------------------------------------------

    def _target(self, statement: Statement) -> _Target:
        key = (statement.pool, statement.dialect)
        target = self._targets.get(key)
        if target is not None:
            return target
        with self._lock:
            manager = self._manager()
            pools = manager.pools() if manager is not None else {}
            url = None
            for pool in pools.values():
                if pool.name == statement.pool and _dialect(pool) == statement.dialect:
                    url = _url(pool)
                    break
            system = _system(statement, url)
            target = _Target(system, {"db.system.name": system, **_where(url)})
            self._targets[key] = target
        return target


_hooks: weakref.WeakKeyDictionary[Any, TracingHook] = weakref.WeakKeyDictionary()
_hooks_lock = threading.Lock()


def instrument(db: Any, *, tracer_provider: Any = None) -> TracingHook:
    """Trace every statement of ``db`` (a ``DatabaseManager`` or ``AsyncDatabaseManager``).

    Spans go to ``tracer_provider`` (default: the global one, ``trace.set_tracer_provider``).
    Instrumenting a manager again replaces its hook (with the new provider). Returns the
    installed hook. Raises ``ConfigurationError`` when opentelemetry-api is not installed.
    """
    hook = TracingHook(db, tracer_provider)
    with _hooks_lock:
        old = _hooks.pop(db, None)
        if old is not None:
            db.remove_hook(old)
        db.add_hook(hook)
        _hooks[db] = hook
    return hook


def uninstrument(db: Any) -> None:
    """Stop tracing ``db``'s statements (nothing happens if it was not instrumented)."""
    with _hooks_lock:
        hook = _hooks.pop(db, None)
        if hook is not None:
            db.remove_hook(hook)


def is_instrumented(db: Any) -> bool:
    """True while ``db`` is instrumented."""
    with _hooks_lock:
        return db in _hooks


def _require_api() -> None:
    if trace is None:
        raise ConfigurationError(
            "OpenTelemetry tracing needs opentelemetry-api: pip install 'dbsystem[opentelemetry]'"
        )


# -- attributes ------------------------------------------------------------------------------


def _dialect(pool: Any) -> str | None:
    backend = getattr(pool, "backend", None) or getattr(pool, "connector", None)
    dialect = getattr(backend, "dialect", None)
    if dialect is None:  # (the async pools' thread connector wraps the backend)
        dialect = getattr(getattr(backend, "backend", None), "dialect", None)
    return dialect


def _url(pool: Any) -> DatabaseURL | None:
    for owner in (getattr(pool, "backend", None), getattr(pool, "connector", None)):
        for candidate in (owner, getattr(owner, "backend", None)):
            url = getattr(candidate, "url", None)
            if isinstance(url, DatabaseURL):
                return url
    return None


def _system(statement: Statement, url: DatabaseURL | None) -> str:
    dialect = statement.dialect
    if dialect == "mysql" and url is not None and url.base_scheme == "mariadb":
        return "mariadb"
    return _SQL_SYSTEMS.get(dialect, dialect)


def _where(url: DatabaseURL | None) -> dict[str, str | int]:
    if url is None:
        return {}
    out: dict[str, str | int] = {}
    if url.host:
        out["server.address"] = url.host
        if url.port is not None:
            out["server.port"] = url.port
    if url.database:
        out["db.namespace"] = url.database
    return out


class _Shape(NamedTuple):
    """What a span's name and statement attributes are made of (the cache's key)."""

    system: str
    text: str
    pipeline: bool
    action: str
    resources: tuple[str, ...]
    api_call: str


@lru_cache(maxsize=2048)
def _described(shape: _Shape) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The span's name and the attributes its statement text determines (cached by text:
    the same statement, run again, costs a dictionary lookup)."""
    system = shape.system
    operation, collection = _operation(shape)
    query = _query_text(system, shape.text, shape.pipeline)
    attributes = (
        ("db.operation.name", operation),
        ("db.collection.name", collection),
        ("db.query.text", query),
    )
    name = " ".join(part for part in (operation, collection) if part) or system
    return name, tuple((key, value) for key, value in attributes if value)


def _operation(shape: _Shape) -> tuple[str, str]:
    """(db.operation.name, db.collection.name) of a statement."""
    system, text, pipeline, action, resources, api_call = shape
    if system == "redis":
        if pipeline:
            return "PIPELINE", ""
        return text.split(None, 1)[0].upper() if text.strip() else "", ""
    if system == "mongodb":
        return _mongo_command(text) or api_call, resources[0] if resources else ""
    word = text.split(None, 1)[0].upper() if text.strip() else ""
    if word in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START", "SET"):
        return word, ""
    if word not in _QUERY_ACTIONS.values():  # WITH ..., a CTE: what it does
        word = _QUERY_ACTIONS.get(action, word)
    return word, resources[0] if len(resources) == 1 else ""


def _query_text(system: str, text: str, pipeline: bool) -> str:
    """The statement's shape: no value it carries (see the module docstring)."""
    if system == "redis":
        if pipeline:
            return ""  # (the commands cannot be told apart from values holding "; ")
        words = text.split()
        return " ".join([words[0].upper(), *("?" * (len(words) - 1))]) if words else ""
    if system == "mongodb":
        try:
            command = json.loads(text)
        except ValueError:
            return ""
        if not isinstance(command, dict):
            return ""
        items = list(command.items())
        shaped = {k: (v if i == 0 else _masked(v)) for i, (k, v) in enumerate(items)}
        return json.dumps(shaped)
    return statement_shape(text)


def _mongo_command(text: str) -> str:
    """The command's name: the first key of the JSON document (``{"find": ...}``)."""
    head = text[:64]
    if head.startswith('{"'):
        end = head.find('"', 2)
        if end > 2:
            return head[2:end]
    return ""


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return "?"
