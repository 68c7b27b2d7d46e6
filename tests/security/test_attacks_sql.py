"""SQL attacks from a user session, table-driven (issue 19): each refused, none run.

A user granted SELECT on ``sc_a`` (and a few users with one more grant each) tries to read
``sc_b``, call functions with side effects, send statements off the allow-list, hide text
from the checker (executable comments, backslashes, dollar quotes), write with the wrong
action, lock rows, create tables and stack statements. Every case runs on each SQL backend
whose syntax has it, through a sync and an async user session. Each must raise
``PermissionDenied`` and must not have run: a hook records every statement that reached
the driver, and the tables are compared with their first contents afterwards.

The positive cases at the end are what a normal user writes; they must still run.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, PermissionDenied
from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.query import col, func
from dbsystem.security import AccessControl, Permission, Role

PG, MY, LITE = "postgresql", "mysql", "sqlite"
ALL = (LITE, PG, MY)
TYPES = {LITE: DatabaseType.SQLITE, PG: DatabaseType.POSTGRES, MY: DatabaseType.MYSQL}
A_ROWS = [{"id": 1, "v": 10, "x": 5, "j": '{"k": "a"}'}, {"id": 2, "v": 20, "x": 6, "j": "{}"}]
B_ROWS = [{"id": 1, "secret": "s3cret", "x": 5}]

S, INS, U, D = Permission.SELECT, Permission.INSERT, Permission.UPDATE, Permission.DELETE
ROLES = {
    "ann": {"sc_a": S},  # the reader
    "ian": {"sc_a": S | INS},  # may insert, not update or delete
    "upa": {"sc_a": S | U},  # may update sc_a, nothing on sc_b
    "uma": {"sc_a": S | U, "sc_b": S},  # may read sc_b, not write it
    "dee": {"sc_a": S | D, "sc_b": S},
    "dan": {"sc_a": S | D},  # may delete from sc_a, nothing on sc_b
    "max": {"sc_a": S | INS | U, "sc_b": S},  # MERGE without DELETE
    "pat": {"sc_a": S | INS | U, "sc_b": S},  # the positive cases
    "star": {"*": S},  # every table of the application's schema, not the system's
}


class _Ran(ExecutionHook):
    """Records every user statement that reached the driver."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def after_execute(self, statement: Statement) -> None:
        if statement.context is not None and statement.executed:
            with self.lock:
                self.ran.append(statement.text)


def _acl() -> AccessControl:
    acl = AccessControl()
    for user, grants in ROLES.items():
        acl.create_role(Role(f"r_{user}", grants=grants))
        acl.assign_role(user, f"r_{user}")
    acl.create_role(
        Role(
            "r_ten",
            grants={"sc_a": S, "sc_b": S},
            policies={"sc_a": col("x") == 5, "sc_b": col("x") == 5},
        )
    )
    acl.assign_role("ten", "r_ten")
    return acl


@dataclass
class Env:
    dialect: str
    db: DatabaseManager
    url: str
    schema: str  # how a qualified name spells this database: public, main, the MySQL db

    def reset(self) -> None:
        """The tables as every case starts from (a case that ran would have changed them)."""
        for table in ("sc_new", "sc_v"):
            for kind in ("VIEW", "TABLE"):
                try:
                    self.db.execute(f"DROP {kind} IF EXISTS {table}")
                except Exception:  # (a view dropped as a table, or the reverse)
                    pass
        self.db.execute("DELETE FROM sc_a")
        self.db.execute("DELETE FROM sc_b")
        with self.db.connection(TYPES[self.dialect]) as conn:
            conn.insert_many("sc_a", A_ROWS)
            conn.insert_many("sc_b", B_ROWS)

    def snapshot(self) -> tuple[Any, ...]:
        tables = self.db.fetch_all(_TABLES[self.dialect])
        return (
            self.db.fetch_all("SELECT id, v, x, j FROM sc_a ORDER BY id"),
            self.db.fetch_all("SELECT id, secret, x FROM sc_b ORDER BY id"),
            sorted(str(next(iter(t.values()))) for t in tables),
        )


_TABLES = {
    LITE: "SELECT name FROM sqlite_master WHERE name LIKE 'sc_%'",
    PG: "SELECT tablename FROM pg_tables WHERE tablename LIKE 'sc_%'",
    MY: "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = DATABASE() AND table_name LIKE 'sc_%'",
}
_CREATE = {
    "sc_a": "CREATE TABLE sc_a (id INTEGER PRIMARY KEY, v INTEGER, x INTEGER, j VARCHAR(200))",
    "sc_b": "CREATE TABLE sc_b (id INTEGER PRIMARY KEY, secret VARCHAR(50), x INTEGER)",
}


def _url(dialect: str, request: pytest.FixtureRequest, tmp_path_factory: Any) -> str:
    if dialect == LITE:
        return f"sqlite:///{tmp_path_factory.mktemp('attacks') / 'attacks.db'}"
    return str(request.getfixturevalue("postgres_url" if dialect == PG else "mysql_url"))


# -- the cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    dialects: tuple[str, ...]
    sql: str
    user: str = "ann"


