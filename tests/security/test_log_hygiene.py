"""S19: text from users (parameters, labels, SQL, database errors) cannot forge a log line."""

from __future__ import annotations

import logging
import time

import pytest

from dbsystem import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    PoolConfig,
    ProgrammingError,
)

FORGED = "x\r\nWARNING forged entry\u2028and\x85more"


def _assert_single_lines(caplog) -> None:
    assert caplog.records
    for record in caplog.records:
        message = record.getMessage()
        assert not any(c in message for c in "\r\n\x85\u2028\u2029"), message


def test_statement_log_lines_escape_line_breaks(caplog):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite://", echo=True, log_parameters=True))
    with caplog.at_level(logging.INFO, logger="dbsystem.sql"):
        assert db.fetch_value(f"SELECT :v || '{FORGED}'", {"v": FORGED}) == FORGED * 2
        with pytest.raises(ProgrammingError):
            db.execute(f"SELECT * FROM 'no_such_{FORGED}'")
    _assert_single_lines(caplog)
    assert len(caplog.records) == 2
    assert "\\r\\nWARNING forged entry\\u2028" in caplog.records[0].getMessage()
    db.close_all()


def test_leak_warnings_escape_the_lease_label(caplog):
    db = DatabaseManager()
    db.create_pool(
        DatabaseType.SQLITE, PoolConfig(url="sqlite://", max_size=2, leak_threshold=0.05)
    )
    with caplog.at_level(logging.WARNING, logger="dbsystem.pool"):
        with db.connection(label=FORGED):
            deadline = time.monotonic() + 5
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.05)
    (record,) = caplog.records
    head, _, stack = record.getMessage().partition("acquired at:\n")
    assert "label x\\r\\nWARNING forged entry\\u2028and\\x85more;" in head
    assert not any(c in head for c in "\r\n\x85\u2028\u2029")
    assert "test_leak_warnings_escape_the_lease_label" in stack  # the stack keeps its lines
    db.close_all()


@pytest.mark.parametrize(
    "name",
    [
        "dbsystem",
        "dbsystem.pool",
        "dbsystem.sql",
        "dbsystem.audit",
        "dbsystem.slow",
        "dbsystem.health",
        "dbsystem.alerts",
    ],
)
def test_every_library_logger_escapes_line_breaks(name, caplog):
    import dbsystem.monitoring  # noqa: F401  (its loggers are created on import)

    with caplog.at_level(logging.INFO, logger=name):
        logging.getLogger(name).warning("value %s", FORGED)
    _assert_single_lines(caplog)


# Issue 19: a password given as a URL option showed in repr, str, describe() and the INFO
# "pool opened" line; ?password= on PostgreSQL raised a raw TypeError.
OPTION_SECRET = "Opt-Secret-4q9z"


def _secret_option_url(base: str) -> str:
    return f"{base}?password={OPTION_SECRET}&sslpassword={OPTION_SECRET}2&application_name=app"


def _no_option_secret(texts: list[str]) -> None:
    leaked = [t for t in texts if OPTION_SECRET in t]
    assert leaked == []


def test_secret_url_options_never_show_in_config_texts_or_the_pool_opened_line(caplog):
    url = _secret_option_url("mock://postgresql")
    config = PoolConfig(url=url)
    db = DatabaseManager()
    with caplog.at_level(logging.DEBUG, logger="dbsystem"):
        pool = db.create_pool(DatabaseType.POSTGRES, config)
    opened = [r.getMessage() for r in caplog.records if "opened" in r.getMessage()]
    assert len(opened) == 1
    assert "password=***&sslpassword=***&application_name=app" in opened[0]
    texts = [
        repr(config),
        str(config),
        config.describe(),
        config.model_dump_json(),
        str(config.model_dump()),
        repr(config.url),
        str(config.url),
        repr(pool),
        repr(db),
        caplog.text,
    ]
    _no_option_secret(texts)
    assert config.options["password"] == OPTION_SECRET  # the backend still receives it
    db.close_all()


def test_postgres_password_option_is_a_password_not_a_type_error(caplog):
    # Nothing listens on port 1: the connection fails, as a ConnectionFailed that names
    # neither secret, instead of "make_conninfo() got multiple values for 'password'".
    url = _secret_option_url("postgresql://app@127.0.0.1:1/db")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionFailed) as info:
        DatabaseManager().create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, connect_timeout=1))
    _no_option_secret([str(info.value), repr(info.value), caplog.text])
    with pytest.raises(ConfigurationError, match=r"gives password twice.*\?password=") as twice:
        DatabaseManager().create_pool(
            DatabaseType.POSTGRES, f"postgresql://app:other@127.0.0.1:1/db?password={OPTION_SECRET}"
        )
    _no_option_secret([str(twice.value)])
    assert "other" not in str(twice.value)


@pytest.mark.postgres
def test_postgres_takes_the_password_from_the_url_option(postgres_url, caplog):
    # Trust authentication accepts any password: the option rides along to the server.
    url = _secret_option_url(postgres_url.split("?")[0])
    with caplog.at_level(logging.DEBUG):
        db = DatabaseManager()
        db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=url, max_size=1))
        assert db.fetch_value("SELECT 1") == 1
        db.close_all()
    assert "password=***" in caplog.text
    _no_option_secret([caplog.text])
