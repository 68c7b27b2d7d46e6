"""S19: text from users (parameters, labels, SQL, database errors) cannot forge a log line."""

from __future__ import annotations

import logging
import time

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig, ProgrammingError

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
