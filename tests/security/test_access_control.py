"""Access control on every entry point of a user session, on SQL, Redis and MongoDB."""

from __future__ import annotations

import uuid

import pytest

from dbsystem import ConfigurationError, DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.orm import Entity, Field
from dbsystem.query import col
from dbsystem.security import AccessControl, Permission, Role

READ_ONLY = Role("read_only", grants={"*": Permission.SELECT})
ADMIN = Role(
    "admin",
    grants={
        "*": Permission.SELECT
        | Permission.INSERT
        | Permission.UPDATE
        | Permission.DELETE
        | Permission.DDL
    },
)


class Note(Entity, table="notes"):
    id: int = Field(primary_key=True)
    text: str = ""


@pytest.fixture
def acl():
    control = AccessControl()
    control.create_role(READ_ONLY)
    control.create_role(ADMIN)
    control.assign_role("analyst", "read_only")
    control.assign_role("root", "admin")
    return control


@pytest.fixture
def db(acl, tmp_path):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/acl.db")
    manager.create_pool(DatabaseType.REDIS, "redis+mock://")
    manager.create_pool(DatabaseType.MONGODB, "mongodb+mock://acl")
    manager.set_mode(DatabaseType.SQLITE)
    manager.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    manager.execute("CREATE TABLE secrets (id INTEGER PRIMARY KEY, v TEXT)")
    manager.execute("INSERT INTO users VALUES (1, 'ada'), (2, 'bob')")
    manager.create_tables([Note])
    manager.use_access_control(acl)
    yield manager
    manager.close_all()


def count(db) -> int:
    return db.fetch_value("SELECT COUNT(*) FROM users")


def test_issue_example(db):
    session = db.for_user("analyst", session_id="s-42")
    rows = session.query(DatabaseType.SQLITE).select("*").from_("users").execute()
    assert len(rows) == 2
    with pytest.raises(PermissionDenied, match="may not delete on 'users'"):
        session.query(DatabaseType.SQLITE).delete_from("users").all_rows().execute()
    assert count(db) == 2


def test_deny_by_default_and_trusted_manager(db):
    nobody = db.for_user("nobody")
    with pytest.raises(PermissionDenied):
        nobody.fetch_all("SELECT * FROM users")
    assert db.fetch_all("SELECT name FROM users WHERE id = 1") == [{"name": "ada"}]


def test_grants_by_resource_inheritance_and_revoke(db, acl):
    acl.create_role(
        Role(
            "users_editor",
            grants={"users": Permission.INSERT | Permission.DELETE},
            inherits=("read_only",),
        )
    )
    acl.assign_role("editor", "users_editor")
    editor = db.for_user("editor")
    editor.execute("INSERT INTO users VALUES (3, 'cy')")
    assert editor.fetch_value("SELECT COUNT(*) FROM users") == 3  # inherited SELECT
    with pytest.raises(PermissionDenied, match="'secrets'"):
        editor.execute("INSERT INTO secrets VALUES (1, 'x')")
    acl.revoke_role("editor", "users_editor")
    with pytest.raises(PermissionDenied):  # takes effect on the next call
        editor.fetch_all("SELECT * FROM users")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; DROP TABLE users",
        "WITH gone AS (DELETE FROM users RETURNING id) SELECT * FROM gone",
        "DELETE FROM users WHERE id IN (SELECT id FROM users)",
        "this is not SQL ((",
        "INSERT INTO secrets SELECT id, name FROM users",
    ],
)
def test_raw_sql_is_read_statement_by_statement(db, sql):
    with pytest.raises(PermissionDenied):
        db.for_user("analyst").execute(sql)
    assert count(db) == 2


def test_reading_two_tables_needs_both(db, acl):
    acl.create_role(Role("users_only", grants={"users": Permission.SELECT}))
    acl.assign_role("narrow", "users_only")
    narrow = db.for_user("narrow")
    assert narrow.fetch_value("SELECT COUNT(*) FROM users") == 2
    with pytest.raises(PermissionDenied, match="'secrets'"):
        narrow.fetch_all("SELECT * FROM users JOIN secrets ON secrets.id = users.id")


