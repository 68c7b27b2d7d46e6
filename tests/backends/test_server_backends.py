"""Driver-specific behaviour of the PostgreSQL and MySQL backends."""

from __future__ import annotations

import pytest

from dbsystem import ConfigurationError, DatabaseManager, DatabaseType, PoolConfig
from dbsystem.backends._params import to_pyformat


def test_unknown_postgres_option_is_refused_before_connecting():
    with pytest.raises(ConfigurationError, match="invalid PostgreSQL connection option"):
        DatabaseManager().create_pool(
            DatabaseType.POSTGRES, "postgresql://u@127.0.0.1:1/db?colour=blue"
        )


def test_unknown_mysql_option_is_refused_before_connecting():
    with pytest.raises(ConfigurationError, match="unknown MySQL URL option"):
        DatabaseManager().create_pool(DatabaseType.MYSQL, "mysql://u@127.0.0.1:1/db?colour=blue")


@pytest.mark.parametrize(
    ("sql", "dialect", "expected", "names"),
    [
        ("SELECT :a, :b, :a", "postgresql", "SELECT %(a)s, %(b)s, %(a)s", ("a", "b")),
        ("SELECT ':a' || :b", "postgresql", "SELECT ':a' || %(b)s", ("b",)),
        ("SELECT :a::int, x::text", "postgresql", "SELECT %(a)s::int, x::text", ("a",)),
        ("SELECT $q$ :a $q$, E'\\' :b'", "postgresql", "SELECT $q$ :a $q$, E'\\' :b'", ()),
        ('SELECT ":a" FROM t -- :b', "postgresql", 'SELECT ":a" FROM t -- :b', ()),
        ("SELECT arr[1:2], '100%'", "postgresql", "SELECT arr[1:2], '100%%'", ()),
        ("SELECT `:a`, ':b', \":c\" # :d", "mysql", "SELECT `:a`, ':b', \":c\" # :d", ()),
        ("SELECT 'it\\'s :a', :b % 2", "mysql", "SELECT 'it\\'s :a', %(b)s %% 2", ("b",)),
    ],
)
def test_named_parameters_are_rewritten_only_outside_literals(sql, dialect, expected, names):
    assert to_pyformat(sql, dialect) == (expected, names)


@pytest.mark.postgres
def test_postgres_options_reach_libpq(postgres_url):
    manager = DatabaseManager()
    manager.create_pool(
        DatabaseType.POSTGRES, PoolConfig(url=postgres_url + "?application_name=dbsystem-test")
    )
    try:
        assert manager.fetch_value("SHOW application_name") == "dbsystem-test"
    finally:
        manager.close_all()


@pytest.mark.mysql
def test_mysql_error_text_is_readable(mysql_url):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.MYSQL, mysql_url)
    try:
        with pytest.raises(Exception) as info:
            manager.fetch_all("SELECT * FROM no_such_table_at_all")
        assert "doesn't exist (MySQL error 1146)" in str(info.value)
    finally:
        manager.close_all()


@pytest.mark.mysql
def test_mysql_refuses_stacked_statements(mysql_url):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.MYSQL, mysql_url)
    try:
        # With parameters the statement reaches the server (no client-side check on that
        # path): pymysql runs without MULTI_STATEMENTS, so MariaDB refuses it too.
        with pytest.raises(Exception, match="1064"):
            manager.fetch_all("SELECT :x; SELECT 2", {"x": 1})
        with pytest.raises(Exception, match="several statements"):
            manager.fetch_all("SELECT 1; SELECT 2")
    finally:
        manager.close_all()