def _cases() -> list[Case]:
    c = Case
    return [
        # Other tables, in every clause.
        c("subquery_in_select_list", ALL, "SELECT (SELECT secret FROM sc_b) FROM sc_a"),
        c("subquery_in_where", ALL, "SELECT * FROM sc_a WHERE id IN (SELECT id FROM sc_b)"),
        c("exists", ALL, "SELECT * FROM sc_a WHERE EXISTS (SELECT 1 FROM sc_b)"),
        c("subquery_in_order_by", ALL, "SELECT * FROM sc_a ORDER BY (SELECT max(x) FROM sc_b)"),
        c(
            "subquery_in_having",
            ALL,
            "SELECT v FROM sc_a GROUP BY v HAVING count(*) < (SELECT count(*) FROM sc_b)",
        ),
        c("subquery_in_group_by", ALL, "SELECT count(*) FROM sc_a GROUP BY (SELECT 1 FROM sc_b)"),
        c("subquery_in_case", ALL, "SELECT CASE WHEN EXISTS (SELECT 1 FROM sc_b) THEN 1 END"),
        c("join", ALL, "SELECT * FROM sc_a JOIN sc_b ON sc_a.id = sc_b.id"),
        c("left_join", ALL, "SELECT * FROM sc_a LEFT JOIN sc_b ON sc_a.id = sc_b.id"),
        c("comma_join", ALL, "SELECT * FROM sc_a, sc_b"),
        c("derived_table", ALL, "SELECT * FROM (SELECT * FROM sc_b) s"),
        c("union", ALL, "SELECT id FROM sc_a UNION SELECT id FROM sc_b"),
        c("union_all", ALL, "SELECT id FROM sc_a UNION ALL SELECT x FROM sc_b"),
        c("intersect", ALL, "SELECT id FROM sc_a INTERSECT SELECT id FROM sc_b"),
        c("except", ALL, "SELECT id FROM sc_a EXCEPT SELECT id FROM sc_b"),
        c("cte", ALL, "WITH s AS (SELECT secret FROM sc_b) SELECT * FROM s"),
        c("cte_shadows_table", ALL, "WITH sc_b AS (SELECT * FROM sc_b) SELECT * FROM sc_b"),
        c("cte_named_as_granted", ALL, "WITH sc_a AS (SELECT * FROM sc_b) SELECT * FROM sc_a"),
        c(
            "cte_reads_later_cte_name",
            (PG, LITE),
            "WITH s AS (SELECT * FROM sc_b), sc_b AS (SELECT 1) SELECT * FROM s",
        ),
        c(
            "lateral",
            (PG,),
            "SELECT * FROM sc_a, LATERAL (SELECT secret FROM sc_b WHERE sc_b.id = sc_a.id) s",
        ),
        c("window_over_b", ALL, "SELECT max(secret) OVER () FROM sc_b"),
        c(
            "window_partition_subquery",
            ALL,
            "SELECT row_number() OVER (PARTITION BY (SELECT max(x) FROM sc_b)) FROM sc_a",
        ),
        c("values_list", (PG, LITE), "VALUES ((SELECT secret FROM sc_b))"),
        c("any_array", (PG,), "SELECT * FROM sc_a WHERE id = ANY(ARRAY(SELECT id FROM sc_b))"),
        c("schema_qualified", ALL, "SELECT * FROM {schema}.sc_b"),
        c("upper_case_name", (PG, LITE), "SELECT * FROM SC_B"),
        c("quoted_name", (PG, LITE), 'SELECT * FROM "sc_b"'),
        c("quoted_upper_sqlite", (LITE,), 'SELECT * FROM "SC_B"'),
        c("backquoted_name", (MY,), "SELECT * FROM `sc_b`"),
        c("schema_quoted", (PG,), 'SELECT * FROM "public"."sc_b"'),
        c(
            "subquery_in_join_on",
            ALL,
            "SELECT * FROM sc_a JOIN sc_a t ON t.id = (SELECT max(id) FROM sc_b)",
        ),
        c("subquery_in_limit", (PG,), "SELECT * FROM sc_a LIMIT (SELECT count(*) FROM sc_b)"),
        c("subquery_in_function", ALL, "SELECT coalesce((SELECT max(secret) FROM sc_b), 'x')"),
        c("subquery_in_cast", ALL, "SELECT CAST((SELECT max(x) FROM sc_b) AS CHAR(10))"),
        c(
            "subquery_in_insert_values",
            ALL,
            "INSERT INTO sc_a (id, j) VALUES (9, (SELECT max(secret) FROM sc_b))",
            "ian",
        ),
        c(
            "subquery_in_returning",
            (PG, LITE),
            "UPDATE sc_a SET v = 1 WHERE id = 1 RETURNING (SELECT max(secret) FROM sc_b)",
            "upa",
        ),
        c(
            "subquery_in_update_set",
            ALL,
            "UPDATE sc_a SET j = (SELECT max(secret) FROM sc_b) WHERE id = 1",
            "upa",
        ),
        c(
            "nested_subqueries",
            ALL,
            "SELECT * FROM sc_a WHERE id IN (SELECT id FROM (SELECT id FROM sc_b) s)",
        ),
        c(
            "recursive_cte_reads_b",
            ALL,
            "WITH RECURSIVE r AS (SELECT id FROM sc_b UNION ALL SELECT id + 1 FROM r WHERE id < 2)"
            " SELECT * FROM r",
        ),
        c("generate_series_join", (PG,), "SELECT * FROM generate_series(1, 2) g JOIN sc_b ON true"),
        c("system_table_mysql", (MY,), "SELECT * FROM mysql.user", "star"),
        c("information_schema", (PG, MY), "SELECT * FROM information_schema.tables", "star"),
        c("pg_catalog_qualified", (PG,), "SELECT * FROM pg_catalog.pg_authid", "star"),
        c("pg_catalog_unqualified", (PG,), "SELECT * FROM pg_authid", "star"),
        c("pg_stat_activity", (PG,), "SELECT query FROM pg_stat_activity", "star"),
        c("sqlite_master", (LITE,), "SELECT sql FROM sqlite_master", "star"),
        c("sqlite_schema_qualified", (LITE,), "SELECT sql FROM main.sqlite_schema", "star"),
        c("insert_select_reads_b", ALL, "INSERT INTO sc_a (id) SELECT id + 10 FROM sc_b", "ian"),
        c("update_reads_b", ALL, "UPDATE sc_a SET v = (SELECT x FROM sc_b WHERE id = 1)", "upa"),
        c("delete_where_b", ALL, "DELETE FROM sc_a WHERE id IN (SELECT id FROM sc_b)", "ian"),
        # Functions off the allow-list.
        c("query_to_xml", (PG,), "SELECT query_to_xml('select * from sc_b', true, true, '')"),
        c("set_config", (PG,), "SELECT set_config('statement_timeout', '1', false)"),
        c("pg_notify", (PG,), "SELECT pg_notify('sc_chan', 'forged')"),
        c("pg_read_file", (PG,), "SELECT pg_read_file('/etc/hostname')"),
        c("pg_read_binary_file", (PG,), "SELECT pg_read_binary_file('/etc/hostname')"),
        c("lo_import", (PG,), "SELECT lo_import('/etc/hostname')"),
        c("lo_export", (PG,), "SELECT lo_export(1, '/tmp/sqlcheck-x')"),
        c("dblink", (PG,), "SELECT * FROM dblink('dbname=x', 'select 1') AS t(x int)"),
        c("pg_sleep", (PG,), "SELECT pg_sleep(0)"),
        c("pg_sleep_upper", (PG,), "SELECT PG_SLEEP(0)"),
        c("pg_sleep_quoted", (PG,), 'SELECT "pg_sleep"(0)'),
        c("pg_sleep_qualified", (PG,), "SELECT pg_catalog.pg_sleep(0)"),
        c("current_setting", (PG,), "SELECT current_setting('data_directory')"),
        c("txid_current", (PG,), "SELECT txid_current()"),
        c("pg_terminate_backend", (PG,), "SELECT pg_terminate_backend(0)"),
        c("pg_ls_dir", (PG,), "SELECT * FROM pg_ls_dir('.')"),
        c("nextval", (PG,), "SELECT nextval('sc_seq')"),
        c("advisory_lock", (PG,), "SELECT pg_advisory_lock(1)"),
        c("pg_reload_conf", (PG,), "SELECT pg_reload_conf()"),
        c("function_in_where", (PG,), "SELECT * FROM sc_a WHERE pg_sleep(0) IS NOT NULL"),
        c("mysql_sleep", (MY,), "SELECT sleep(0)"),
        c("mysql_benchmark", (MY,), "SELECT benchmark(1, md5('a'))"),
        c("mysql_load_file", (MY,), "SELECT load_file('/etc/hostname')"),
        c("mysql_get_lock", (MY,), "SELECT get_lock('sc_lock', 0)"),
        c("mysql_release_lock", (MY,), "SELECT release_lock('sc_lock')"),
        c("mysql_sleep_in_where", (MY,), "SELECT * FROM sc_a WHERE sleep(0) = 0"),
        c("pragma_function", (LITE,), "SELECT * FROM pragma_table_info('sc_b')"),
        c("pragma_index_list", (LITE,), "SELECT * FROM pragma_index_list('sc_b')"),
        c("load_extension", (LITE,), "SELECT load_extension('/tmp/sqlcheck-x')"),
        c("readfile", (LITE,), "SELECT readfile('/etc/hostname')"),
        c("writefile", (LITE,), "SELECT writefile('/tmp/sqlcheck-x', 'y')"),
        c("fts3_tokenizer", (LITE,), "SELECT fts3_tokenizer('simple')"),
        # Statement kinds off the allow-list.
        c("copy_to_stdout", (PG,), "COPY sc_b TO STDOUT"),
        c("copy_from_program", (PG,), "COPY sc_a FROM PROGRAM 'id'"),
        c("copy_query_to_file", (PG,), "COPY (SELECT * FROM sc_a) TO '/tmp/sqlcheck-x'"),
        c("grant", (PG, MY), "GRANT SELECT ON sc_b TO PUBLIC"),
        c("revoke", (PG,), "REVOKE SELECT ON sc_a FROM PUBLIC"),
        c("comment_on", (PG,), "COMMENT ON TABLE sc_a IS 'x'"),
        c("set", (PG, MY), "SET statement_timeout = 1"),
        c("set_role", (PG,), "SET ROLE NONE"),
        c("reset_all", (PG,), "RESET ALL"),
        c("show", (PG, MY), "SHOW TABLES"),
        c("call", (PG, MY), "CALL sc_proc()"),
        c("do_block", (PG,), "DO $$ BEGIN DELETE FROM sc_b; END $$"),
        c("mysql_do", (MY,), "DO sleep(0)"),
        c("lock_table", (PG,), "LOCK TABLE sc_a"),
        c("lock_tables", (MY,), "LOCK TABLES sc_a READ"),
        c("listen", (PG,), "LISTEN sc_chan"),
        c("notify", (PG,), "NOTIFY sc_chan, 'forged'"),
        c("vacuum", (PG, LITE), "VACUUM"),
        c("analyze", ALL, "ANALYZE sc_a"),
        c("explain", ALL, "EXPLAIN SELECT * FROM sc_a"),
        c("explain_analyze_write", (PG,), "EXPLAIN ANALYZE DELETE FROM sc_a"),
        c("prepare", (PG, MY), "PREPARE sc_p FROM 'SELECT 1'"),
        c("discard", (PG,), "DISCARD ALL"),
        c("checkpoint", (PG,), "CHECKPOINT"),
        c("pragma", (LITE,), "PRAGMA writable_schema = 1"),
        c("pragma_read", (LITE,), "PRAGMA table_info(sc_b)"),
        c("attach", (LITE,), "ATTACH DATABASE ':memory:' AS sc_x"),
        c("detach", (LITE,), "DETACH DATABASE sc_x"),
        c("reindex", (LITE,), "REINDEX"),
        c("use", (MY,), "USE mysql"),
        c("handler", (MY,), "HANDLER sc_b OPEN"),
        c("load_data", (MY,), "LOAD DATA INFILE '/etc/hostname' INTO TABLE sc_a"),
        c("flush", (MY,), "FLUSH TABLES"),
        c("kill", (MY,), "KILL 0"),
        c("checksum", (MY,), "CHECKSUM TABLE sc_b"),
        c("pg_table_statement", (PG,), "TABLE sc_b"),
        c("unparseable", ALL, "SELEKT * FROM sc_a"),
        c(
            "create_function",
            (PG,),
            "CREATE FUNCTION sc_f() RETURNS int AS 'select 1' LANGUAGE sql",
        ),
        c(
            "create_trigger",
            (LITE,),
            "CREATE TRIGGER sc_t AFTER INSERT ON sc_a BEGIN DELETE FROM sc_b; END",
        ),
        # DDL without Permission.DDL.
        c("drop_table", ALL, "DROP TABLE sc_b"),
        c("create_table", ALL, "CREATE TABLE sc_new (id INTEGER)"),
        c("create_table_as", (PG, LITE, MY), "CREATE TABLE sc_new AS SELECT * FROM sc_a"),
        c("create_view", ALL, "CREATE VIEW sc_v AS SELECT * FROM sc_a"),
        c("alter_table", ALL, "ALTER TABLE sc_a ADD COLUMN z INTEGER"),
        c("truncate", (PG, MY), "TRUNCATE sc_a"),
        c("select_into", (PG,), "SELECT * INTO sc_new FROM sc_a"),
        c("select_into_outfile", (MY,), "SELECT * FROM sc_a INTO OUTFILE '/tmp/sqlcheck-x'"),
        c("select_into_variable", (MY,), "SELECT v INTO @sc_v FROM sc_a LIMIT 1"),
        # Row locks need UPDATE.
        c("for_update", (PG, MY), "SELECT * FROM sc_a FOR UPDATE"),
        c("for_share", (PG, MY), "SELECT * FROM sc_a FOR SHARE"),
        c("for_no_key_update", (PG,), "SELECT * FROM sc_a FOR NO KEY UPDATE"),
        c("for_key_share", (PG,), "SELECT * FROM sc_a FOR KEY SHARE"),
        c("lock_in_share_mode", (MY,), "SELECT * FROM sc_a LOCK IN SHARE MODE"),
        c("for_update_in_subquery", (PG,), "SELECT * FROM (SELECT * FROM sc_a FOR UPDATE) s"),
        # Text the server reads differently from the parser.
        c("exec_comment", (MY,), "SELECT 1 /*! , (SELECT secret FROM sc_b) */"),
        c("exec_comment_versioned", (MY,), "SELECT 1 /*!50000 , (SELECT secret FROM sc_b) */"),
        c("exec_comment_mariadb", (MY,), "SELECT 1 /*M! , (SELECT secret FROM sc_b) */"),
        c("exec_comment_mariadb_ver", (MY,), "SELECT 1 /*M!100000 , (SELECT 1 FROM sc_b) */"),
        c("exec_comment_union", (MY,), "SELECT id FROM sc_a /*!UNION SELECT id FROM sc_b*/"),
        c("exec_comment_in_string", (MY,), "SELECT '/*!' FROM sc_a"),
        c("backslash_string_end", (MY,), "SELECT 'a\\' , (SELECT secret FROM sc_b) -- '"),
        c("backslash_escape", (MY,), "SELECT v FROM sc_a WHERE j = 'a\\'b'"),
        c(
            "standard_string_backslash",
            (PG, LITE),
            "SELECT 'a\\' , (SELECT secret FROM sc_b) --'",
        ),
        c("dollar_quote", (PG,), "SELECT $$ ; $$ AS s, (SELECT secret FROM sc_b)"),
        c("dollar_tag_quote", (PG,), "SELECT $q$ it's $q$ AS s, secret FROM sc_b"),
        c("e_string", (PG,), "SELECT E'\\'', (SELECT secret FROM sc_b)"),
        # Several statements in one text.
        c("stacked_write", ALL, "SELECT v FROM sc_a; DELETE FROM sc_a"),
        c("stacked_reads", ALL, "SELECT v FROM sc_a; SELECT v FROM sc_a"),
        c("stacked_after_comment", ALL, "SELECT v FROM sc_a /* x */; DROP TABLE sc_b"),
        # Writes need their real actions.
        c(
            "on_conflict_update",
            (PG, LITE),
            "INSERT INTO sc_a (id, v) VALUES (1, 99) ON CONFLICT (id) DO UPDATE SET v = 99",
            "ian",
        ),
        c(
            "on_duplicate_key",
            (MY,),
            "INSERT INTO sc_a (id, v) VALUES (1, 99) ON DUPLICATE KEY UPDATE v = 99",
            "ian",
        ),
        c(
            "insert_or_replace",
            (LITE,),
            "INSERT OR REPLACE INTO sc_a (id, v) VALUES (1, 99)",
            "ian",
        ),
        c("replace_into", (LITE, MY), "REPLACE INTO sc_a (id, v) VALUES (1, 99)", "ian"),
        c(
            "merge_delete",
            (PG,),
            "MERGE INTO sc_a USING sc_b ON sc_a.id = sc_b.id WHEN MATCHED THEN DELETE",
            "max",
        ),
        c(
            "merge_update_on_b",
            (PG,),
            "MERGE INTO sc_b USING sc_a ON sc_a.id = sc_b.id WHEN MATCHED THEN UPDATE SET x = 0",
            "max",
        ),
        c(
            "update_join_sets_b",
            (MY,),
            "UPDATE sc_a JOIN sc_b ON sc_a.id = sc_b.id SET sc_b.secret = 'x'",
            "uma",
        ),
        c(
            "update_join_alias",
            (MY,),
            "UPDATE sc_a t JOIN sc_b u ON t.id = u.id SET u.secret = 'x'",
            "uma",
        ),
        c(
            "update_comma_sets_b",
            (MY,),
            "UPDATE sc_a, sc_b SET sc_b.secret = 'x' WHERE sc_a.id = sc_b.id",
            "uma",
        ),
        c(
            "update_join_unqualified",
            (MY,),
            "UPDATE sc_a JOIN sc_b ON sc_a.id = sc_b.id SET secret = 'x'",
            "uma",
        ),
        c(
            "delete_multi",
            (MY,),
            "DELETE sc_a, sc_b FROM sc_a JOIN sc_b ON sc_a.id = sc_b.id",
            "dee",
        ),
        c("delete_alias", (MY,), "DELETE u FROM sc_a t JOIN sc_b u ON t.id = u.id", "dee"),
        c(
            "delete_using",
            (MY,),
            "DELETE FROM sc_a, sc_b USING sc_a JOIN sc_b ON sc_a.id = sc_b.id",
            "dee",
        ),
        c("update_or_replace", (LITE,), "UPDATE OR REPLACE sc_a SET id = 2", "upa"),
        c("update_from_writes_b", (PG,), "UPDATE sc_b SET x = 0 FROM sc_a", "uma"),
        c(
            "cte_delete",
            (PG,),
            "WITH d AS (DELETE FROM sc_a RETURNING id) SELECT * FROM d",
            "upa",
        ),
        c("insert_without_grant", ALL, "INSERT INTO sc_a (id) VALUES (9)"),
        c("update_without_grant", ALL, "UPDATE sc_a SET v = 0"),
        c("delete_without_grant", ALL, "DELETE FROM sc_a"),
    ]


