"""The root both the Redis and the MongoDB builders share: a builder bound to a pool.

``db.query(DatabaseType.REDIS)`` and ``db.query(DatabaseType.MONGODB)`` keep the manager
(or user session), the database type and the pool's name, and borrow a connection of that
pool to run; on the async manager (``is_async``) their ``execute()`` returns a coroutine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dbsystem.errors import QueryBuildError

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager
    from dbsystem.kernel.types import DatabaseType

__all__ = ["BoundBuilder"]


class BoundBuilder:
    """A builder bound to a manager's pool (or to none: then ``conn=`` must be given)."""

    __slots__ = ("_db_type", "_manager", "_name")
    is_async: ClassVar[bool] = False  # the async manager's: execute() returns a coroutine
    _what: ClassVar[str]  # "Redis query", "MongoDB query"

    def __init__(
        self,
        manager: DatabaseManager | None,
        db_type: DatabaseType | None = None,
        name: str | None = None,
    ) -> None:
        self._manager, self._db_type, self._name = manager, db_type, name

    def _borrow(self) -> Any:
        """A connection of the bound pool: a context manager (an async one on the async
        manager), or a lease to release; ``QueryBuildError`` if the builder is unbound."""
        if self._manager is None:
            raise QueryBuildError(f"this {self._what} is not bound to a database: pass conn=")
        return self._manager.connection(self._db_type, name=self._name)
