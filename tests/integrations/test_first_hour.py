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