_MARKS = {PG: [pytest.mark.postgres], MY: [pytest.mark.mysql], LITE: []}


def _params(cases: list[Any]) -> list[Any]:
    params = []
    marks = _MARKS
    for case in cases:
        for dialect in case.dialects:
            for mode in ("sync", "async"):
                params.append(
                    pytest.param(
                        case,
                        dialect,
                        mode,
                        id=f"{case.name}-{dialect}-{mode}",
                        marks=marks[dialect],
                    )
                )
    return params


def _as_user(
    env: Env,
    mode: str,
    user: str,
    sync_call: Any,
    async_call: Any,
    *,
    ran: _Ran | None = None,
    attrs: dict[str, Any] | None = None,
) -> Any:
    """``sync_call(session)`` on a fresh manager, or ``await async_call(session)`` on a
    fresh async one: ``user``'s session under ``_acl()``, ``ran`` recording."""
    acl = _acl()
    kind = TYPES[env.dialect]
    if mode == "sync":
        db = DatabaseManager()
        db.create_pool(kind, env.url)
        try:
            db.use_access_control(acl)
            if ran is not None:
                db.add_hook(ran)
            return sync_call(db.for_user(user, attrs=attrs))
        finally:
            db.close_all()

    async def main() -> Any:
        adb = AsyncDatabaseManager()
        await adb.create_pool(kind, env.url)
        try:
            adb.use_access_control(acl)
            if ran is not None:
                adb.add_hook(ran)
            return await async_call(adb.for_user(user, attrs=attrs))
        finally:
            await adb.close_all()

    return asyncio.run(main())