def test_redis_by_command_and_key_prefix(db, acl):
    acl.create_role(Role("cache", grants={"user:*": Permission.SELECT | Permission.UPDATE}))
    acl.assign_role("worker", "cache")
    q = db.for_user("worker").query(DatabaseType.REDIS)
    q.set("user:1", "ada").execute()
    assert q.get("user:1").execute() == "ada"
    with pytest.raises(PermissionDenied, match="'order:1'"):
        q.get("order:1").execute()
    with pytest.raises(PermissionDenied):
        db.for_user("worker").connection(DatabaseType.REDIS).execute("FLUSHALL")
    with pytest.raises(PermissionDenied):
        q.delete("user:1").execute()


def test_mongodb_by_operation_and_collection(db, acl):
    acl.create_role(Role("docs", grants={"events": Permission.SELECT | Permission.INSERT}))
    acl.assign_role("writer", "docs")
    events = db.for_user("writer").query(DatabaseType.MONGODB).collection("events")
    events.insert_one({"kind": "login"}).execute()
    assert events.count().execute() == 1
    with pytest.raises(PermissionDenied):
        events.where("kind", "=", "login").delete_many().execute()
    with pytest.raises(PermissionDenied):
        db.for_user("writer").query(DatabaseType.MONGODB).collection("other").count().execute()


def test_require_user_makes_unattributed_access_an_error(db):
    db.use_access_control(AccessControl(require_user=True))
    with pytest.raises(PermissionDenied, match="without a user"):
        db.fetch_all("SELECT * FROM users")


def test_an_inheritance_cycle_is_a_configuration_error():
    acl = AccessControl()
    acl.create_role(Role("a", inherits=["b"]))
    acl.create_role(Role("b", inherits=["c"]))
    with pytest.raises(ConfigurationError, match="c -> a -> b -> c"):
        acl.create_role(Role("c", inherits=["a"]))
    with pytest.raises(ConfigurationError, match="cycle"):
        acl.create_role(Role("self", inherits=["self"]))
    acl.create_role(Role("c", inherits=["d"]))  # a chain is fine
    with pytest.raises(ConfigurationError, match="cycle"):
        acl.load_dict({"roles": {"x": {"inherits": ["y"]}, "y": {"inherits": ["x"]}}})
    assert acl.to_dict()["roles"]["a"]["inherits"] == ["b"]  # nothing replaced


def test_roles_round_trip_through_a_file(acl, tmp_path):
    path = tmp_path / "acl.json"
    acl.save(path)
    other = AccessControl()
    other.load(path)
    assert other.roles_of("analyst") == {"read_only"}
    assert other.allowed("root", "delete", "anything")
    assert not other.allowed("analyst", "insert", "users")
    toml = tmp_path / "acl.toml"
    toml.write_text('[roles.r]\ngrants = { "t" = "SELECT|INSERT" }\n[assignments]\nu = ["r"]\n')
    other.load(toml)
    assert other.allowed("u", "insert", "t") and not other.allowed("u", "delete", "t")


