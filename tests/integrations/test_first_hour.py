"""The first hour: `dbsystem demo` with no setup and on configured servers, touching only
the tables it creates; the README's and TESTING.md's test instructions."""

from __future__ import annotations

import io
import pathlib
import re
import socket
import sqlite3
import subprocess
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.cli import app
from dbsystem.cli._demo import run_demo

ROOT = pathlib.Path(__file__).resolve().parents[2]
runner = CliRunner()


def _demo(tmp_path, urls=None, environ=None, probe_host="127.0.0.1") -> str:
    out = io.StringIO()
    run_demo(
        tmp_path / "demo.db",
        Console(file=out, width=200),
        urls,
        environ={} if environ is None else environ,
        probe_host=probe_host,
    )
    return out.getvalue()


def test_the_demo_runs_twice_on_one_file_and_leaves_no_table(tmp_path):
    for _ in range(2):
        output = _demo(tmp_path, probe_host="127.0.0.2")  # (nothing listens there)
        assert "inserted 500 users" in output
    tables = sqlite3.connect(tmp_path / "demo.db").execute("SELECT name FROM sqlite_master")
    assert tables.fetchall() == []


def test_the_demo_refuses_a_file_that_has_its_table_and_never_drops_others(tmp_path):
    target = tmp_path / "demo.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")  # the user's own
    _demo(tmp_path, probe_host="127.0.0.2")
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
        conn.execute("CREATE TABLE dbsystem_demo_users (x INTEGER)")
    result = runner.invoke(app, ["demo", "--path", str(target)])
    assert result.exit_code == 2  # refused, as a usage error
    assert "already has a table dbsystem_demo_users" in result.output
    with sqlite3.connect(target) as conn:
        names = sorted(n for (n,) in conn.execute("SELECT name FROM sqlite_master"))
    assert names == ["dbsystem_demo_users", "users"]


def test_the_demo_runs_on_configured_servers_and_drops_what_it_made(
    tmp_path, postgres_url, mysql_url
):
    before = _demo_tables(postgres_url, mysql_url)
    output = _demo(
        tmp_path, environ={"DBSYSTEM_POSTGRES_URL": postgres_url}, urls={
            DatabaseType.MYSQL: mysql_url
        }
    )  # fmt: skip
    assert re.search(r"PostgreSQL \(postgresql://.*\): 200 rows in one transaction", output)
    assert re.search(r"MySQL/MariaDB \(mysql://.*\): 200 rows in one transaction", output)
    assert _demo_tables(postgres_url, mysql_url) == before


def _demo_tables(postgres_url: str, mysql_url: str) -> list[str]:
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, postgres_url)
    db.create_pool(DatabaseType.MYSQL, mysql_url)
    try:
        found = db.fetch_all(
            "SELECT table_name AS t FROM information_schema.tables "
            "WHERE table_name LIKE 'dbsystem_demo_%'",
            db_type=DatabaseType.POSTGRES,
        ) + db.fetch_all(
            "SELECT table_name AS t FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name LIKE 'dbsystem_demo_%'",
            db_type=DatabaseType.MYSQL,
        )
        return sorted(row["t"] for row in found)
    finally:
        db.close_all()


def test_a_server_listening_but_not_configured_is_named_with_how_to_add_it(tmp_path):
    with socket.socket() as listener:
        try:
            listener.bind(("127.0.0.3", 5432))
        except OSError:
            pytest.skip("cannot listen on 127.0.0.3:5432 here")
        listener.listen()
        output = _demo(tmp_path, probe_host="127.0.0.3")
    assert "PostgreSQL is listening on 127.0.0.3:5432: set DBSYSTEM_POSTGRES_URL" in output
    assert "MySQL/MariaDB" not in output


def test_an_unreachable_configured_server_is_one_line_and_the_demo_goes_on(tmp_path):
    output = _demo(tmp_path, urls={DatabaseType.POSTGRES: "postgresql://nobody@127.0.0.1:1/x"})
    (line,) = [line for line in output.splitlines() if line.startswith("PostgreSQL")]
    assert line.startswith("PostgreSQL: skipped, ConnectionFailed")
    assert "inserted 500 users" in output