def _attempt(
    env: Env,
    mode: str,
    user: str,
    sync_call: Any,
    async_call: Any,
    attrs: dict[str, Any] | None = None,
) -> list[str]:
    """Run the attack as ``user``; assert it was refused; return what reached the driver."""
    ran = _Ran()
    with pytest.raises(PermissionDenied):
        _as_user(env, mode, user, sync_call, async_call, ran=ran, attrs=attrs)
    return ran.ran


@pytest.mark.parametrize(("case", "dialect", "mode"), _params(_cases()))
def test_raw_attack_is_refused_and_does_not_run(
    request: pytest.FixtureRequest, case: Case, dialect: str, mode: str
) -> None:
    env = _env_for(request, dialect)
    env.reset()
    before = env.snapshot()
    sql = case.sql.replace("{schema}", env.schema)

    async def async_call(session: Any) -> Any:
        return await session.execute(sql)

    ran = _attempt(env, mode, case.user, lambda s: s.execute(sql), async_call)
    assert ran == []
    assert env.snapshot() == before


def _env_for(request: pytest.FixtureRequest, dialect: str) -> Env:
    """The module's environment for ``dialect`` (created once per dialect)."""
    envs = request.config.__dict__.setdefault("_sqlcheck_envs", {})
    if dialect not in envs:
        url = _url(dialect, request, request.getfixturevalue("tmp_path_factory"))
        db = DatabaseManager()
        db.create_pool(TYPES[dialect], url)
        for name, ddl in _CREATE.items():
            db.execute(f"DROP TABLE IF EXISTS {name}")
            db.execute(ddl)
        schema = {LITE: "main", PG: "public"}.get(dialect) or str(
            db.fetch_value("SELECT DATABASE()")
        )
        envs[dialect] = Env(dialect, db, url, schema)
        request.config.add_cleanup(lambda: _drop(db))
    return envs[dialect]


