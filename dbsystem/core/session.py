"""The engine's user session: the manager as seen by one user, every statement checked.

``EngineSession`` is the part of ``dbsystem.UserSession`` that needs no feature package;
the facade (``dbsystem._facade``) adds the builders' ``query()`` and the ORM's calls.

``db.for_user("analyst", session_id="s-42")`` returns a session with the manager's API
(``connection``, ``query``, ``transaction``, ``fetch_all``, ``execute``...; the ORM takes
it where it takes a manager). Each connection it lends carries the session's context, so
every statement it runs reaches the hooks (access control, audit) with the user attached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from dbsystem.core._calls import Calls
from dbsystem.errors import PermissionDenied
from dbsystem.kernel.protocols import BackendInfo
from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine

T = TypeVar("T")

__all__ = ["EngineSession", "SessionContext", "refuse_mixed_users"]


@dataclass(frozen=True)
class SessionContext:
    """Who runs a statement: the user, the session id, free attributes (tenant...)."""

    user: str
    session_id: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


def refuse_mixed_users(bound: Any, context: SessionContext) -> None:
    """Refuse to open a user's transaction on ``bound``, the connection of an open
    ``transaction()`` block of someone else (the sync and the async session's rule)."""
    if bound is not None and bound._context is not context:
        other = "the application" if bound._context is None else f"user {bound._context.user!r}"
        raise PermissionDenied(
            f"user {context.user!r} cannot open a transaction inside one of {other} on the "
            "same pool: a connection carries one user for its whole lease (use a separate "
            "block, or the session's own calls, which borrow their own connection)"
        )


class EngineSession(Calls):
    """A user's view of a manager; see the module docstring."""

    user_session = True

    def __init__(self, manager: Engine, context: SessionContext) -> None:
        self._manager = manager  # private: the application's manager runs unchecked
        self.context = context

    @property
    def mode(self) -> DatabaseType | None:
        """The manager's default database type."""
        return self._manager.mode

    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """What the session may know of the backend behind a pool (``BackendInfo``: kind,
        dialect, capabilities); never the backend itself, which opens connections."""
        return BackendInfo.of(self._manager.backend(db_type, name))

    def connection(
        self,
        db_type: DatabaseType | None = None,
        *,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Borrow a connection whose statements carry this session's user."""
        conn = self._manager.connection(db_type, name=name, timeout=timeout)
        conn._context = self.context
        return conn

    def _replicated(self) -> bool:
        return bool(self._manager._replicas)

    @property
    def _replicas(self) -> Any:
        # The manager's read replicas serve this session's reads too (see ``_read``).
        return self._manager._replicas

    def _read(self, db_type: DatabaseType | None, sql: str | None, call: Callable[[Any], T]) -> T:
        """``call(conn)`` on a replica when ``sql`` only reads, as this session's user."""
        return self._manager._read(db_type, sql, call, self.context)

    def bound_connection(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any:
        """The connection of this session's open ``transaction()`` block, or None."""
        conn = self._manager.bound_connection(db_type, name)
        return conn if conn is not None and conn._context is self.context else None

    @contextmanager
    def transaction(
        self,
        db_type: DatabaseType | None = None,
        *,
        name: str | None = None,
        isolation: str | None = None,
        readonly: bool = False,
    ) -> Iterator[Any]:
        """A transaction whose statements carry this session's user.

        Nested in a ``transaction()`` block of another user (or of the application) for
        the same pool, it is refused: a connection carries one user for its whole lease.
        """
        outer = self.bound_connection(db_type, name)
        refuse_mixed_users(self._manager.bound_connection(db_type, name), self.context)
        with self._manager.transaction(
            db_type, name=name, isolation=isolation, readonly=readonly
        ) as conn:
            if outer is None:
                conn._context = self.context
            yield conn

    def _resolve_type(self, db_type: DatabaseType | None) -> DatabaseType:
        return self._manager._resolve_type(db_type)

    def __repr__(self) -> str:
        context = self.context
        return f"<{type(self).__name__} user={context.user!r} session={context.session_id!r}>"
