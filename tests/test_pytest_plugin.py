"""The pytest plugin, run the way a user's suite runs it (pytester)."""

from __future__ import annotations


def test_fixtures_in_a_users_suite(pytester):
    pytester.makeconftest(
        """
import pytest

@pytest.fixture(scope="session")
def dbsystem_sqlite_setup():
    def setup(db):
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    return setup
"""
    )
    pytester.makepyfile(
        """
import pytest
from dbsystem import DatabaseManager, DatabaseType, IntegrityError


def create_user(name):
    # "application code": uses the process-wide manager
    return DatabaseManager.instance().execute(
        "INSERT INTO users (name) VALUES (:name)", {"name": name}).lastrowid


def test_mock(dbsystem_mock, dbsystem_manager):
    assert DatabaseManager.instance() is dbsystem_manager
    dbsystem_mock.expect("INSERT INTO users ...").affects(1, lastrowid=7)
    assert create_user("ada") == 7
    dbsystem_mock.assert_executed("INSERT INTO users ...", params={"name": "ada"})


def test_mock_other_type(make_dbsystem_mock):
    mock = make_dbsystem_mock(DatabaseType.MYSQL)
    mock.expect("INSERT ...").raises(IntegrityError("dup"))
    with pytest.raises(IntegrityError):
        create_user("ada")


def test_sqlite_writes_one(dbsystem_sqlite):
    create_user("ada")
    with dbsystem_sqlite.connection() as conn, conn.transaction():
        create_user_in(conn, "bob")
    assert dbsystem_sqlite.fetch_value("SELECT COUNT(*) FROM users") == 2


def create_user_in(conn, name):
    conn.execute("INSERT INTO users (name) VALUES (:name)", {"name": name})


def test_sqlite_starts_clean_again(dbsystem_sqlite):
    assert dbsystem_sqlite.fetch_value("SELECT COUNT(*) FROM users") == 0


def test_query_count_passes(dbsystem_sqlite, assert_num_queries):
    with assert_num_queries(2):
        create_user("a")
        create_user("b")


def test_query_count_fails(dbsystem_sqlite, assert_num_queries):
    with assert_num_queries(1):
        create_user("a")
        create_user("b")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*expected 1 statement(s), 2 ran*"])