def test_the_demo_needs_no_extra_install():
    """`pip install -e .` brings what the demo's Redis and MongoDB sections use."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in declared}
    assert {"fakeredis", "mongomock", "pymongo"} <= names


def test_readme_and_testing_guide_name_the_server_variables_and_the_command():
    command = (
        "DBSYSTEM_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test "
        "DBSYSTEM_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test "
        "DBSYSTEM_TEST_REDIS_URL=redis://127.0.0.1:6379/15 pytest"
    )
    for page in (ROOT / "README.md", ROOT / "docs" / "TESTING.md"):
        text = page.read_text()
        for variable in ("POSTGRES", "MYSQL", "REDIS", "MONGO"):
            assert f"DBSYSTEM_TEST_{variable}_URL" in text, (page.name, variable)
        assert command in " ".join(text.replace("\\\n", " ").split()), page.name


def test_the_console_script_demo_prints_no_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "dbsystem.cli", "demo", "--path",
         str(tmp_path / "d.db")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_user_guides_install_lines_work_from_a_clone():
    """Each install line of USER_GUIDE.md installs the checkout (``-e .``) with extras the
    project declares."""
    import tomllib

    guide = (ROOT / "docs" / "USER_GUIDE.md").read_text()
    block = guide.split("## Install", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines() if "pip install" in line]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(declared["optional-dependencies"])
    assert lines[0] == "pip install -e ."
    for line in lines[1:]:
        match = re.fullmatch(r'pip install -e "\.\[([a-z,]+)\]"', line)
        assert match, line
        assert set(match.group(1).split(",")) <= extras, line


def _readme_block(marker: str) -> str:
    from tests.test_readme import python_blocks

    return next(block for block in python_blocks() if marker in block)


def _run_block(block: str, namespace: dict) -> list[str]:
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), namespace)
    return out.getvalue().splitlines()


def test_the_readme_quick_start_runs_twice_in_a_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(DatabaseManager, "_instance", None)
    block = _readme_block("DatabaseManager.instance()")
    first = _run_block(block, {})
    assert first[:4] == ["1 1", "[{'id': 1, 'name': 'ada'}]",
                         "sqlite UNIQUE constraint failed: users.name", "2"]  # fmt: skip
    monkeypatch.setattr(DatabaseManager, "_instance", None)
    assert _run_block(block, {})[:4] == first[:4]


def test_the_readme_orm_example_runs_twice_beside_the_quick_starts_table(tmp_path):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'app.db'}")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")  # Quick start's
    block = _readme_block("class Member(Entity")
    for _ in range(2):
        namespace = {"db": db}
        _run_block(block, namespace)
        assert namespace["ada"].id == 1
    assert db.fetch_value("SELECT COUNT(*) FROM members") == 1
    db.close_all()


def test_the_readme_mongodb_example_runs_twice_with_its_unique_index():
    block = _readme_block('collection("users")')
    create = next(line for line in block.splitlines() if "create_pool" in line)
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, "mongodb+mock://127.0.0.1:27017/app")  # (for create)
    for _ in range(2):  # on one database, as twice on a real server
        _run_block(block.replace(create, ""), {"db": db, "DatabaseType": DatabaseType})
    users = db.query(DatabaseType.MONGODB).collection("users")
    assert sorted(d["email"] for d in users.find().all()) == ["ada@example.com", "alan@example.com"]
    db.close_all()


def _sample(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("DBSYSTEM_")}
    return subprocess.run(
        [sys.executable, "-m", f"samples.{name}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "table"),
    [("basic_usage", "sample_notes"), ("orm_examples", "sample_books"),
     ("orm_examples", "dbsystem_migrations"), ("query_builders", "sample_people")],
)  # fmt: skip
def test_a_sample_refuses_to_touch_a_table_it_did_not_create(tmp_path, name, table):
    target = tmp_path / "yours.db"
    with sqlite3.connect(target) as conn:
        conn.execute(f"CREATE TABLE {table} (precious TEXT)")
        conn.execute(f"INSERT INTO {table} VALUES ('keep me')")
    result = _sample(name, "--sql-url", f"sqlite:///{target}")
    assert result.returncode == 2
    assert f"{table} already exist" in result.stderr
    with sqlite3.connect(target) as conn:
        assert conn.execute(f"SELECT precious FROM {table}").fetchall() == [("keep me",)]


@pytest.mark.parametrize("name", ["basic_usage", "orm_examples", "enterprise_example"])
def test_a_sample_leaves_no_table_behind_and_runs_again(tmp_path, name):
    target = tmp_path / "s.db"
    for _ in range(2):
        result = _sample(name, "--sql-url", f"sqlite:///{target}")
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(target) as conn:
        left = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )  # (sqlite_sequence is SQLite's own, kept for AUTOINCREMENT)
        assert left.fetchall() == []


def test_the_readme_documents_every_dot_command_of_the_shell():
    from dbsystem.cli._shell import _DOTS

    readme = (ROOT / "README.md").read_text()
    commands = [word for word in _DOTS.split() if word.startswith(".")]
    assert commands == [".tables", ".json", ".timing", ".help", ".quit"]
    for command in commands:
        assert f"| `{command}" in readme, command


@pytest.mark.parametrize("manager", ["sync", "async"])
def test_configure_errors_name_the_pools_table(tmp_path, manager):
    import asyncio

    from dbsystem import AsyncDatabaseManager
    from dbsystem.errors import ConfigurationError

    path = tmp_path / "dbsystem.toml"
    path.write_text('[databases.reports]\nurl = "sqlite:///r.db"\ntype = "postgres"\n')
    with pytest.raises(ConfigurationError) as caught:
        if manager == "sync":
            DatabaseManager().configure(path)
        else:
            asyncio.run(AsyncDatabaseManager().configure(path))
    assert (
        str(caught.value) == "databases.reports: a sqlite:// URL connects to sqlite, not postgres"
    )
    path.write_text('[databases.cache]\nurl = "redis+mock://"\nmin_size = 5\nmax_size = 2\n')
    with pytest.raises(ConfigurationError) as caught:
        DatabaseManager().configure(path)
    assert str(caught.value) == (
        "databases.cache: invalid pool configuration: min_size (5) must not exceed max_size (2)"
    )


@pytest.mark.parametrize("width", [60, 100])
def test_dbsystem_pools_fits_its_tables_to_the_terminal(width):
    from dbsystem.monitoring import PerformanceMonitor, PrometheusExporter

    long_name = "a-rather-long-pool-name-for-reports"
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, "sqlite://:memory:")
    db.create_pool(DatabaseType.SQLITE, "sqlite://:memory:", name=long_name)
    monitor = PerformanceMonitor().attach(db)
    held = db.connection(DatabaseType.SQLITE, label="nightly-report-with-a-long-label")
    try:
        with PrometheusExporter(port=0, monitor=monitor) as exporter:
            result = runner.invoke(app, ["pools", exporter.url], env={"COLUMNS": str(width)})
    finally:
        held.release()
        monitor.close()
        db.close_all()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in result.output  # nothing cut: long names fold onto more lines
    first_table = lines[: next(i for i, line in enumerate(lines) if line.startswith("└"))]
    pool_cells = "".join(line.split("│")[1].strip() for line in first_table if "│" in line)
    assert f"sqlite/{long_name}" in pool_cells