def _drop(db: DatabaseManager) -> None:
    for name in (*_CREATE, "sc_new"):
        db.execute(f"DROP TABLE IF EXISTS {name}")
    db.close_all()


# -- builders: the compiled text is what is checked ----------------------------------------


def _builder_cases() -> list[Case]:
    # (sql holds the name of a builder below; dialects where it applies)
    c = Case
    return [
        c("implicit_select_column", ALL, "implicit_column"),
        c("implicit_where", ALL, "implicit_where"),
        c("implicit_order_by", ALL, "implicit_order_by"),
        c("implicit_group_by", ALL, "implicit_group_by"),
        c("implicit_having", ALL, "implicit_having"),
        c("implicit_update_set", ALL, "implicit_update", "upa"),
        c("implicit_update_where", ALL, "implicit_update_where", "upa"),
        c("implicit_delete_where", (PG, MY), "implicit_delete_where", "dan"),
        c("subquery_in", ALL, "subquery_in"),
        c("builder_function_pg", (PG,), "pg_sleep"),
        c("builder_function_mysql", (MY,), "mysql_sleep"),
        c("builder_function_sqlite", (LITE,), "load_extension"),
        c("builder_function_in_where", (PG,), "set_config_where"),
        c("builder_upsert_insert_only", ALL, "upsert", "ian"),
        c("builder_policy_implicit_table", ALL, "policy_implicit", "ten"),
        c("builder_policy_implicit_where", ALL, "policy_implicit_where", "ten"),
    ]


