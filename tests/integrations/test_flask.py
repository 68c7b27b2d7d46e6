"""dbsystem.integrations.flask with Flask's test client: pools opened by init_app, one
connection per request, a transaction per request (rolled back on an exception or an error
response), the request's user session; sync and async views; SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")

from flask import Flask, abort, request

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType
from dbsystem.errors import ConfigurationError, PermissionDenied
from dbsystem.integrations.flask import DBSystem
from dbsystem.security import AccessControl, Permission, Role
from tests.integrations.conftest import WEB_KINDS, StatementUsers


@pytest.mark.parametrize("web_target", WEB_KINDS, indirect=True)
def test_sync_and_async_views_with_transactions_and_users(web_target):
    db_type, url, table = web_target
    db = DatabaseManager()
    acl = AccessControl()
    acl.create_role(Role("reader", grants={table: Permission.SELECT}))
    acl.assign_role("ann", "reader")
    db.use_access_control(acl)
    seen = db.add_hook(StatementUsers())
    dbs = DBSystem(
        db, pools={db_type: url}, user=lambda r: r.headers.get("x-user"), transaction=True
    )
    app = Flask(__name__)
    dbs.init_app(app)

    @app.get("/rows")
    def rows():
        conn = dbs.connection(transaction=False)
        assert dbs.connection(transaction=False) is conn  # one per request
        return conn.fetch_all(f"SELECT id, owner FROM {table} ORDER BY id")

    @app.post("/rows/<int:row_id>")
    def add(row_id: int):
        dbs.connection().execute(
            f"INSERT INTO {table} (id, owner) VALUES (:id, 'bob')", {"id": row_id}
        )
        if request.args.get("fail") == "abort":
            abort(409)
        if request.args.get("fail") == "raise":
            raise KeyError("the view failed")
        return {"added": row_id}

    @app.post("/async/<int:row_id>")
    async def add_async(row_id: int):
        dbs.connection().execute(
            f"INSERT INTO {table} (id, owner) VALUES (:id, 'bob')", {"id": row_id}
        )
        return {"added": row_id}

    @app.get("/mine")
    async def mine():
        try:
            return dbs.session().fetch_all(f"SELECT id FROM {table} ORDER BY id")
        except PermissionDenied:
            abort(403)

    try:
        assert list(db.pools()) == [(db_type, None)]
        client = app.test_client()
        assert client.get("/rows").json == [{"id": 1, "owner": "ann"}]
        assert client.post("/rows/2").json == {"added": 2}
        assert client.post("/rows/3?fail=abort").status_code == 409
        assert client.post("/rows/4?fail=raise").status_code == 500
        assert client.post("/async/5").json == {"added": 5}
        assert [r["id"] for r in client.get("/rows").json] == [1, 2, 5]
        assert db.pool_stats()[db_type].active == 0  # every request returned its connection
        seen.users.clear()
        assert client.get("/mine", headers={"x-user": "ann"}).json == [
            {"id": 1},
            {"id": 2},
            {"id": 5},
        ]
        assert seen.users == ["ann"]
        assert client.get("/mine", headers={"x-user": "bob"}).status_code == 403
        assert client.get("/mine").status_code == 401
    finally:
        dbs.close()
    assert db.pools() == {}


def test_the_extension_refuses_an_async_manager():
    with pytest.raises(ConfigurationError, match="DatabaseManager"):
        DBSystem(AsyncDatabaseManager())


def test_a_user_connection_runs_as_the_user(tmp_path):
    db = DatabaseManager()
    seen = db.add_hook(StatementUsers())
    db.use_access_control(AccessControl())  # nobody has grants
    dbs = DBSystem(
        db,
        pools={DatabaseType.SQLITE: f"sqlite:///{tmp_path / 'u.db'}"},
        user=lambda r: ("dan", {"tenant": 7}),
    )
    app = Flask(__name__)
    dbs.init_app(app)

    @app.get("/")
    def index():
        try:
            dbs.connection(user=True).fetch_value("SELECT 1")
        except PermissionDenied:
            return {"denied": dbs.session().context.attrs["tenant"]}
        return {"denied": None}

    try:
        assert app.test_client().get("/").json == {"denied": 7}
        assert seen.users == ["dan"]
    finally:
        dbs.close()
