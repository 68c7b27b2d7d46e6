"""The public manager and user session: the engine, plus what each feature contributes.

``dbsystem.DatabaseManager`` is the engine's ``Engine`` (pools, hooks, transactions, the
one-statement calls) composed with the methods the feature packages declare: the builders'
``query()`` (``dbsystem.query._mixin``), the ORM's ``create_tables``/``drop_tables``
(``dbsystem.orm.schema``), ``for_user`` (security) and ``health`` (monitoring). Composing
here, at the top, is what keeps the engine free of imports from the features: the layers
below never import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbsystem.core.manager import Engine
from dbsystem.core.session import EngineSession, session_context
from dbsystem.monitoring.health import manager_health
from dbsystem.orm.schema import SchemaMixin
from dbsystem.query._mixin import QueryMixin
from dbsystem.security import credentials as _credentials  # noqa: F401 - registers the store

__all__ = ["DatabaseManager", "UserSession"]


class UserSession(QueryMixin, SchemaMixin, EngineSession):
    """``db.for_user(...)``: the manager as seen by one user.

    The manager's API (``connection``, ``query``, ``transaction``, ``fetch_all``,
    ``execute``...; the ORM takes it where it takes a manager). Each connection it lends
    carries the session's context, so every statement it runs reaches the hooks (access
    control, audit) with the user attached.
    """


class DatabaseManager(QueryMixin, SchemaMixin, Engine):
    """Holds the pools of an application and lends their connections. Thread-safe.

    ``DatabaseManager.instance()`` is the process-wide manager; ``DatabaseManager()`` an
    independent one. Pools are keyed by database type and an optional name.
    """

    def for_user(
        self,
        user: str,
        *,
        session_id: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        max_connections: int | None = None,
    ) -> UserSession:
        """A session whose every statement is checked for ``user`` and audited;
        ``max_connections`` caps the connections of one pool it holds at once (its roles'
        ``Role(max_connections=...)`` cap it too: the smallest applies).

        Installs ``AccessControl.instance()`` on first use, unless ``use_access_control``
        chose another. Calls on the manager itself stay the application's own, unchecked
        (``AccessControl(require_user=True)`` makes them an error instead).
        """
        if self._access_control is None:
            from dbsystem.security.rbac import AccessControl

            self.use_access_control(AccessControl.instance())
        return UserSession(self, session_context(user, session_id, attrs, max_connections))

    def health(self, *, check: bool = False) -> dict[str, Any]:
        """Each pool's health (``BackendHealth``), keyed ``"postgres"``, ``"redis/cache"``...

        With a health monitor running (``dbsystem.monitoring.HealthMonitor(db).start()``)
        its latest results are returned at once, whatever the pools are doing; otherwise,
        or with ``check=True``, every pool is checked now. A check never queues behind
        waiters: a pool with no connection to spare is reported ``degraded``, not pinged.
        """
        return dict(manager_health(self, check=check))


# ``DatabaseManager.instance()`` (and ``Engine.instance()``, which features call) makes this.
Engine._default_class = DatabaseManager
