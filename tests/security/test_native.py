"""Native enforcement, the second wall (issue 20): with the Python check switched off
(``dbsystem.testing.python_check_disabled``), the database alone refuses each attack class
of a user session; with both walls on, our check refuses first and the audit log sees it.

PostgreSQL roles are cluster-wide: every object made here carries the prefix
``dbsystem_r_native_<random>_`` and is dropped at the end (by applying an empty model, which
also shows that ``apply_native`` converges by dropping what the model no longer has).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dbsystem import DatabaseManager, DatabaseType, DBSystemError, PermissionDenied
from dbsystem.query import col
from dbsystem.security import AccessControl, AuditLog, MemoryAuditSink, Permission, Role
from dbsystem.security.native import (
    NativeApplyError,
    compile_predicate,
    sqlite_authorizer,
)
from dbsystem.testing import python_check_disabled

PG = DatabaseType.POSTGRES
LITE = DatabaseType.SQLITE
REFUSED = "not authorized|prohibited"  # SQLite's words for an authorizer's refusal


# -- PostgreSQL ----------------------------------------------------------------------------


class PgWorld:
    """Two tables (``orders`` with tenants, ``secret``), an ACL with native enforcement."""

    def __init__(self, url: str) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.prefix = f"dbsystem_r_native_{suffix}_"
        self.orders = f"native_orders_{suffix}"
        self.secret = f"native_secret_{suffix}"
        self.notes = f"native_notes_{suffix}"
        self.url = url
        self.db = DatabaseManager()
        self.db.create_pool(PG, url)
        db = self.db
        db.execute(f"CREATE TABLE {self.orders} (id INT PRIMARY KEY, tenant_id INT, v TEXT)")
        db.execute(f"CREATE TABLE {self.secret} (id INT PRIMARY KEY)")
        db.execute(f"CREATE TABLE {self.notes} (id INT PRIMARY KEY, body TEXT)")
        db.execute(f"INSERT INTO {self.orders} VALUES (1, 7, 'a'), (2, 8, 'b'), (3, 7, 'c')")
        db.execute(f"INSERT INTO {self.secret} VALUES (1)")
        db.execute(f"INSERT INTO {self.notes} VALUES (1, 'n')")
        self.acl = AccessControl(native=True, native_prefix=self.prefix)
        tenant = {self.orders: lambda ctx: col("tenant_id") == ctx.attrs["tenant"]}
        self.acl.create_role(Role("analyst", grants={self.orders: "SELECT"}, policies=tenant))
        self.acl.create_role(
            Role("clerk", grants={self.orders: "SELECT|INSERT|UPDATE"}, policies=tenant)
        )
        self.acl.create_role(Role("reader", grants={self.notes: "SELECT"}))
        self.acl.assign_role("ann", "analyst")
        self.acl.assign_role("carl", "clerk")
        self.acl.assign_role("multi", "analyst")
        self.acl.assign_role("multi", "reader")

    def close(self) -> None:
        try:
            AccessControl(native_prefix=self.prefix).apply_native(self.db)  # drops our roles
        finally:
            self.db.execute(f"DROP TABLE IF EXISTS {self.orders}, {self.secret}, {self.notes}")
            self.db.close_all()

    def roles(self) -> set[str]:
        rows = self.db.fetch_all(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, :p)", {"p": self.prefix}
        )
        return {r["rolname"] for r in rows}


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PgWorld]:
    world = PgWorld(postgres_url)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def applied(pg: PgWorld) -> PgWorld:
    pg.acl.apply_native(pg.db)
    pg.db.use_access_control(pg.acl)
    return pg


@pytest.mark.postgres
def test_plan_is_pure(pg: PgWorld) -> None:
    plan = pg.acl.native_plan(pg.db, PG)
    assert f'CREATE ROLE "{pg.prefix}analyst" NOLOGIN' in plan.statements
    assert pg.roles() == set()


@pytest.mark.postgres
def test_plan_shows_grants_and_rls_policies(pg: PgWorld) -> None:
    text = str(pg.acl.native_plan(pg.db, PG))
    assert f'GRANT SELECT ON TABLE "{pg.orders}" TO "{pg.prefix}analyst"' in text
    assert f'ALTER TABLE "{pg.orders}" ENABLE ROW LEVEL SECURITY' in text
    assert "current_setting(E'dbsystem.attr.tenant', true)" in text


@pytest.mark.postgres
def test_apply_converges(applied: PgWorld) -> None:
    assert applied.acl.native_plan(applied.db, PG).empty


@pytest.mark.postgres
def test_apply_makes_one_role_per_role_and_one_per_set_of_roles(applied: PgWorld) -> None:
    assert len(applied.roles()) == 4  # analyst, clerk, reader, and multi's combination


@pytest.mark.postgres
def test_a_grant_removed_from_the_model_is_revoked(applied: PgWorld) -> None:
    applied.acl.create_role(Role("reader", grants={}))
    plan = applied.acl.apply_native(applied.db)
    assert f'REVOKE SELECT ON TABLE "{applied.notes}" FROM "{applied.prefix}reader"' in (
        plan.statements
    )


@pytest.mark.postgres
def test_engine_alone_refuses_a_read_of_an_ungranted_table(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), pytest.raises(DBSystemError, match="permission"):
        ann.fetch_all(f"SELECT * FROM {applied.secret}")


@pytest.mark.postgres
def test_engine_alone_refuses_a_write_without_its_action(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), pytest.raises(DBSystemError, match="permission"):
        ann.execute(f"DELETE FROM {applied.orders}")


@pytest.mark.postgres
def test_engine_alone_hides_rows_outside_the_tenant_policy(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with python_check_disabled(applied.acl):
        rows = ann.fetch_all(f"SELECT id FROM {applied.orders} WHERE tenant_id = 8")
    assert rows == []


@pytest.mark.postgres
def test_engine_alone_filters_a_builder_select_by_tenant(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with python_check_disabled(applied.acl):
        rows = ann.query(PG).select("id").from_(applied.orders).order_by("id").all()
    assert [r["id"] for r in rows] == [1, 3]


@pytest.mark.postgres
def test_engine_alone_refuses_an_insert_into_another_tenant(applied: PgWorld) -> None:
    carl = applied.db.for_user("carl", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), pytest.raises(DBSystemError, match="row-level"):
        carl.execute(f"INSERT INTO {applied.orders} VALUES (9, 8, 'x')")


@pytest.mark.postgres
def test_engine_alone_refuses_moving_a_row_to_another_tenant(applied: PgWorld) -> None:
    carl = applied.db.for_user("carl", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), pytest.raises(DBSystemError, match="row-level"):
        carl.execute(f"UPDATE {applied.orders} SET tenant_id = 8 WHERE id = 1")


@pytest.mark.postgres
def test_engine_alone_updates_no_row_of_another_tenant(applied: PgWorld) -> None:
    carl = applied.db.for_user("carl", attrs={"tenant": 7})
    with python_check_disabled(applied.acl):
        changed = carl.execute(f"UPDATE {applied.orders} SET v = 'z' WHERE id = 2")
    assert changed == 0


@pytest.mark.postgres
def test_a_transaction_of_the_session_runs_as_its_role(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), ann.transaction(PG) as conn:
        who = conn.fetch_value("SELECT current_user")
    assert who == f"{applied.prefix}analyst"


@pytest.mark.postgres
def test_a_read_served_by_a_replica_is_scoped_too(applied: PgWorld) -> None:
    from dbsystem import PoolConfig

    db = DatabaseManager()
    db.create_pool(PG, PoolConfig(url=applied.url, replicas=[applied.url], max_size=2))
    db.use_access_control(applied.acl)
    try:
        ann = db.for_user("ann", attrs={"tenant": 8})
        with python_check_disabled(applied.acl):
            rows = ann.fetch_all(f"SELECT id FROM {applied.orders}")
    finally:
        db.close_all()
    assert rows == [{"id": 2}]


@pytest.mark.postgres
def test_a_statement_resetting_the_role_changes_only_itself(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), ann.transaction(PG) as conn:
        conn.execute("RESET ROLE")
        with pytest.raises(DBSystemError, match="permission"):
            conn.fetch_all(f"SELECT * FROM {applied.secret}")


@pytest.mark.postgres
def test_nothing_outlives_the_statement(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), ann.connection(PG) as conn:
        conn.fetch_all(f"SELECT id FROM {applied.orders}")
        raw = conn._raw
    with applied.db.connection(PG) as conn:
        assert conn._raw is raw  # the same connection, back with the application
        who = conn.fetch_value("SELECT current_user || ':' || current_setting('role')")
    assert who == "root:none" or not who.startswith(applied.prefix)


@pytest.mark.postgres
def test_the_application_sees_every_row_after_a_session(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    ann.query(PG).select("id").from_(applied.orders).all()
    assert applied.db.fetch_value(f"SELECT count(*) FROM {applied.orders}") == 3


@pytest.mark.postgres
def test_a_user_with_two_roles_gets_both(applied: PgWorld) -> None:
    multi = applied.db.for_user("multi", attrs={"tenant": 8})
    with python_check_disabled(applied.acl):
        notes = multi.fetch_all(f"SELECT id FROM {applied.notes}")
        orders = multi.fetch_all(f"SELECT id FROM {applied.orders}")
    assert (len(notes), [r["id"] for r in orders]) == (1, [2])


@pytest.mark.postgres
def test_a_user_the_database_does_not_know_is_refused(applied: PgWorld) -> None:
    applied.acl.assign_role("newcomer", "analyst")
    applied.acl.assign_role("newcomer", "clerk")  # a set of roles apply has not made
    newcomer = applied.db.for_user("newcomer", attrs={"tenant": 7})
    with python_check_disabled(applied.acl), pytest.raises(DBSystemError, match="role"):
        newcomer.fetch_all(f"SELECT id FROM {applied.orders}")


@pytest.mark.postgres
@pytest.mark.parametrize("body", ["n' OR 'a'='a", "n\\' OR true --"])
def test_an_attribute_is_a_value_never_sql(pg: PgWorld, body: str) -> None:
    pg.acl.create_role(
        Role(
            "scribe",
            grants={pg.notes: "SELECT"},
            policies={pg.notes: lambda ctx: col("body") == ctx.attrs["body"]},
        )
    )
    pg.acl.assign_role("sam", "scribe")
    pg.acl.apply_native(pg.db)
    pg.db.use_access_control(pg.acl)
    pg.db.execute(f"INSERT INTO {pg.notes} VALUES (2, :b)", {"b": body})
    sam = pg.db.for_user("sam", attrs={"body": body})
    with python_check_disabled(pg.acl):
        rows = sam.fetch_all(f"SELECT body FROM {pg.notes}")
    assert rows == [{"body": body}]


@pytest.mark.postgres
def test_a_policy_sql_cannot_express_stays_python_only(pg: PgWorld) -> None:
    pg.acl.create_role(
        Role(
            "odd",
            grants={pg.notes: "SELECT"},
            policies={pg.notes: lambda ctx: col("body") == ctx.attrs["x"].upper()},
        )
    )
    plan = pg.acl.native_plan(pg.db, PG)
    assert any(pg.notes in item and "'odd'" in item for item in plan.python_only)


@pytest.mark.postgres
def test_both_walls_refuse_with_our_check_first_and_audit_it(applied: PgWorld) -> None:
    sink = MemoryAuditSink()
    applied.db.add_hook(AuditLog([sink]))
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with pytest.raises(PermissionDenied):
        ann.fetch_all(f"SELECT * FROM {applied.secret}")
    assert [e.outcome for e in sink.events if applied.secret in e.resources] == ["denied"]


@pytest.mark.postgres
def test_raw_sql_on_a_table_whose_policy_the_database_enforces_is_allowed(
    applied: PgWorld,
) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    rows = ann.fetch_all(f"SELECT id FROM {applied.orders} ORDER BY id")
    assert [r["id"] for r in rows] == [1, 3]


@pytest.mark.postgres
def test_raw_sql_that_could_reset_the_role_gets_no_native_allowance(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    sql = (
        "SELECT set_config('role', 'none', true) AS r, query_to_xml('SELECT * FROM "
        f"{applied.orders}', true, true, '') AS x FROM {applied.orders}"
    )
    with pytest.raises(PermissionDenied):
        ann.fetch_all(sql)


@pytest.mark.postgres
def test_raw_sql_is_refused_again_once_the_model_changes(applied: PgWorld) -> None:
    applied.acl.create_role(Role("reader", grants={applied.notes: "SELECT"}))  # not applied
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with pytest.raises(PermissionDenied, match="row policy"):
        ann.fetch_all(f"SELECT id FROM {applied.orders}")


@pytest.mark.postgres
def test_raw_sql_on_a_python_only_policy_stays_refused(pg: PgWorld) -> None:
    pg.acl.create_role(
        Role(
            "odd",
            grants={pg.notes: "SELECT"},
            policies={pg.notes: lambda ctx: col("body") == ctx.attrs["x"].upper()},
        )
    )
    pg.acl.assign_role("olga", "odd")
    pg.acl.apply_native(pg.db)
    pg.db.use_access_control(pg.acl)
    with pytest.raises(PermissionDenied, match="row policy"):
        pg.db.for_user("olga", attrs={"x": "n"}).fetch_all(f"SELECT * FROM {pg.notes}")


@pytest.mark.postgres
def test_our_check_refuses_changing_the_role(applied: PgWorld) -> None:
    ann = applied.db.for_user("ann", attrs={"tenant": 7})
    with pytest.raises(PermissionDenied):
        ann.execute("RESET ROLE")


@pytest.mark.postgres
def test_apply_names_the_privilege_the_account_lacks(pg: PgWorld) -> None:
    account = f"{pg.prefix}app"
    pg.db.execute(f'CREATE ROLE "{account}" LOGIN')
    weak = DatabaseManager()
    try:
        weak.create_pool(PG, pg.url.replace("root@", f"{account}@"))
        with pytest.raises(NativeApplyError, match="CREATEROLE"):
            pg.acl.apply_native(weak)
    finally:
        weak.close_all()
        pg.db.execute(f'DROP ROLE "{account}"')


# -- SQLite --------------------------------------------------------------------------------


@pytest.fixture
def lite() -> Iterator[tuple[DatabaseManager, AccessControl]]:
    db = DatabaseManager()
    db.create_pool(LITE, "sqlite:///:memory:")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, tenant_id INT, v TEXT)")
    db.execute("CREATE TABLE secret (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO orders VALUES (1, 7, 'a'), (2, 8, 'b')")
    db.execute("INSERT INTO secret VALUES (1)")
    acl = AccessControl(native=True)
    acl.create_role(Role("analyst", grants={"orders": Permission.SELECT}))
    acl.assign_role("ann", "analyst")
    db.use_access_control(acl)
    try:
        yield db, acl
    finally:
        db.close_all()


SQLITE_ATTACKS = [
    "SELECT * FROM secret",  # a read of an ungranted table
    "SELECT id FROM orders WHERE id IN (SELECT id FROM secret)",
    "DELETE FROM orders",  # writes without the action
    "UPDATE orders SET v = 'x'",
    "INSERT INTO orders VALUES (5, 7, 'x')",
    "INSERT INTO orders VALUES (1, 7, 'x') ON CONFLICT(id) DO UPDATE SET v = 'y'",
    "SELECT load_extension('x')",  # functions off the allow-list
    "SELECT sqlite_version()",
    "PRAGMA table_info(secret)",  # PRAGMA, ATTACH, DETACH
    "SELECT * FROM pragma_table_info('secret')",
    "ATTACH ':memory:' AS other",
    "DETACH other",
    "CREATE TABLE mine (id INT)",  # DDL without the grant
    "DROP TABLE orders",
    "SELECT name FROM sqlite_master",
]


@pytest.mark.parametrize("sql", SQLITE_ATTACKS)
def test_sqlite_engine_alone_refuses(lite: tuple[DatabaseManager, AccessControl], sql: str) -> None:
    db, acl = lite
    ann = db.for_user("ann")
    with python_check_disabled(acl), pytest.raises(DBSystemError, match=REFUSED):
        ann.execute(sql)


@pytest.mark.parametrize("sql", SQLITE_ATTACKS[:6])
def test_sqlite_both_walls_refuse_with_our_check_first(
    lite: tuple[DatabaseManager, AccessControl], sql: str
) -> None:
    db, _ = lite
    with pytest.raises(PermissionDenied):
        db.for_user("ann").execute(sql)


def test_sqlite_allows_what_is_granted(lite: tuple[DatabaseManager, AccessControl]) -> None:
    db, acl = lite
    with python_check_disabled(acl):
        rows = db.for_user("ann").fetch_all("SELECT upper(v) AS v FROM orders ORDER BY id")
    assert rows == [{"v": "A"}, {"v": "B"}]


def test_sqlite_a_statement_the_application_prepared_is_authorized_again(
    lite: tuple[DatabaseManager, AccessControl],
) -> None:
    db, acl = lite
    assert db.fetch_value("SELECT count(*) FROM secret") == 1  # cached by sqlite3
    with python_check_disabled(acl), pytest.raises(DBSystemError, match=REFUSED):
        db.for_user("ann").fetch_value("SELECT count(*) FROM secret")


def test_sqlite_a_statement_the_application_prepared_between_leases_is_authorized(
    lite: tuple[DatabaseManager, AccessControl],
) -> None:
    db, acl = lite
    ann = db.for_user("ann")
    ann.fetch_all("SELECT id FROM orders")
    assert db.fetch_value("SELECT max(id) FROM secret") == 1
    with python_check_disabled(acl), pytest.raises(DBSystemError, match=REFUSED):
        ann.fetch_value("SELECT max(id) FROM secret")


def test_sqlite_the_authorizer_ends_with_the_lease(
    lite: tuple[DatabaseManager, AccessControl],
) -> None:
    db, _ = lite
    db.for_user("ann").fetch_all("SELECT id FROM orders")
    assert db.fetch_value("SELECT count(*) FROM secret") == 1


def test_sqlite_a_revoked_role_stops_the_next_statement(
    lite: tuple[DatabaseManager, AccessControl],
) -> None:
    db, acl = lite
    ann = db.for_user("ann")
    acl.revoke_role("ann", "analyst")
    with python_check_disabled(acl), pytest.raises(DBSystemError, match=REFUSED):
        ann.fetch_all("SELECT id FROM orders")


def test_sqlite_a_role_extends_the_function_allow_list() -> None:
    acl = AccessControl(native=True)
    role = Role("analyst", grants={"orders": Permission.SELECT})
    object.__setattr__(role, "functions", frozenset({"my_fn"}))  # Role(functions=...) (#19)
    acl.create_role(role)
    acl.assign_role("ann", "analyst")
    authorize = sqlite_authorizer(acl, "ann")
    assert authorize(sqlite3.SQLITE_FUNCTION, None, "my_fn", None, None) == sqlite3.SQLITE_OK


# -- plans as data -------------------------------------------------------------------------


def test_a_policy_compiles_to_a_typed_setting_comparison() -> None:
    columns = {"tenant_id": "integer", "state": "text"}
    predicate = (col("tenant_id") == _attr("tenant")) & col("state").in_(["open", "held"])
    assert compile_predicate(predicate, columns) == (
        "((\"tenant_id\" = (NULLIF(current_setting(E'dbsystem.attr.tenant', true), ''))"
        "::integer) AND (\"state\" IN (E'open', E'held')))"
    )


def test_a_policy_with_or_not_and_null_compiles() -> None:
    predicate = (col("a") == 1) | ~col("b").is_null()
    assert compile_predicate(predicate, {"a": "integer", "b": "text"}) == (
        '(("a" = 1) OR (NOT ("b" IS NULL)))'
    )


def test_mongo_plan_makes_create_role_documents() -> None:
    acl = AccessControl(native=True)
    acl.create_role(Role("analyst", grants={"orders": "SELECT|UPDATE", "logs*": "SELECT"}))
    from dbsystem.security.native import _plan_mongo

    plan = _plan_mongo(acl, "shop")
    assert plan.statements == [
        '{"createRole": "dbsystem_r_analyst", "privileges": [{"actions": ["find", "update"], '
        '"resource": {"collection": "orders", "db": "shop"}}], "roles": []}'
    ]


def test_mongo_plan_names_patterns_it_cannot_express() -> None:
    acl = AccessControl(native=True)
    acl.create_role(Role("analyst", grants={"logs*": "SELECT"}))
    from dbsystem.security.native import _plan_mongo

    assert _plan_mongo(acl, "shop").python_only == [
        "role 'analyst': 'logs*' (MongoDB roles name whole collections)"
    ]


def _attr(name: str) -> Any:
    from dbsystem.security.native import _SymbolicContext

    return _SymbolicContext().attrs[name]


# -- async: the same scope, applied by the async connections -------------------------------


@pytest.mark.postgres
def test_async_pg_session_runs_as_its_role_and_tenant(applied: PgWorld) -> None:
    from dbsystem import AsyncDatabaseManager

    async def main() -> tuple[list[Any], str]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(PG, applied.url)
        adb.use_access_control(applied.acl)
        try:
            ann = adb.for_user("ann", attrs={"tenant": 8})
            with python_check_disabled(applied.acl):
                rows = await ann.fetch_all(f"SELECT id FROM {applied.orders}")
                with pytest.raises(DBSystemError, match="permission"):
                    await ann.fetch_all(f"SELECT * FROM {applied.secret}")
            who = await adb.fetch_value("SELECT current_user")
            return rows, who
        finally:
            await adb.close_all()

    rows, who = asyncio.run(main())
    assert (rows, who) == ([{"id": 2}], "root")


def test_async_sqlite_session_is_refused_by_the_authorizer(tmp_path: Any) -> None:
    from dbsystem import AsyncDatabaseManager

    async def main() -> int:
        adb = AsyncDatabaseManager()
        await adb.create_pool(LITE, f"sqlite:///{tmp_path / 'native.db'}")
        try:
            await adb.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
            await adb.execute("CREATE TABLE secret (id INTEGER PRIMARY KEY)")
            await adb.execute("INSERT INTO secret VALUES (1)")
            acl = AccessControl(native=True)
            acl.create_role(Role("analyst", grants={"orders": Permission.SELECT}))
            acl.assign_role("ann", "analyst")
            adb.use_access_control(acl)
            with python_check_disabled(acl), pytest.raises(DBSystemError, match=REFUSED):
                await adb.for_user("ann").fetch_all("SELECT * FROM secret")
            count: int = await adb.fetch_value("SELECT count(*) FROM secret")
            return count
        finally:
            await adb.close_all()

    assert asyncio.run(main()) == 1


# -- the command line ----------------------------------------------------------------------


@pytest.mark.postgres
def test_cli_plans_then_applies(pg: PgWorld, tmp_path: Any, monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from dbsystem.cli import app

    module = f"native_acl_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{module}.py").write_text(
        "from dbsystem.security import AccessControl, Role\n"
        f"acl = AccessControl(native=True, native_prefix={pg.prefix!r})\n"
        f"acl.create_role(Role('reader', grants={{{pg.notes!r}: 'SELECT'}}))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    planned = runner.invoke(app, ["security", "plan", pg.url, "--acl", f"{module}:acl"])
    applied = runner.invoke(app, ["security", "apply", pg.url, "--acl", f"{module}:acl"])
    again = runner.invoke(app, ["security", "plan", pg.url, "--acl", f"{module}:acl"])
    assert f'CREATE ROLE "{pg.prefix}reader" NOLOGIN;' in planned.output
    assert applied.exit_code == 0
    assert "-- nothing to change" in again.output


def test_cli_refuses_an_acl_that_is_not_one() -> None:
    from typer.testing import CliRunner

    from dbsystem.cli import app

    result = CliRunner().invoke(app, ["security", "plan", "sqlite://", "--acl", "json:dumps"])
    assert (result.exit_code, "not an AccessControl" in result.output) == (2, True)


# -- Redis: one ACL user per role, the lease authenticated as it ---------------------------


@pytest.fixture
def red(redis_url: str) -> Iterator[tuple[DatabaseManager, AccessControl, str]]:
    from dbsystem.security import CredentialManager

    suffix = uuid.uuid4().hex[:6]
    prefix = f"dbsystem_r_native_{suffix}_"
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, redis_url)
    credentials = CredentialManager()
    acl = AccessControl(native=True, native_prefix=prefix, native_credentials=credentials)
    acl.create_role(Role("reader", grants={f"nat:{suffix}:a:*": "SELECT"}))
    acl.assign_role("ann", "reader")
    with db.connection(DatabaseType.REDIS) as conn:
        conn.execute("SET", f"nat:{suffix}:a:1", "A")
        conn.execute("SET", f"nat:{suffix}:b:1", "B")
    try:
        acl.apply_native(db, DatabaseType.REDIS)
        db.use_access_control(acl)
        yield db, acl, suffix
    finally:
        empty = AccessControl(native_prefix=prefix, native_credentials=credentials)
        empty.apply_native(db, DatabaseType.REDIS)  # deletes the test's ACL users
        with db.connection(DatabaseType.REDIS) as conn:
            conn.execute("DEL", f"nat:{suffix}:a:1", f"nat:{suffix}:b:1")
        db.close_all()


@pytest.mark.redis
def test_redis_engine_alone_allows_what_is_granted(red: Any) -> None:
    db, acl, suffix = red
    with python_check_disabled(acl), db.for_user("ann").connection(DatabaseType.REDIS) as conn:
        assert conn.execute("GET", f"nat:{suffix}:a:1") == "A"


@pytest.mark.redis
@pytest.mark.parametrize(
    "command",
    [
        ("GET", "nat:{s}:b:1"),  # a read outside the grants
        ("SET", "nat:{s}:a:1", "x"),  # a write without the action
        ("DEL", "nat:{s}:a:1"),
        ("KEYS", "*"),  # administration
        ("EVAL", "return 1", "0"),  # scripts
        ("FLUSHDB",),
        ("CONFIG", "GET", "maxmemory"),
    ],
)
def test_redis_engine_alone_refuses(red: Any, command: tuple[str, ...]) -> None:
    db, acl, suffix = red
    args = [part.format(s=suffix) for part in command]
    with python_check_disabled(acl), db.for_user("ann").connection(DatabaseType.REDIS) as conn:
        with pytest.raises(DBSystemError, match="NOPERM|no permissions"):
            conn.execute(*args)


@pytest.mark.redis
def test_redis_both_walls_refuse_with_our_check_first(red: Any) -> None:
    db, _, suffix = red
    with db.for_user("ann").connection(DatabaseType.REDIS) as conn:
        with pytest.raises(PermissionDenied):
            conn.execute("GET", f"nat:{suffix}:b:1")


@pytest.mark.redis
def test_redis_apply_converges_and_never_shows_the_password(red: Any) -> None:
    db, acl, _ = red
    plan = acl.native_plan(db, DatabaseType.REDIS)
    secret = acl.native_credentials.get(f"{acl.native_prefix}reader").password
    assert secret.get_secret_value() not in str(plan)


@pytest.mark.redis
def test_redis_the_application_keeps_its_own_user(red: Any) -> None:
    db, _, suffix = red
    db.for_user("ann").connection(DatabaseType.REDIS).execute("GET", f"nat:{suffix}:a:1")
    with db.connection(DatabaseType.REDIS) as conn:
        assert conn.execute("GET", f"nat:{suffix}:b:1") == "B"


def test_mongo_plan_from_a_manager_names_its_database() -> None:
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://localhost/shop")
    try:
        acl = AccessControl(native=True)
        acl.create_role(Role("analyst", grants={"orders": "SELECT"}))
        plan = acl.native_plan(db, DatabaseType.MONGODB)
    finally:
        db.close_all()
    assert '"resource": {"collection": "orders", "db": "shop"}' in plan.statements[0]
