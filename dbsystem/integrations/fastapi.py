"""FastAPI and Starlette: pools opened and closed with the app, connections and user sessions
as dependencies, a transaction per request when asked.

    from fastapi import Depends, FastAPI
    from dbsystem import AsyncDatabaseManager, DatabaseType
    from dbsystem.integrations.fastapi import DBSystem

    dbs = DBSystem(
        AsyncDatabaseManager(),
        pools={DatabaseType.POSTGRES: "postgresql://app@db/shop"},
        user=lambda request: request.headers.get("x-user"),   # the request's identity
        transaction=True,                                    # one transaction per request
    )
    app = FastAPI(lifespan=dbs.lifespan)

    @app.get("/orders")
    async def orders(conn=Depends(dbs.connection())):
        return await conn.fetch_all("SELECT * FROM orders")

    @app.get("/my-orders")
    async def my_orders(session=Depends(dbs.session())):
        return await session.fetch_all("SELECT * FROM orders")   # checked for the user

With an ``AsyncDatabaseManager`` the dependencies are async (for ``async def`` routes); with a
``DatabaseManager`` they are plain generators, which FastAPI runs on its thread pool, as it
runs ``def`` routes. ``dbs.lifespan`` also serves a Starlette app (``Starlette(lifespan=...)``);
``dbs.status_app()`` is the live status page to mount (``app.mount("/status", ...)``).

A connection dependency with ``transaction=True`` (or the ``DBSystem``'s default) runs the
request in one transaction: committed when the route returns, rolled back when it raises
(an ``HTTPException`` included). ``user=True`` lends the connection as the request's user
(``db.for_user``: access control and audit see that user). With no user function, the user
is Starlette's ``request.user`` (``AuthenticationMiddleware``) when authenticated. A request
without a user gets 401 from a dependency that needs one.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Unpack

from starlette.exceptions import HTTPException
from starlette.requests import Request

from dbsystem.aio.manager import AsyncDatabaseManager
from dbsystem.integrations._web import ConnectionArgs, Identity, PoolsArg, WebSettings, identity_of
from dbsystem.kernel.types import DatabaseType

__all__ = ["DBSystem", "Identity"]


class DBSystem:
    """The integration object: ``lifespan``, ``connection()``, ``session()``, ``status_app()``.

    ``db`` is a ``DatabaseManager`` or an ``AsyncDatabaseManager``; ``pools`` (``{type:
    PoolConfig or URL}``) and ``config`` (a TOML file, as ``db.configure``) are opened by the
    lifespan, which closes every pool of ``db`` at shutdown unless ``close=False``.
    ``user(request)`` returns the request's user: None, a name, ``(name, attrs)`` or an
    ``Identity`` (it may be async with an async manager).
    """

    def __init__(
        self,
        db: Any,
        *,
        pools: PoolsArg | None = None,
        config: str | os.PathLike[str] | None = None,
        user: Callable[[Request], Any] | None = None,
        transaction: bool = False,
        close: bool = True,
    ) -> None:
        self.db = db
        self.is_async = isinstance(db, AsyncDatabaseManager)
        self.settings = WebSettings.make(pools, config, user, transaction, close)

    # -- the app's life --------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Open the pools before the app serves, close them after (``FastAPI(lifespan=...)``)."""
        await self.open()
        try:
            yield
        finally:
            await self.close()

    async def open(self) -> None:
        """Create the configured pools (the lifespan's start-up)."""
        for step in self.settings.opening(self.db):
            if inspect.isawaitable(step):
                await step

    async def close(self) -> None:
        """Close every pool of the manager (the lifespan's shutdown), unless ``close=False``."""
        closed = self.settings.closing(self.db)
        if inspect.isawaitable(closed):
            await closed

    # -- dependencies ----------------------------------------------------------------------

    def connection(
        self, db_type: DatabaseType | None = None, **options: Unpack[ConnectionArgs]
    ) -> Callable[..., Any]:
        """A dependency lending a connection for the request (``Depends(dbs.connection())``).

        ``transaction`` (default: the ``DBSystem``'s) runs the request in one transaction;
        ``user=True`` lends it as the request's user (401 without one).
        """
        name, in_transaction, user = self.settings.connection_args(options)
        if self.is_async:

            async def async_dependency(request: Request) -> AsyncIterator[Any]:
                owner = await self._async_owner(request) if user else self.db
                async with owner.connection(db_type, name=name) as conn:
                    if in_transaction:
                        async with conn.transaction():
                            yield conn
                    else:
                        yield conn

            return async_dependency

        def dependency(request: Request) -> Iterator[Any]:
            owner = self._owner(request) if user else self.db
            with owner.connection(db_type, name=name) as conn:
                if in_transaction:
                    with conn.transaction():
                        yield conn
                else:
                    yield conn

        return dependency

    def session(self) -> Callable[..., Any]:
        """A dependency giving the request's user session (``db.for_user``; 401 without a
        user): every statement it runs is checked and audited for that user."""
        if self.is_async:

            async def async_dependency(request: Request) -> Any:
                return await self._async_owner(request)

            return async_dependency

        def dependency(request: Request) -> Any:
            return self._owner(request)

        return dependency

    def status_app(self, **options: Any) -> Any:
        """The live status page as an ASGI app to mount: ``app.mount("/status", ...)``.

        ``options`` go to ``dbsystem.monitoring.status.StatusPage`` (``monitor``,
        ``refresh``...)."""
        from dbsystem.monitoring.status import StatusPage

        return StatusPage(self.db, **options).asgi_app()

    # -- the request's user ----------------------------------------------------------------

    def _identity(self, found: Any) -> Identity:
        identity = identity_of(found)
        if identity is None:
            raise HTTPException(401, "authentication required")
        return identity

    def _raw_identity(self, request: Request) -> Any:
        if self.settings.user is not None:
            return self.settings.user(request)
        user = request.scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            return str(user.display_name)
        return None

    def _owner(self, request: Request) -> Any:
        identity = self._identity(self._raw_identity(request))
        return identity.session(self.db)

    async def _async_owner(self, request: Request) -> Any:
        found = self._raw_identity(request)
        if inspect.isawaitable(found):
            found = await found
        identity = self._identity(found)
        return identity.session(self.db)
