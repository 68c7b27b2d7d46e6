"""``query()``: the builders a manager or a user session offers, bound to one of its pools.

The query package contributes this method to the public ``DatabaseManager`` and
``UserSession`` (``dbsystem._facade``) and to the async manager's synchronous bridge; the
engine underneath never imports the builders. The backend's declared ``kind`` picks the
builder: SQL pools give a ``QueryFactory``, Redis pools a ``RedisQuery``, MongoDB pools a
``MongoQuery``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.query.mongo import MongoQuery
    from dbsystem.query.redis import RedisQuery
    from dbsystem.query.sql import QueryFactory

__all__ = ["QueryMixin", "builders"]


class _Runner(Protocol):
    def backend(self, db_type: DatabaseType | None = None, name: str | None = None) -> Any: ...

    def _resolve_type(self, db_type: DatabaseType | None) -> DatabaseType: ...


def builders(
    runner: Any, db_type: DatabaseType | None = None, name: str | None = None
) -> QueryFactory | RedisQuery | MongoQuery:
    """The builders of ``runner``'s pool (a manager, a session, a bridge): what
    ``runner.query(db_type, name=name)`` returns, for features that hold a runner."""
    db_type = runner._resolve_type(db_type)
    kind = runner.backend(db_type, name).kind
    if kind == "kv":
        from dbsystem.query.redis import RedisQuery

        return RedisQuery(runner, db_type, name)
    if kind == "document":
        from dbsystem.query.mongo import MongoQuery

        return MongoQuery(runner, db_type, name)
    from dbsystem.query.sql import QueryFactory

    return QueryFactory(runner, db_type, name)


class QueryMixin:
    """Adds ``query()`` to a class with ``backend()`` and ``_resolve_type()``."""

    __slots__ = ()

    @overload
    def query(  # type: ignore[overload-overlap]
        self: _Runner, db_type: Literal[DatabaseType.REDIS], *, name: str | None = None
    ) -> RedisQuery: ...

    @overload
    def query(  # type: ignore[overload-overlap]
        self: _Runner, db_type: Literal[DatabaseType.MONGODB], *, name: str | None = None
    ) -> MongoQuery: ...

    @overload
    def query(
        self: _Runner, db_type: DatabaseType | None = None, *, name: str | None = None
    ) -> QueryFactory: ...

    def query(
        self: _Runner, db_type: DatabaseType | None = None, *, name: str | None = None
    ) -> QueryFactory | RedisQuery | MongoQuery:
        """Query builders bound to a pool: ``db.query(DatabaseType.POSTGRES).select(...)``.

        SQL pools give a ``QueryFactory`` (builders compiled for the pool's dialect), Redis
        pools a ``RedisQuery``, MongoDB pools a ``MongoQuery``; ``execute()`` runs through
        that pool, as this manager or session.
        """
        return builders(self, db_type, name)
