"""Defence in depth (the catalog's S11): the layer's decisions line up with PostgreSQL's own
GRANTs and row-level security for a non-superuser role, so a server configured to match
refuses what the layer refuses if the layer were ever bypassed."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, DBSystemError
from dbsystem.query import col
from dbsystem.security import AccessControl, Role

pytestmark = pytest.mark.postgres

STATEMENTS = {  # (action, table) -> SQL
    ("select", "orders"): "SELECT id FROM {orders}",
    ("select", "users"): "SELECT id FROM {users}",
    ("select", "secret"): "SELECT id FROM {secret}",
    ("insert", "users"): "INSERT INTO {users} VALUES (101)",  # the layer inserts 100
    ("insert", "orders"): "INSERT INTO {orders} VALUES (100, 1)",
    ("update", "users"): "UPDATE {users} SET id = id",
    ("delete", "users"): "DELETE FROM {users} WHERE id = 100",
    ("delete", "secret"): "DELETE FROM {secret}",
    ("ddl", "users"): "DROP TABLE {users}",
}


@pytest.fixture
def setup(postgres_url):
    suffix = uuid.uuid4().hex[:6]
    names = {t: f"s11_{t}_{suffix}" for t in ("orders", "users", "secret")}
    role = f"s11_reader_{suffix}"
    admin = DatabaseManager()
    admin.create_pool(DatabaseType.POSTGRES, postgres_url)
    admin.execute(f"CREATE TABLE {names['orders']} (id INTEGER PRIMARY KEY, tenant_id INTEGER)")
    admin.execute(f"CREATE TABLE {names['users']} (id INTEGER PRIMARY KEY)")
    admin.execute(f"CREATE TABLE {names['secret']} (id INTEGER PRIMARY KEY)")
    admin.execute(f"INSERT INTO {names['orders']} VALUES (1, 1), (2, 2)")
    admin.execute(f"INSERT INTO {names['users']} VALUES (1)")
    admin.execute(f"INSERT INTO {names['secret']} VALUES (1)")
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(
        f"GRANT SELECT ON {names['orders']}, {names['users']}, {names['secret']} TO {role}"
    )
    admin.execute(f"GRANT INSERT ON {names['users']} TO {role}")
    # Row-level security: one policy on orders; none on secret, so no row is visible.
    admin.execute(f"ALTER TABLE {names['orders']} ENABLE ROW LEVEL SECURITY")
    admin.execute(f"CREATE POLICY tenant ON {names['orders']} TO {role} USING (tenant_id = 1)")
    admin.execute(f"ALTER TABLE {names['secret']} ENABLE ROW LEVEL SECURITY")

    acl = AccessControl()
    acl.create_role(
        Role(
            "reader",
            grants={
                names["orders"]: "SELECT",
                names["users"]: "SELECT|INSERT",
                names["secret"]: "SELECT",
            },
            policies={names["orders"]: col("tenant_id") == 1, names["secret"]: col("id") < 0},
        )
    )
    acl.assign_role("ann", "reader")
    layer = DatabaseManager()  # connected as the superuser: only the layer decides
    layer.create_pool(DatabaseType.POSTGRES, postgres_url)
    layer.use_access_control(acl)
    server = DatabaseManager()  # connected as the role, unchecked: only the server decides
    server.create_pool(DatabaseType.POSTGRES, postgres_url.replace("://root@", f"://{role}@"))
    yield names, layer.for_user("ann"), server
    server.close_all()
    layer.close_all()
    for table in names.values():
        admin.execute(f"DROP TABLE IF EXISTS {table}")
    admin.execute(f"DROP ROLE {role}")
    admin.close_all()


def _allowed(run, *args) -> bool:
    try:
        run(*args)
    except DBSystemError as exc:
        assert type(exc).__name__ in ("PermissionDenied", "ProgrammingError", "OperationalError")
        return False
    return True


def test_layer_and_server_decide_alike(setup):
    names, session, server = setup
    discrepancies = []
    for (action, table), sql in STATEMENTS.items():
        text = sql.format(**names)
        if action == "select":  # raw SQL on policy tables is refused: use the builder
            layer_ok = _allowed(session.query().select("id").from_(names[table]).all)
        elif action == "insert" and table == "users":
            layer_ok = _allowed(session.query().insert_into(names["users"]).values(id=100).execute)
        else:
            layer_ok = _allowed(session.execute, text)
        server_ok = _allowed(server.execute, text)
        if layer_ok != server_ok:
            discrepancies.append((action, table, layer_ok, server_ok))
    assert discrepancies == []


def test_rows_visible_through_the_layer_match_row_level_security(setup):
    names, session, server = setup
    q = session.query()
    for table in ("orders", "secret", "users"):
        through_layer = sorted(r["id"] for r in q.select("id").from_(names[table]).all())
        on_server = sorted(r["id"] for r in server.fetch_all(f"SELECT id FROM {names[table]}"))
        assert through_layer == on_server, table
    assert server.fetch_all(f"SELECT id FROM {names['secret']}") == []  # RLS, no policy
