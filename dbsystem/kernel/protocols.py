"""The declared interfaces: what a backend of each kind offers, and what runs statements.

Every backend class declares ``kind`` (``"sql"``, ``"kv"`` or ``"document"``) and ``name``;
the engine and the features dispatch on ``kind``, never by probing attributes. The SQL
kind is the ``Backend`` ABC (``dbsystem.backends.base``), whose connections the engine's
pool lends; the key-value (Redis) and document (MongoDB) kinds keep their drivers' own
pools, which the engine wraps in a ``DriverPool`` (``dbsystem.core.execution``): the
backend opens them (``open``), makes the handles the pool lends (``handle``) and counts
(``pool_counters``). A handle runs each operation through its pool's ``run``, never
through the hooks itself.

``StatementRunner`` is what the builders, the ORM and the sessions are typed against: the
manager, a user session and the synchronous bridge of the async manager all satisfy it.

Two registries live here too, filled in by the layers above when they are imported, so the
engine calls them without importing them: where a named credential's secret comes from
(``dbsystem.security.credentials``), and which class ``DatabaseManager.instance()`` makes
(the public facade, ``dbsystem.DatabaseManager``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Literal,
    Protocol,
    TypedDict,
    Unpack,
    runtime_checkable,
)

from dbsystem.errors import ConfigurationError, InterfaceError

if TYPE_CHECKING:
    from dbsystem.kernel.config import PoolConfig
    from dbsystem.kernel.types import DatabaseType, ExecuteResult, Params, Row
    from dbsystem.kernel.url import DatabaseURL

__all__ = [
    "BackendInfo",
    "BackendKind",
    "BackendLike",
    "ConnectionOptions",
    "DriverPoolBackend",
    "StatementRunner",
    "TransactionOptions",
    "lookup_credential",
    "connection_options",
    "set_credential_source",
    "transaction_options",
]

BackendKind = Literal["sql", "kv", "document"]


@runtime_checkable
class BackendLike(Protocol):
    """What every backend declares, whatever its kind."""

    name: ClassVar[str]
    kind: ClassVar[BackendKind]
    url: DatabaseURL
    config: PoolConfig

    def dispose(self) -> None:
        """Release what the backend holds beyond its connections."""

    def secrets(self) -> Iterable[str]:
        """Strings never to show in a message (passwords)."""


class DriverPoolBackend(BackendLike, Protocol):
    """A key-value or document backend: its driver pools for itself (Redis, MongoDB)."""

    label: str
    dialect: str

    def open(self, min_size: int) -> None:
        """Open ``min_size`` connections (or check the server answers) at pool creation."""

    def handle(self, pool: Any) -> Any:
        """A handle for ``pool`` (the engine's ``DriverPool``) to lend."""

    def pool_counters(self) -> dict[str, Any]:
        """total, active, acquired, timeouts, created, wait_total, wait_max (and optionally
        waiting, closed) of the driver's pool."""


class ConnectionOptions(TypedDict, total=False):
    """The options of ``connection()``, the same for every manager, user session and
    bridge, sync and async (declared once here, checked by ``connection_options``)."""

    name: str | None
    """The named pool of the type (default: its default pool)."""
    timeout: float | None
    """How long to wait for a free connection (default: the pool's ``acquire_timeout``)."""
    label: str | None
    """Names the borrower in the pool's ``holders()`` (default: its code location)."""


_CONNECTION_OPTIONS = frozenset(ConnectionOptions.__annotations__)


def connection_options(options: Mapping[str, Any]) -> tuple[str | None, float | None, str | None]:
    """``name``, ``timeout`` and ``label`` from ``connection()``'s keyword options; an
    option it does not take raises ``InterfaceError`` naming it."""
    if not options.keys() <= _CONNECTION_OPTIONS:  # (no set built: every builder call asks)
        unknown = ", ".join(sorted(options.keys() - _CONNECTION_OPTIONS))
        raise InterfaceError(
            f"connection() takes no option {unknown} (its options: name, timeout, label)"
        )
    return options.get("name"), options.get("timeout"), options.get("label")


class TransactionOptions(TypedDict, total=False):
    """The options of ``transaction()``, the same for every manager, user session and
    bridge, sync and async (declared once here, checked by ``transaction_options``)."""

    name: str | None
    """The named pool of the type (default: its default pool)."""
    isolation: str | None
    """The isolation level, e.g. ``"serializable"`` (default: the server's)."""
    readonly: bool
    """A read-only transaction (default: False)."""


_TRANSACTION_OPTIONS = frozenset(TransactionOptions.__annotations__)


def transaction_options(options: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """``name``, ``isolation`` and ``readonly`` from ``transaction()``'s keyword options;
    an option it does not take raises ``InterfaceError`` naming it."""
    if not options.keys() <= _TRANSACTION_OPTIONS:
        unknown = ", ".join(sorted(options.keys() - _TRANSACTION_OPTIONS))
        raise InterfaceError(
            f"transaction() takes no option {unknown} (its options: name, isolation, readonly)"
        )
    return options.get("name"), options.get("isolation"), options.get("readonly", False)


class StatementRunner(Protocol):
    """Something that runs statements: a manager, a user session, the async bridge."""

    @property
    def mode(self) -> DatabaseType | None:
        """The default database type."""

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The backend behind a pool."""

    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionOptions]
    ) -> Any:
        """Borrow a connection (a context manager; see ``ConnectionOptions``)."""

    def transaction(
        self, db_type: DatabaseType | None = None, **options: Unpack[TransactionOptions]
    ) -> AbstractContextManager[Any]:
        """A connection inside a transaction (see ``TransactionOptions``)."""

    def bound_connection(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The connection of the open ``transaction()`` block, or None."""


class SQLRunner(StatementRunner, Protocol):
    """A ``StatementRunner`` with the one-statement calls of the manager."""

    def execute(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> ExecuteResult: ...

    def fetch_all(
        self, sql: str, params: Params = None, *, db_type: DatabaseType | None = None
    ) -> list[Row]: ...

    def executemany(
        self,
        sql: str,
        seq_params: Sequence[Mapping[str, Any]],
        *,
        db_type: DatabaseType | None = None,
    ) -> ExecuteResult: ...


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What a user session may know of a pool's backend: its kind and dialect, nothing it
    could open a connection or read a password with (``UserSession.backend()``)."""

    name: str
    kind: BackendKind
    dialect: str
    label: str
    capabilities: Any

    @classmethod
    def of(cls, backend: Any) -> BackendInfo:
        """The view of ``backend``."""
        return cls(
            backend.name,
            backend.kind,
            backend.dialect,
            getattr(backend, "label", backend.name),
            backend.capabilities,
        )


# -- registries filled in from above --------------------------------------------------------

CredentialSource = Callable[[str], tuple[str | None, str]]
_credential_source: CredentialSource | None = None


def set_credential_source(source: CredentialSource) -> None:
    """Where ``PoolConfig(credential=name)`` finds ``(username or None, password)``."""
    global _credential_source
    _credential_source = source


def lookup_credential(name: str) -> tuple[str | None, str]:
    """The ``(username, password)`` of a named credential, from the registered source."""
    if _credential_source is None:
        raise ConfigurationError(
            f"no credential store is loaded to resolve credential {name!r} "
            "(import dbsystem.security.credentials)"
        )
    return _credential_source(name)
