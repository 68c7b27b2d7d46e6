"""The command line's data commands: ``load``, ``shell`` and ``bench``, and pool names from
the config file and the environment in place of URLs."""

from __future__ import annotations

import json
import pathlib

import pytest
from typer.testing import CliRunner

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.cli import app

runner = CliRunner()
CHINOOK = pathlib.Path(__file__).parent / "data" / "chinook" / "ChinookData.json"


def _count(url: str, table: str) -> int:
    db = DatabaseManager()
    db.create_pool(DatabaseType.NONE, url)
    try:
        return int(db.fetch_value(f'SELECT COUNT(*) FROM "{table}"'))
    finally:
        db.close_all()


def test_load_chinook_one_table_per_key(tmp_path):
    url = f"sqlite:///{tmp_path}/chinook.db"
    result = runner.invoke(app, ["load", url, str(CHINOOK), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["tables"]["Track"] == 3503 and report["rows"] == 15607
    assert _count(url, "Track") == 3503 and _count(url, "PlaylistTrack") == 8715
    result = runner.invoke(app, ["sql", url, 'SELECT "Name" FROM "Genre" WHERE "GenreId" = 1'])
    assert "Rock" in result.output


def test_load_csv_and_json_lines_with_inferred_types(tmp_path):
    url = f"sqlite:///{tmp_path}/load.db"
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("id,name,score,note\n1,Ada,9.5,\n2,Bob,7,hi\n")
    assert runner.invoke(app, ["load", url, str(csv_file)]).exit_code == 0
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"id": 1, "tags": ["a", "b"]}\n\n{"id": 2, "ok": true}\n')
    result = runner.invoke(app, ["load", url, str(lines), "--table", "log"])
    assert result.exit_code == 0 and "loaded 2 row(s)" in result.output
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, url)
    try:
        rows = db.fetch_all("SELECT * FROM people ORDER BY id")
        assert rows == [
            {"id": 1, "name": "Ada", "score": 9.5, "note": None},
            {"id": 2, "name": "Bob", "score": 7.0, "note": "hi"},
        ]
        kinds = {r["name"]: r["type"] for r in db.fetch_all("PRAGMA table_info(people)")}
        assert kinds == {"id": "BIGINT", "name": "TEXT", "score": "DOUBLE", "note": "TEXT"}
        assert db.fetch_all("SELECT * FROM log ORDER BY id") == [
            {"id": 1, "tags": '["a", "b"]', "ok": None},
            {"id": 2, "tags": None, "ok": 1},
        ]
    finally:
        db.close_all()