def _builder(name: str, q: Any) -> Any:
    sub = q.select("id").from_("sc_b")
    return {
        "implicit_column": lambda: q.select(col("sc_b.secret")).from_("sc_a"),
        "implicit_where": lambda: q.select("id").from_("sc_a").where(col("sc_b.x") == 5),
        "implicit_order_by": lambda: q.select("id").from_("sc_a").order_by(col("sc_b.secret")),
        "implicit_group_by": lambda: q.select(func.count()).from_("sc_a").group_by(col("sc_b.x")),
        "implicit_having": lambda: (
            q.select("v").from_("sc_a").group_by("v").having(func.max(col("sc_b.x")) > 0)
        ),
        "implicit_update": lambda: q.update("sc_a").set(v=col("sc_b.x")).where(col("id") == 1),
        "implicit_update_where": lambda: q.update("sc_a").set(v=0).where(col("sc_b.x") == 5),
        "implicit_delete_where": lambda: q.delete_from("sc_a").where(col("sc_b.x") == 5),
        "subquery_in": lambda: q.select("id").from_("sc_a").where(col("id").in_(sub)),
        "pg_sleep": lambda: q.select(func.pg_sleep(0)).from_("sc_a"),
        "mysql_sleep": lambda: q.select(func.sleep(0)).from_("sc_a"),
        "load_extension": lambda: q.select(func.load_extension("/tmp/sqlcheck-x")).from_("sc_a"),
        "set_config_where": lambda: (
            q.select("id")
            .from_("sc_a")
            .where(func.set_config("statement_timeout", "1", False) == "1")
        ),
        "upsert": lambda: q.insert_into("sc_a").values(id=1, v=99).upsert(["id"]),
        "policy_implicit": lambda: q.select(col("sc_b.secret")).from_("sc_a"),
        "policy_implicit_where": lambda: q.select("id").from_("sc_a").where(col("sc_b.x") == 6),
    }[name]()


@pytest.mark.parametrize(("case", "dialect", "mode"), _params(_builder_cases()))
def test_builder_attack_is_refused_and_does_not_run(
    request: pytest.FixtureRequest, case: Case, dialect: str, mode: str
) -> None:
    env = _env_for(request, dialect)
    env.reset()
    before = env.snapshot()
    kind = TYPES[dialect]

    async def async_call(session: Any) -> Any:
        return await _builder(case.sql, session.query(kind)).execute()

    def sync_call(session: Any) -> Any:
        return _builder(case.sql, session.query(kind)).execute()

    ran = _attempt(env, mode, case.user, sync_call, async_call, attrs={"tenant": 1})
    assert ran == []
    assert env.snapshot() == before


# -- what a normal user writes still runs ---------------------------------------------------


_POSITIVE = [
    Case("star_reads_own_schema", ALL, "SELECT count(*) AS n FROM sc_a", "star"),
    *(
        replace(case, user="pat")
        for case in [
            Case(
                "join_granted",
                ALL,
                "SELECT sc_a.id, sc_b.secret FROM sc_a JOIN sc_b ON sc_a.id = sc_b.id",
            ),
            Case("aggregates", ALL, "SELECT count(*) AS n, sum(v) AS s, max(x) AS m FROM sc_a"),
            Case(
                "coalesce_case", ALL, "SELECT coalesce(nullif(v, 10), 0) AS c FROM sc_a ORDER BY id"
            ),
            Case("cte_granted", ALL, "WITH s AS (SELECT id FROM sc_b) SELECT count(*) AS n FROM s"),
            Case(
                "window", ALL, "SELECT id, rank() OVER (ORDER BY id DESC) AS r FROM sc_a ORDER BY 1"
            ),
            Case("pg_json", (PG,), "SELECT CAST(j AS jsonb)->>'k' AS k FROM sc_a WHERE id = 1"),
            Case(
                "mysql_json",
                (MY,),
                "SELECT json_unquote(json_extract(j, '$.k')) AS k FROM sc_a WHERE id = 1",
            ),
            Case(
                "sqlite_json", (LITE,), "SELECT json_extract(j, '$.k') AS k FROM sc_a WHERE id = 1"
            ),
            Case(
                "pg_date",
                (PG,),
                "SELECT date_trunc('day', now())<=now() AS ok FROM sc_a WHERE id=1",
            ),
            Case(
                "mysql_date",
                (MY,),
                "SELECT date_format(now(), '%Y') > '2000' AS ok FROM sc_a WHERE id=1",
            ),
            Case(
                "sqlite_date",
                (LITE,),
                "SELECT strftime('%Y', 'now') > '2000' AS ok FROM sc_a WHERE id=1",
            ),
            Case("pg_dollar_string", (PG,), "SELECT $$a;b$$ AS s FROM sc_a WHERE id = 1"),
            Case("pg_e_string", (PG,), "SELECT E'a\\'b' AS s FROM sc_a WHERE id = 1"),
        ]
    ),
]


