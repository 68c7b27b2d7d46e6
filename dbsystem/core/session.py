"""The engine's user session: the manager as seen by one user, every statement checked.

``EngineSession`` is the part of ``dbsystem.UserSession`` that needs no feature package;
the facade (``dbsystem._facade``) adds the builders' ``query()`` and the ORM's calls.

``db.for_user("analyst", session_id="s-42")`` returns a session with the manager's API
(``connection``, ``query``, ``transaction``, ``fetch_all``, ``execute``...; the ORM takes
it where it takes a manager). Each connection it lends carries the session's context, so
every statement it runs reaches the hooks (access control, audit) with the user attached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack, overload

from dbsystem.core._calls import BoundTransactions, Calls
from dbsystem.errors import ConfigurationError
from dbsystem.kernel.protocols import BackendInfo, ConnectionOptions, connection_options
from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.backends.mongodb import MongoConnection
    from dbsystem.backends.redis import RedisConnection
    from dbsystem.core.connection import Connection
    from dbsystem.core.manager import Engine

T = TypeVar("T")

__all__ = ["EngineSession", "SessionContext", "session_context"]


@dataclass(frozen=True)
class SessionContext:
    """Who runs a statement: the user, the session id, free attributes (tenant...), and
    how many connections of one pool the session may hold at once (None: its roles say)."""

    user: str
    session_id: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    max_connections: int | None = None


def session_context(
    user: str,
    session_id: str | None,
    attrs: Mapping[str, Any] | None,
    max_connections: int | None,
) -> SessionContext:
    """The context of ``for_user(...)`` (sync and async): ``max_connections`` checked."""
    if max_connections is not None and (type(max_connections) is not int or max_connections < 1):
        raise ConfigurationError(
            f"for_user({user!r}): max_connections must be a positive int, not {max_connections!r}"
        )
    return SessionContext(user, session_id, dict(attrs or {}), max_connections)


class EngineSession(BoundTransactions[Any], Calls):
    """A user's view of a manager; see the module docstring."""

    user_session = True

    def __init__(self, manager: Engine, context: SessionContext) -> None:
        self._manager = manager  # private: the application's manager runs unchecked
        self.context = context

    @property
    def mode(self) -> DatabaseType | None:
        """The manager's default database type."""
        return self._manager.mode

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> BackendInfo:
        """What the session may know of the backend behind a pool (``BackendInfo``: kind,
        dialect, capabilities); never the backend itself, which opens connections."""
        return BackendInfo.of(self._manager.backend(db_type, name))

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
        """Borrow a connection whose statements carry this session's user, within the
        user's cap on connections of that pool (``max_connections``, ``acquire_as``)."""
        name, timeout, label = connection_options(options)
        conn: Connection | RedisConnection | MongoConnection = self._manager._connection_as(
            self.context, db_type, name, timeout, label
        )
        return conn

    @property
    def _replicas(self) -> Any:  # type: ignore[override]
        # The manager's read replicas serve this session's reads too (see ``_read``).
        return self._manager._replicas

    def _read(self, db_type: DatabaseType | None, sql: str | None, call: Callable[[Any], T]) -> T:
        """``call(conn)`` on a replica when ``sql`` only reads, as this session's user."""
        return self._manager._read(db_type, sql, call, self.context)

    def _default_for_bound(self) -> DatabaseType | None:
        return self._manager._default

    def _bound_owner(self) -> Any:
        return self._manager  # the manager's key: a block of another user there is seen

    def _bound_context(self) -> Any:
        return self.context

    def _resolve_type(self, db_type: DatabaseType | None) -> DatabaseType:
        return self._manager._resolve_type(db_type)

    def __repr__(self) -> str:
        context = self.context
        return f"<{type(self).__name__} user={context.user!r} session={context.session_id!r}>"
