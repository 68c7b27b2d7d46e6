"""dbsystem.integrations.fastapi with FastAPI's TestClient: the lifespan opens and closes the
pools; connection and user-session dependencies; a transaction per request; sync routes on a
DatabaseManager and async routes on an AsyncDatabaseManager, on SQLite and PostgreSQL."""

from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")

from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType
from dbsystem.errors import PermissionDenied
from dbsystem.integrations.fastapi import DBSystem
from dbsystem.security import AccessControl, Permission, Role
from tests.integrations.conftest import WEB_KINDS, StatementUsers


def _acl(table: str) -> AccessControl:
    acl = AccessControl()
    acl.create_role(Role("reader", grants={table: Permission.SELECT}))
    acl.assign_role("ann", "reader")
    return acl


def _sync_app(db_type, url, table, db: DatabaseManager) -> tuple[FastAPI, DBSystem]:
    dbs = DBSystem(db, pools={db_type: url}, user=lambda r: r.headers.get("x-user"))
    app = FastAPI(lifespan=dbs.lifespan)

    @app.get("/rows")
    def rows(conn: Annotated[Any, Depends(dbs.connection())]):
        return conn.fetch_all(f"SELECT id, owner FROM {table} ORDER BY id")

    @app.post("/rows/{row_id}")
    def add(
        row_id: int,
        conn: Annotated[Any, Depends(dbs.connection(transaction=True))],
        fail: bool = False,
    ):
        conn.execute(f"INSERT INTO {table} (id, owner) VALUES (:id, 'bob')", {"id": row_id})
        if fail:
            raise HTTPException(409, "refused after the insert")
        return {"added": row_id}

    @app.get("/mine")
    def mine(session: Annotated[Any, Depends(dbs.session())]):
        try:
            return session.fetch_all(f"SELECT id FROM {table} ORDER BY id")
        except PermissionDenied as exc:
            raise HTTPException(403, "not allowed") from exc

    @app.get("/mine-conn")
    def mine_conn(conn: Annotated[Any, Depends(dbs.connection(user=True))]):
        return conn.fetch_all(f"SELECT id FROM {table} ORDER BY id")

    return app, dbs


def _async_app(db_type, url, table, db: AsyncDatabaseManager) -> tuple[FastAPI, DBSystem]:
    async def who(request):
        return request.headers.get("x-user")

    dbs = DBSystem(db, pools={db_type: url}, user=who, transaction=True)
    app = FastAPI(lifespan=dbs.lifespan)

    @app.get("/rows")
    async def rows(conn: Annotated[Any, Depends(dbs.connection(transaction=False))]):
        return await conn.fetch_all(f"SELECT id, owner FROM {table} ORDER BY id")

    @app.post("/rows/{row_id}")
    async def add(row_id: int, conn: Annotated[Any, Depends(dbs.connection())], fail: bool = False):
        await conn.execute(f"INSERT INTO {table} (id, owner) VALUES (:id, 'bob')", {"id": row_id})
        if fail:
            raise HTTPException(409, "refused after the insert")
        return {"added": row_id}

    @app.get("/mine")
    async def mine(session: Annotated[Any, Depends(dbs.session())]):
        try:
            return await session.fetch_all(f"SELECT id FROM {table} ORDER BY id")
        except PermissionDenied as exc:
            raise HTTPException(403, "not allowed") from exc

    @app.get("/mine-conn")
    async def mine_conn(
        conn: Annotated[Any, Depends(dbs.connection(user=True, transaction=False))],
    ):
        return await conn.fetch_all(f"SELECT id FROM {table} ORDER BY id")

    return app, dbs


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("web_target", WEB_KINDS, indirect=True)
def test_routes_get_the_lifespans_pools_connections_transactions_and_users(web_target, mode):
    db_type, url, table = web_target
    db = DatabaseManager() if mode == "sync" else AsyncDatabaseManager()
    db.use_access_control(_acl(table))
    seen = db.add_hook(StatementUsers())
    make = _sync_app if mode == "sync" else _async_app
    app, _ = make(db_type, url, table, db)
    with TestClient(app) as client:
        assert list(db.pools()) == [(db_type, None)]
        assert client.get("/rows").json() == [{"id": 1, "owner": "ann"}]
        assert client.post("/rows/2").json() == {"added": 2}
        assert client.post("/rows/3", params={"fail": True}).status_code == 409
        assert [r["id"] for r in client.get("/rows").json()] == [1, 2]
        seen.users.clear()
        assert client.get("/mine", headers={"x-user": "ann"}).json() == [{"id": 1}, {"id": 2}]
        assert client.get("/mine-conn", headers={"x-user": "ann"}).status_code == 200
        assert seen.users == ["ann", "ann"]
        assert client.get("/mine", headers={"x-user": "bob"}).status_code == 403
        assert client.get("/mine").status_code == 401
        assert client.get("/mine-conn").status_code == 401
    assert db.pools() == {}


def test_an_exception_in_the_route_rolls_the_request_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'boom.db'}"
    db = DatabaseManager()
    dbs = DBSystem(db, pools={DatabaseType.SQLITE: url}, transaction=True)
    app = FastAPI(lifespan=dbs.lifespan)

    @app.post("/boom")
    def boom(conn: Annotated[Any, Depends(dbs.connection())]):
        conn.execute("INSERT INTO t (a) VALUES (1)")
        raise RuntimeError("the route failed")

    with TestClient(app, raise_server_exceptions=False) as client:
        db.execute("CREATE TABLE t (a INTEGER)")
        assert client.post("/boom").status_code == 500
        assert db.fetch_value("SELECT COUNT(*) FROM t") == 0


def test_starlette_apps_use_the_lifespan_and_the_starlette_user(tmp_path):
    from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware

    class Header(AuthenticationBackend):
        async def authenticate(self, conn):
            name = conn.headers.get("x-user")
            return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None

    adb = AsyncDatabaseManager()
    dbs = DBSystem(adb, pools={DatabaseType.SQLITE: f"sqlite:///{tmp_path / 's.db'}"})
    app = Starlette(
        lifespan=dbs.lifespan, middleware=[Middleware(AuthenticationMiddleware, backend=Header())]
    )
    fastapi_app = FastAPI()
    app.mount("/api", fastapi_app)

    @fastapi_app.get("/who")
    async def who(session: Annotated[Any, Depends(dbs.session())]):
        return session.context.user

    with TestClient(app) as client:
        assert list(adb.pools()) == [(DatabaseType.SQLITE, None)]
        assert client.get("/api/who", headers={"x-user": "carol"}).json() == "carol"
        assert client.get("/api/who").status_code == 401
    assert adb.pools() == {}