_EXPECTED = {
    "join_granted": [{"id": 1, "secret": "s3cret"}],
    "aggregates": [{"n": 2, "s": 30, "m": 6}],
    "star_reads_own_schema": [{"n": 2}],
    "coalesce_case": [{"c": 0}, {"c": 20}],
    "cte_granted": [{"n": 1}],
    "window": [{"id": 1, "r": 2}, {"id": 2, "r": 1}],
    "pg_json": [{"k": "a"}],
    "mysql_json": [{"k": "a"}],
    "sqlite_json": [{"k": "a"}],
    "pg_date": [{"ok": True}],
    "mysql_date": [{"ok": 1}],
    "sqlite_date": [{"ok": 1}],
    "pg_dollar_string": [{"s": "a;b"}],
    "pg_e_string": [{"s": "a'b"}],
}


@pytest.mark.parametrize(("case", "dialect", "mode"), _params(_POSITIVE))
def test_what_a_normal_user_writes_still_runs(
    request: pytest.FixtureRequest, case: Case, dialect: str, mode: str
) -> None:
    env = _env_for(request, dialect)
    env.reset()

    async def async_call(session: Any) -> Any:
        return await session.fetch_all(case.sql)

    rows = _as_user(env, mode, case.user, lambda s: s.fetch_all(case.sql), async_call)
    assert [dict(r) for r in rows] == _EXPECTED[case.name]


@pytest.mark.parametrize("dialect", [pytest.param(d, marks=_MARKS[d]) for d in ALL])
def test_upsert_with_both_grants_runs(request: pytest.FixtureRequest, dialect: str) -> None:
    env = _env_for(request, dialect)
    env.reset()
    kind = TYPES[dialect]

    def upsert(session: Any) -> Any:
        pat = session.query(kind)
        pat.insert_into("sc_a").values(id=1, v=99, x=5, j="{}").upsert(["id"]).execute()
        return pat.select("id", "v").from_("sc_a").order_by("id").execute()

    rows = _as_user(env, "sync", "pat", upsert, None)
    assert rows == [{"id": 1, "v": 99}, {"id": 2, "v": 20}]


@pytest.mark.parametrize("dialect", [pytest.param(d, marks=_MARKS[d]) for d in ALL])
def test_a_builder_join_over_granted_tables_and_the_policy_still_run(
    request: pytest.FixtureRequest, dialect: str
) -> None:
    env = _env_for(request, dialect)
    env.reset()
    kind = TYPES[dialect]

    def join(session: Any) -> Any:
        return (
            session.query(kind)
            .select(col("sc_a.id"), col("sc_b.secret"))
            .from_("sc_a")
            .join("sc_b", col("sc_a.id") == col("sc_b.id"))
            .execute()
        )

    rows = _as_user(env, "sync", "ten", join, None, attrs={"tenant": 1})
    assert rows == [{"id": 1, "secret": "s3cret"}]


def test_role_functions_extend_the_allow_list(tmp_path: Any) -> None:
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'f.db'}")
    try:
        db.execute("CREATE TABLE sc_a (id INTEGER PRIMARY KEY)")
        acl = AccessControl()
        acl.create_role(Role("plain", grants={"sc_a": S}))
        acl.create_role(Role("hexer", grants={"sc_a": S}, functions={"SQLITE_VERSION"}))
        acl.assign_role("ann", "plain")
        acl.assign_role("bob", "hexer")
        db.use_access_control(acl)
        with pytest.raises(PermissionDenied, match=r"may not call \w*version\(\)"):
            db.for_user("ann").fetch_value("SELECT sqlite_version() FROM sc_a")
        assert db.for_user("bob").fetch_all("SELECT sqlite_version() AS v FROM sc_a") == []
    finally:
        db.close_all()


def test_a_huge_raw_statement_is_refused_before_it_is_parsed(tmp_path: Any) -> None:
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'h.db'}")
    try:
        acl = AccessControl()
        acl.create_role(Role("all", grants={"*": S}))
        acl.assign_role("ann", "all")
        db.use_access_control(acl)
        text = "SELECT 1 WHERE 1 IN (" + ",".join(["1"] * 400_000) + ")"  # ~800 KiB
        assert len(text) > 800_000
        ann = db.for_user("ann")
        start = time.perf_counter()
        with pytest.raises(PermissionDenied, match="over the limit of 65536"):
            ann.fetch_all(text)
        with pytest.raises(PermissionDenied, match="over the limit of 65536"):
            ann.query().raw_sql(text).execute()
        assert time.perf_counter() - start < 0.05
    finally:
        db.close_all()


def test_a_huge_raw_statement_is_refused_before_it_is_parsed_async(tmp_path: Any) -> None:
    async def main() -> float:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'h.db'}")
        try:
            acl = AccessControl()
            acl.create_role(Role("all", grants={"*": S}))
            acl.assign_role("ann", "all")
            adb.use_access_control(acl)
            text = "SELECT 1 WHERE 1 IN (" + ",".join(["1"] * 400_000) + ")"
            ann = adb.for_user("ann")
            start = time.perf_counter()
            with pytest.raises(PermissionDenied, match="over the limit"):
                await ann.fetch_all(text)
            with pytest.raises(PermissionDenied, match="over the limit"):
                await ann.query().raw_sql(text).execute()
            return time.perf_counter() - start
        finally:
            await adb.close_all()

    assert asyncio.run(main()) < 0.05