def test_a_failed_load_leaves_no_row_and_exits_1(tmp_path):
    url = f"sqlite:///{tmp_path}/strict.db"
    runner.invoke(app, ["sql", url, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"])
    data = tmp_path / "t.json"
    data.write_text(json.dumps([{"id": i, "v": "x"} for i in range(1, 2500)] + [{"id": 1}]))
    result = runner.invoke(app, ["load", url, str(data), "--batch", "1000"])
    assert result.exit_code == 1 and "UNIQUE constraint failed" in result.output
    assert _count(url, "t") == 0  # the first batches were rolled back too


def test_load_refuses_bad_files_with_exit_2(tmp_path):
    url = f"sqlite:///{tmp_path}/bad.db"
    cases = {
        "a.txt": ("x", "unknown file type"),
        "b.json": ("{not json", "not valid JSON"),
        "c.json": ('{"rows": 5}', "array of objects"),
        "d.json": ("[1, 2]", "row 1 is not an object"),
        "my table.json": ('[{"a": 1}]', "not a table name"),
        "evil.json": ('[{"a\\" ); DROP TABLE t; --": 1}]', "is not a column name"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = runner.invoke(app, ["load", url, str(path)])
        assert result.exit_code == 2 and message in result.output, (name, result.output)
    assert _count(url, "sqlite_master") == 0  # nothing was created
    result = runner.invoke(app, ["load", url, str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_load_into_mongodb_and_redis_mocks():
    result = runner.invoke(app, ["load", "mongodb+mock://", str(CHINOOK), "--table", "Genre"])
    assert result.exit_code == 0 and "Genre: 25 row(s)" in result.output
    result = runner.invoke(app, ["load", "redis+mock://", str(CHINOOK), "--table", "Artist"])
    assert result.exit_code == 0 and "Artist: 275 row(s)" in result.output


def test_load_rows_writes_documents_and_hashes_in_batches():
    from dbsystem.cli._load import load_rows
    from dbsystem.errors import ConfigurationError

    tables = {
        "people": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Alan", "tags": ["x"]}],
        "pets": [{"id": 7, "name": "Rex"}],
    }
    for url in ("mongodb+mock://", "redis+mock://"):
        db = DatabaseManager()
        db.create_pool(DatabaseType.NONE, url)
        try:
            steps: list[int] = []
            loaded = load_rows(
                db, list(tables.items()), create=True, batch=1, key=None, advance=steps.append
            )
            assert loaded == {"people": 2, "pets": 1}
            assert steps == [1, 1, 1]
            if url.startswith("mongodb"):
                people = db.query().collection("people").find().sort("id").execute()
                assert [(p["id"], p["name"]) for p in people] == [(1, "Ada"), (2, "Alan")]
            else:
                with db.connection() as conn:
                    assert conn.execute("HGETALL", "people:2") == {
                        "id": "2",
                        "name": "Alan",
                        "tags": '["x"]',
                    }
                    assert conn.execute("HGET", "pets:7", "name") == "Rex"
                with pytest.raises(ConfigurationError, match="no 'nick'"):
                    load_rows(
                        db,
                        list(tables.items()),
                        create=True,
                        batch=5,
                        key="nick",
                        advance=steps.append,
                    )
        finally:
            db.close_all()


@pytest.mark.postgres
def test_load_into_postgres_in_one_transaction(postgres_url, tmp_path):
    data = tmp_path / "cli_load_t.json"
    data.write_text(json.dumps([{"id": i, "name": f"n{i}", "ok": i % 2 == 0} for i in range(300)]))
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, postgres_url)
    try:
        db.execute("DROP TABLE IF EXISTS cli_load_t")
        result = runner.invoke(app, ["load", postgres_url, str(data), "--batch", "64"])
        assert result.exit_code == 0, result.output
        assert db.fetch_value("SELECT COUNT(*) FROM cli_load_t WHERE ok") == 150
        types = db.fetch_all(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'cli_load_t' ORDER BY ordinal_position"
        )
        assert [t["data_type"] for t in types] == ["bigint", "text", "boolean"]
    finally:
        db.execute("DROP TABLE IF EXISTS cli_load_t")
        db.close_all()


def test_shell_runs_a_piped_sql_script(tmp_path):
    url = f"sqlite:///{tmp_path}/shell.db"
    script = (
        "CREATE TABLE t (id INTEGER, name TEXT);\n"
        "INSERT INTO t VALUES (1, 'ada'),\n  (2, 'bob');\n"
        "-- a comment\n"
        ".tables\n"
        ".json on\n"
        "SELECT name FROM t\n WHERE id = 2;\n"
    )
    result = runner.invoke(app, ["shell", url], input=script)
    assert result.exit_code == 0, result.output
    assert "2 row(s) affected" in result.output and "│ t " in result.output
    assert json.loads(result.output[result.output.index("[") :]) == [{"name": "bob"}]


def test_shell_reports_failures_and_exits_1_from_a_script(tmp_path):
    url = f"sqlite:///{tmp_path}/shell.db"
    result = runner.invoke(app, ["shell", url], input="SELEC 1;\nSELECT 2 AS two;\n.nope\n")
    assert result.exit_code == 1
    assert 'near "SELEC": syntax error' in result.output  # the error, and the run goes on
    assert "│   2 │" in result.output or "│ 2   │" in result.output
    assert "unknown command '.nope'" in result.output


def test_shell_on_redis_and_mongodb():
    result = runner.invoke(
        app, ["shell", "redis+mock://"], input='HSET user:1 name "Ada L"\nHGET user:1 name\n'
    )
    assert result.exit_code == 0 and "Ada L" in result.output
    script = (
        'insert people [{"name": "Ada", "age": 36}, {"name": "Bob", "age": 17}]\n'
        'count people {"age": {"$gt": 18}}\n'
        ".json on\n"
        'find people {"name": "Bob"}\n'
        "find people {oops\n"
    )
    result = runner.invoke(app, ["shell", "mongodb+mock://"], input=script)
    assert result.exit_code == 1 and "not JSON" in result.output
    start = result.output.index("[\n  {")  # the find, printed as JSON
    found = json.loads(result.output[start : result.output.index("\n]", start) + 2])
    assert found[0]["name"] == "Bob" and isinstance(found[0]["_id"], str)


def test_bench_reports_ratios_against_the_driver_and_sqlalchemy(tmp_path):
    url = f"sqlite:///{tmp_path}/bench.db"
    result = runner.invoke(app, ["bench", url, "--seconds", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    cases = {(r["case"], r["contender"]) for r in rows}
    assert ("execute", "raw driver") in cases and ("build", "sqlalchemy") in cases
    assert ("acquire+release", "sqlalchemy") in cases and ("fetch 1000", "dbsystem") in cases
    for row in rows:
        assert row["us_per_call"] > 0 and row["time_ratio"] > 0
    result = runner.invoke(app, ["bench", "mongodb+mock://"])
    assert result.exit_code == 1 and "SQL databases and Redis" in result.output


def test_pool_names_from_the_config_file_and_the_environment(tmp_path, monkeypatch):
    config = tmp_path / "dbsystem.toml"
    config.write_text(
        f'[databases.sqlite]\nurl = "sqlite:///{tmp_path}/main.db"\n\n'
        f'[databases.reports]\nurl = "sqlite:///{tmp_path}/reports.db"\n'
    )
    result = runner.invoke(app, ["ping", "reports", "--config", str(config), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["url"].endswith("reports.db")
    monkeypatch.setenv("DBSYSTEM_CONFIG", str(config))
    result = runner.invoke(app, ["sql", "sqlite", "SELECT 7 AS n", "--json"])
    assert json.loads(result.output) == [{"n": 7}]
    monkeypatch.setenv("DBSYSTEM_AUDITDB_URL", f"sqlite:///{tmp_path}/audit.db")
    assert runner.invoke(app, ["ping", "auditdb"]).exit_code == 0
    result = runner.invoke(app, ["ping", "nowhere"])
    assert result.exit_code == 2
    assert "[databases.nowhere]" in result.output and "DBSYSTEM_NOWHERE_URL" in result.output


def test_every_command_has_help():
    commands = [
        ["demo"], ["ping"], ["sql"], ["shell"], ["load"], ["bench"], ["migrate", "up"],
        ["audit", "verify"], ["metrics", "serve"], ["pools"], ["version"],
    ]  # fmt: skip
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command
