"""Flask: an extension opening the pools with the app, a connection and a user session per
request, a transaction per request when asked.

    from flask import Flask, request
    from dbsystem import DatabaseManager, DatabaseType
    from dbsystem.integrations.flask import DBSystem

    dbs = DBSystem(
        DatabaseManager(),
        pools={DatabaseType.POSTGRES: "postgresql://app@db/shop"},
        user=lambda request: request.headers.get("x-user"),   # the request's identity
        transaction=True,                                    # one transaction per request
    )
    app = Flask(__name__)
    dbs.init_app(app)                       # opens the pools; dbs.close() closes them

    @app.get("/orders")
    def orders():
        return dbs.connection().fetch_all("SELECT * FROM orders")

    @app.get("/my-orders")
    async def my_orders():                   # async views too (flask[async])
        return dbs.session().fetch_all("SELECT * FROM orders")   # checked for the user

``dbs.connection()`` lends one connection per request and pool (the same one on every call
in the request), returned when the request ends. With ``transaction=True`` (the extension's
default, or per call) that connection runs the request in one transaction: committed when the
response is a success (status below 400), rolled back when the view raised or the response
is an error (``abort(404)`` included). ``dbs.connection(user=True)`` lends it as the
request's user. ``dbs.session()`` is the request's ``db.for_user`` session. Without a user
the request is answered 401. ``dbs.init_status(app)`` serves the live status page at
``/status``.

Flask's views are synchronous (an async view runs in its own short-lived event loop), so the
extension takes a ``DatabaseManager``; its pools are thread-safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Unpack

from flask import Flask, Response, abort, g, request, url_for

from dbsystem.aio.manager import AsyncDatabaseManager
from dbsystem.errors import ConfigurationError, DBSystemError
from dbsystem.integrations._web import ConnectionArgs, Identity, PoolsArg, WebSettings, identity_of
from dbsystem.kernel.types import DatabaseType

__all__ = ["DBSystem", "Identity"]

_STATE = "_dbsystem_requests"


class DBSystem:
    """The Flask extension; see the module docstring.

    ``db`` is a ``DatabaseManager``. ``pools`` (``{type: PoolConfig or URL}``) and
    ``config`` (a TOML file, as ``db.configure``) are opened by ``init_app``; ``close()``
    closes every pool of ``db`` (unless ``close=False``). ``user(request)`` returns the
    request's user: None, a name, ``(name, attrs)`` or an ``Identity``.
    """

    def __init__(
        self,
        db: Any,
        app: Flask | None = None,
        *,
        pools: PoolsArg | None = None,
        config: str | os.PathLike[str] | None = None,
        user: Callable[[Any], Any] | None = None,
        transaction: bool = False,
        close: bool = True,
    ) -> None:
        if isinstance(db, AsyncDatabaseManager):
            raise ConfigurationError(
                "the Flask extension takes a DatabaseManager: Flask's views are synchronous"
            )
        self.db = db
        self.settings = WebSettings.make(pools, config, user, transaction, close)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Open the configured pools and return each request's connections when it ends."""
        for _ in self.settings.opening(self.db):
            pass
        app.extensions["dbsystem"] = self
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)

    def close(self) -> None:
        """Close every pool of the manager (at the application's shutdown)."""
        self.settings.closing(self.db)

    # -- per request -----------------------------------------------------------------------

    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionArgs]
    ) -> Any:
        """The request's connection to ``db_type``'s pool (lent on first use, returned when
        the request ends); in one transaction for the request if ``transaction`` (default:
        the extension's); as the request's user with ``user=True``."""
        state = _request_state()
        name, in_transaction, user = self.settings.connection_args(options)
        key = (db_type or self.db.mode, name, in_transaction, user)
        conn = state["connections"].get(key)
        if conn is None:
            owner = self.session() if user else self.db
            stack: ExitStack = state["stack"]
            conn = stack.enter_context(owner.connection(db_type, name=name))
            if in_transaction:
                stack.enter_context(conn.transaction())
            state["connections"][key] = conn
        return conn

    def session(self) -> Any:
        """The request's user session (``db.for_user``); 401 when the request has no user."""
        state = _request_state()
        session = state.get("session")
        if session is None:
            found = self.settings.user(request) if self.settings.user is not None else None
            identity = identity_of(found)
            if identity is None:
                abort(401)
            session = identity.session(self.db)
            state["session"] = session
        return session

    def init_status(self, app: Flask, url_prefix: str = "/status", **options: Any) -> None:
        """Serve the live status page at ``url_prefix`` (and its JSON at ``.../data``).

        ``options`` go to ``dbsystem.monitoring.status.StatusPage``."""
        from dbsystem.monitoring.status import StatusPage

        page = StatusPage(self.db, **options)
        prefix = url_prefix.rstrip("/")

        def status_html() -> Response:
            return Response(page.html(url_for("dbsystem_status_data")), mimetype="text/html")

        def status_data() -> Response:
            return Response(page.json(), mimetype="application/json")

        app.add_url_rule(prefix or "/", "dbsystem_status", status_html)
        app.add_url_rule(f"{prefix}/data", "dbsystem_status_data", status_data)

    # -- the end of a request --------------------------------------------------------------

    def _after_request(self, response: Response) -> Response:
        state = g.get(_STATE)
        if state is not None:
            state["failed"] = response.status_code >= 400
        return response

    def _teardown_request(self, exc: BaseException | None) -> None:
        state = g.pop(_STATE, None)
        if state is None:
            return
        stack: ExitStack = state["stack"]
        if exc is not None:
            stack.__exit__(type(exc), exc, exc.__traceback__)
        elif state.get("failed"):
            failure = _ErrorResponse("the response was an error: rolled back")
            stack.__exit__(_ErrorResponse, failure, None)
        else:
            stack.close()


class _ErrorResponse(DBSystemError):
    """Handed to the request's transaction when the response is an error: it rolls back.
    (Never raised: the transaction only needs to see that the request failed.)"""


def _request_state() -> dict[str, Any]:
    state: dict[str, Any] | None = g.get(_STATE)
    if state is None:
        state = {"stack": ExitStack(), "connections": {}}
        setattr(g, _STATE, state)
    return state
