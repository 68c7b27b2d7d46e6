"""The SQL checker's reading of a text: every (action, table) it needs, exactly (issue 19).

The attack suite (tests/security/test_attacks_sql.py) shows the refusals on real servers;
this pins what the checker derives, so that a statement is neither under- nor
over-charged."""

from __future__ import annotations

import pytest

from dbsystem.security._sqlcheck import allowed_functions, analyse

PG, MY, LITE = "postgresql", "mysql", "sqlite"


@pytest.mark.parametrize(
    ("dialect", "sql", "accesses"),
    [
        (PG, "SELECT * FROM a JOIN b ON a.id = b.id", {("select", "a"), ("select", "b")}),
        (PG, "WITH b AS (SELECT * FROM b) SELECT * FROM b", {("select", "b")}),
        (
            PG,
            "WITH x AS (SELECT * FROM a), y AS (SELECT * FROM x) SELECT * FROM y",
            {("select", "a")},
        ),
        (PG, "WITH x AS (SELECT * FROM y), y AS (SELECT 1) SELECT * FROM x", {("select", "y")}),
        (
            PG,
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
            set(),
        ),
        (PG, "WITH d AS (DELETE FROM b RETURNING *) SELECT * FROM d", {("delete", "b")}),
        (PG, "SELECT * INTO t FROM a", {("ddl", "t"), ("insert", "t"), ("select", "a")}),
        (PG, "SELECT * FROM a JOIN b ON true FOR UPDATE", {("update", "a"), ("update", "b")}),
        (PG, "SELECT * FROM a FOR SHARE", {("update", "a")}),
        (MY, "SELECT * FROM a LOCK IN SHARE MODE", {("update", "a")}),
        (
            PG,
            "INSERT INTO a (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 1",
            {("insert", "a"), ("update", "a")},
        ),
        (PG, "INSERT INTO a (id) VALUES (1) ON CONFLICT DO NOTHING", {("insert", "a")}),
        (
            MY,
            "INSERT INTO a (id) VALUES (1) ON DUPLICATE KEY UPDATE v = VALUES(v)",
            {("insert", "a"), ("update", "a")},
        ),
        (LITE, "INSERT OR REPLACE INTO a (id) VALUES (1)", {("insert", "a"), ("delete", "a")}),
        (MY, "REPLACE INTO a SELECT * FROM b", {("insert", "a"), ("delete", "a"), ("select", "b")}),
        (
            PG,
            "MERGE INTO a USING b ON a.id = b.id WHEN MATCHED THEN DELETE "
            "WHEN NOT MATCHED THEN INSERT (id) VALUES (b.id)",
            {("delete", "a"), ("insert", "a"), ("select", "b")},
        ),
        (MY, "UPDATE a JOIN b ON a.id = b.id SET b.x = 1", {("update", "b"), ("select", "a")}),
        (
            MY,
            "UPDATE a t JOIN b u ON t.id = u.id SET t.v = u.x",
            {("update", "a"), ("select", "b")},
        ),
        (MY, "UPDATE a, b SET x = 1", {("update", "a"), ("update", "b")}),
        (MY, "DELETE a, b FROM a JOIN b ON a.id = b.id", {("delete", "a"), ("delete", "b")}),
        (MY, "DELETE t FROM a t JOIN b u ON t.id = u.id", {("delete", "a"), ("select", "b")}),
        (MY, "DELETE FROM a, b USING a JOIN b ON a.id = b.id", {("delete", "a"), ("delete", "b")}),
        (PG, "DELETE FROM a USING b WHERE a.id = b.id", {("delete", "a"), ("select", "b")}),
        (PG, "UPDATE a SET v = b.x FROM b WHERE a.id = b.id", {("update", "a"), ("select", "b")}),
        (PG, "SELECT * FROM a, LATERAL (SELECT * FROM b) s", {("select", "a"), ("select", "b")}),
        (
            PG,
            'SELECT * FROM public.b, "B", B',
            {("select", "public.b"), ("select", "B"), ("select", "b")},
        ),
        (LITE, 'SELECT * FROM "B", main.B', {("select", "b"), ("select", "main.b")}),
        (MY, "SELECT * FROM B", {("select", "B")}),
        (PG, "CREATE TABLE t AS SELECT * FROM b", {("ddl", "t"), ("insert", "t"), ("select", "b")}),
        (PG, "CREATE VIEW v AS SELECT * FROM b", {("ddl", "v"), ("select", "b")}),
        (PG, "CREATE INDEX i ON b (x)", {("ddl", "b")}),
        (PG, "DROP TABLE IF EXISTS a, b", {("ddl", "a"), ("ddl", "b")}),
        (PG, "DROP INDEX i", {("ddl", "*")}),
        (PG, "TRUNCATE a", {("ddl", "a")}),
        (PG, "SAVEPOINT s1", set()),
        (PG, "SELECT * FROM a WHERE id = :p0", {("select", "a")}),
    ],
)
def test_every_table_gets_its_real_action(dialect, sql, accesses):
    analysis = analyse(sql, dialect)
    assert analysis.refused is None
    assert set(analysis.accesses) == accesses


@pytest.mark.parametrize(
    ("dialect", "sql", "why"),
    [
        (PG, "SELECT 1; SELECT 2", "2 statements"),
        (MY, "SELECT 1 /*!50000 , 2 */", "executable comment"),
        (MY, "SELECT '/*M!'", "executable comment"),
        (MY, "SELECT 'a\\'", "backslash"),
        (PG, "COPY a TO PROGRAM 'id'", "COPY"),
        (PG, "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql", "FUNCTION"),
        (PG, "SELECT sc_b.x FROM a", "column of 'sc_b'"),
        (MY, "SELECT * FROM a INTO OUTFILE '/tmp/x'", "cannot parse"),
    ],
)
def test_what_is_not_understood_is_refused(dialect, sql, why):
    refused = analyse(sql, dialect).refused
    assert refused is not None
    assert why in refused


@pytest.mark.parametrize(
    ("dialect", "sql", "denied"),
    [
        (PG, "SELECT pg_sleep(1), lower('a')", {"pg_sleep"}),
        (PG, "SELECT pg_catalog.lower('a')", {"pg_catalog.lower"}),
        (MY, "SELECT sleep(1), now()", {"sleep"}),
        (LITE, "SELECT * FROM pragma_table_info('b')", {"pragma_table_info"}),
    ],
)
def test_functions_off_the_list_are_named(dialect, sql, denied):
    assert analyse(sql, dialect).functions - allowed_functions(dialect) == denied


def test_the_analysis_is_cached_by_text():
    text = "SELECT id FROM cache_probe WHERE id = :p0"
    assert analyse(text, PG) is analyse(text, PG)