def test_revoke_racing_with_checks_never_leaves_an_allow() -> None:
    """300 trials: threads check while revoke_role runs; a check that starts after the
    revoke returned must deny, and so must every check after the threads end. The checks
    go over many tables (each a decision computed, not found) and the interpreter switches
    threads as often as it can, so a decision computed from the grants before the revoke
    and cached after it would be seen."""
    import sys

    acl = AccessControl()
    acl.create_role(Role("reader", grants={"sc_*": S}))
    statements = [
        Statement("sqlite", "sqlite", "p", "fetch_all", f"SELECT id FROM sc_{i}") for i in range(40)
    ]
    stale = 0
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(300):
            acl.assign_role("ann", "reader")
            stale += _race_once(acl, statements)
            for statement in statements:
                with pytest.raises(PermissionDenied):
                    acl.check("ann", statement)
    finally:
        sys.setswitchinterval(interval)
    assert stale == 0


def _race_once(acl: AccessControl, statements: list[Statement]) -> int:
    """Checks in 3 threads while revoke_role runs: how many that started after the revoke
    returned were allowed."""
    revoked, stop = threading.Event(), threading.Event()
    started = threading.Barrier(4)
    late_allows: list[int] = []

    def checker() -> None:
        started.wait()
        while not stop.is_set():
            for statement in statements:
                after = revoked.is_set()
                try:
                    acl.check("ann", statement)
                except PermissionDenied:
                    continue
                if after:
                    late_allows.append(1)

    threads = [threading.Thread(target=checker) for _ in range(3)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.0005)
    acl.revoke_role("ann", "reader")
    revoked.set()
    time.sleep(0.001)  # checks keep running a while after the revoke
    stop.set()
    for thread in threads:
        thread.join()
    return len(late_allows)


@pytest.mark.mysql
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_backslash_games_under_no_backslash_escapes_are_refused(
    request: pytest.FixtureRequest, mode: str
) -> None:
    """With ``sql_mode=NO_BACKSLASH_ESCAPES`` the server ends ``'a\\'`` at the second
    quote, where the parser reads an escaped quote: the text reads ``sc_b`` on the server
    while the parser sees one string. The application's own call shows the server's
    reading; the user session's is refused and does not run."""
    env = _env_for(request, MY)
    env.reset()
    attack = "SELECT 'a\\' AS s, (SELECT secret FROM sc_b) AS leak -- '"
    url = env.url + ("&" if "?" in env.url else "?") + "sql_mode=NO_BACKSLASH_ESCAPES"
    app = DatabaseManager()
    app.create_pool(DatabaseType.MYSQL, url)
    try:
        assert app.fetch_all(attack) == [{"s": "a\\", "leak": "s3cret"}]
    finally:
        app.close_all()
    moded = Env(MY, env.db, url, env.schema)

    async def async_call(session: Any) -> Any:
        return await session.fetch_all(attack)

    ran = _attempt(moded, mode, "ann", lambda s: s.fetch_all(attack), async_call)
    assert ran == []


@pytest.mark.parametrize(
    ("dialect", "user", "sql", "named"),
    [
        (PG, "ann", "COPY sc_b TO STDOUT", "COPY statements"),
        (PG, "ann", "LISTEN sc_chan", "LISTEN statements"),
        (PG, "ann", "SELECT pg_read_file('/etc/hostname')", "pg_read_file()"),
        (MY, "ann", "SELECT sleep(1)", "sleep()"),
        (LITE, "ann", "SELECT * FROM pragma_table_info('sc_b')", "pragma_table_info()"),
        (MY, "ann", "SELECT 1 /*!50000 , 2 */", "executable comment"),
        (MY, "ann", "SELECT 'a\\'", "backslash"),
        (PG, "ann", "SELECT 1 FROM sc_a; SELECT 2 FROM sc_a", "2 statements in one text"),
        (PG, "ann", "SELECT * FROM sc_a FOR UPDATE", "may not update on 'sc_a'"),
        (PG, "ann", "SELECT * INTO sc_new FROM sc_a", "may not ddl on 'sc_new'"),
        (PG, "ann", "WITH sc_b AS (SELECT * FROM sc_b) SELECT 1", "may not select on 'sc_b'"),
        (PG, "ann", "SELECT * FROM public.sc_b", "may not select on 'public.sc_b'"),
        (
            PG,
            "ian",
            "INSERT INTO sc_a (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 1",
            "update",
        ),
        (LITE, "ian", "REPLACE INTO sc_a (id) VALUES (1)", "may not delete on 'sc_a'"),
        (PG, "max", "MERGE INTO sc_a USING sc_b ON true WHEN MATCHED THEN DELETE", "delete"),
        (MY, "uma", "UPDATE sc_a JOIN sc_b ON 1 = 1 SET sc_b.x = 0", "may not update on 'sc_b'"),
        (MY, "dee", "DELETE sc_a, sc_b FROM sc_a JOIN sc_b", "may not delete on 'sc_b'"),
        (PG, "ann", "SELECT sc_b.secret FROM sc_a", "column of 'sc_b'"),
        (PG, "ann", "SELEKT 1", "cannot parse"),
    ],
)
def test_a_refusal_names_what_was_not_allowed(dialect: str, user: str, sql: str, named: str):
    acl = _acl()
    statement = Statement(dialect, dialect, "p", "execute", sql)
    with pytest.raises(PermissionDenied, match=re.escape(named)):
        acl.check(user, statement)


@pytest.mark.parametrize("dialect", [pytest.param(d, marks=_MARKS[d]) for d in ALL])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_is_checked_before_its_first_row(
    request: pytest.FixtureRequest, dialect: str, mode: str
) -> None:
    env = _env_for(request, dialect)
    env.reset()
    sql = "SELECT secret FROM sc_b"

    def sync_call(session: Any) -> Any:
        with session.connection(TYPES[dialect]) as conn:
            return list(conn.stream(sql))

    async def async_call(session: Any) -> Any:
        async with session.connection(TYPES[dialect]) as conn:
            return [row async for row in conn.stream(sql)]

    assert _attempt(env, mode, "ann", sync_call, async_call) == []