def _entry_points(session):
    """Every public way a session can run something, each as a zero-argument call."""
    sql = session.query(DatabaseType.SQLITE)

    def with_conn(fn):
        def run():
            with session.connection(DatabaseType.SQLITE) as conn:
                return fn(conn)

        return run

    def in_transaction():
        with session.transaction(DatabaseType.SQLITE) as conn:
            conn.execute("DELETE FROM users WHERE id = 1")

    return {
        "execute": lambda: session.execute("DELETE FROM users"),
        "executemany": lambda: session.executemany(
            "INSERT INTO users VALUES (:i, 'x')", [{"i": 9}]
        ),
        "fetch_all": lambda: session.fetch_all("SELECT * FROM users"),
        "fetch_one": lambda: session.fetch_one("SELECT * FROM users"),
        "fetch_value": lambda: session.fetch_value("SELECT COUNT(*) FROM users"),
        "insert_many": lambda: session.insert_many("users", [{"id": 9, "name": "x"}]),
        "stream": with_conn(lambda c: list(c.stream("SELECT * FROM users"))),
        "transaction": in_transaction,
        "select builder": lambda: sql.select("*").from_("users").execute(),
        "insert builder": lambda: sql.insert_into("users").values({"id": 9, "name": "x"}).execute(),
        "update builder": lambda: (
            sql.update("users").set({"name": "y"}).where("id", "=", 1).execute()
        ),
        "delete builder": lambda: sql.delete_from("users").where(col("id") > 0).execute(),
        "raw_sql": lambda: sql.raw_sql("SELECT * FROM users").execute(),
        "orm save": lambda: Note(id=1, text="x").save(session),
        "orm get": lambda: Note.get(session, 1),
        "orm query": lambda: Note.query(session).all(),
        "redis command": lambda: session.connection(DatabaseType.REDIS).execute("GET", "k"),
        "redis pipeline": lambda: session.connection(DatabaseType.REDIS).pipeline([("GET", "k")]),
        "redis builder": lambda: session.query(DatabaseType.REDIS).set("k", 1).execute(),
        "redis scan": lambda: list(session.query(DatabaseType.REDIS).scan(match="*")),
        "mongo find": lambda: session.query(DatabaseType.MONGODB).collection("c").all(),
        "mongo insert": lambda: (
            session.query(DatabaseType.MONGODB).collection("c").insert_one({"a": 1}).execute()
        ),
        "mongo aggregate": lambda: (
            session.query(DatabaseType.MONGODB).collection("c").aggregate().execute()
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    ],
)
def test_roles_round_trip_through_a_database_table(acl, kind, request, tmp_path):
    types = {"sqlite": DatabaseType.SQLITE, "postgres": DatabaseType.POSTGRES}
    url = (
        f"sqlite:///{tmp_path}/acl.db"
        if kind == "sqlite"
        else request.getfixturevalue(f"{kind}_url")
    )
    store = DatabaseManager()
    store.create_pool(types.get(kind, DatabaseType.MYSQL), url)
    table = f"acl_{uuid.uuid4().hex[:8]}"
    try:
        acl.save_to_table(store, table=table)
        other = AccessControl()
        other.load_from_table(store, table=table)
        assert other.to_dict() == acl.to_dict()
        assert other.allowed("analyst", "select", "users")
        acl.revoke_role("analyst", "read_only")
        acl.save_to_table(store, table=table)  # replaces, in one transaction
        other.load_from_table(store, table=table)
        assert not other.allowed("analyst", "select", "users")
    finally:
        store.execute(f"DROP TABLE IF EXISTS {table}")
        store.close_all()


def test_every_entry_point_of_a_session_is_checked(db):
    session = db.for_user("nobody")
    unchecked = []
    for name, call in _entry_points(session).items():
        try:
            call()
        except PermissionDenied:
            continue
        unchecked.append(name)
    assert unchecked == []
    assert count(db) == 2
    assert db.connection(DatabaseType.MONGODB).database["c"].count_documents({}) == 0


def test_raw_sql_can_be_held_to_a_grant_of_its_own(tmp_path):
    """S5: with raw_needs_grant, SQL text needs RAW besides its own permissions."""
    control = AccessControl(raw_needs_grant=True)
    control.create_role(Role("builder_only", grants={"*": "SELECT", "users": "INSERT"}))
    control.create_role(Role("raw_reader", grants={"users": "SELECT|RAW", "notes": "SELECT"}))
    control.assign_role("ann", "builder_only")
    control.assign_role("bob", "raw_reader")
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/raw.db")
    manager.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    manager.create_tables([Note])
    manager.use_access_control(control)
    ann, bob = manager.for_user("ann"), manager.for_user("bob")
    q = ann.query()

    def stream():
        with ann.connection() as conn:
            return list(conn.stream("SELECT * FROM users"))

    q.insert_into("users").values({"id": 1, "name": "ada"}).execute()
    assert q.select("name").from_("users").all() == [{"name": "ada"}]
    for attempt in (
        lambda: ann.fetch_all("SELECT * FROM users"),
        lambda: ann.execute("INSERT INTO users VALUES (2, 'x')"),
        lambda: ann.fetch_value("SELECT 1"),  # no table: RAW on "*"
        stream,
        lambda: q.raw_sql("SELECT * FROM users").execute(),
    ):
        with pytest.raises(PermissionDenied, match="RAW"):
            attempt()
    assert bob.fetch_all("SELECT name FROM users") == [{"name": "ada"}]
    assert bob.query().raw_sql("SELECT name FROM users").execute() == [{"name": "ada"}]
    with pytest.raises(PermissionDenied, match="may not delete"):  # RAW adds no action
        bob.execute("DELETE FROM users")
    with pytest.raises(PermissionDenied, match="RAW"):  # RAW is per table
        bob.fetch_all("SELECT * FROM notes")
    assert manager.fetch_value("SELECT COUNT(*) FROM users") == 1
    # Without the setting, raw SQL needs only what it does.
    control.raw_needs_grant = False
    assert ann.fetch_all("SELECT name FROM users") == [{"name": "ada"}]
    manager.close_all()
