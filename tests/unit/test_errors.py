"""The exception tree, driver-error translation and secret scrubbing."""

from __future__ import annotations

import pickle
import sqlite3

import pytest

from dbsystem import errors
from dbsystem.backends._translate import translate


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (errors.InterfaceError, errors.DBSystemError),
        (errors.DatabaseError, errors.DBSystemError),
        (errors.IntegrityError, errors.DatabaseError),
        (errors.ProgrammingError, errors.DatabaseError),
        (errors.NotSupportedError, errors.DatabaseError),
        (errors.OperationalError, errors.DatabaseError),
        (errors.ConnectionFailed, errors.OperationalError),
        (errors.ConnectionTimeout, errors.ConnectionFailed),
        (errors.PoolTimeout, errors.PoolError),
        (errors.PoolClosed, errors.PoolError),
        (errors.PoolExhausted, errors.PoolError),
        (errors.PoolError, errors.OperationalError),
        (errors.ConfigurationError, errors.DBSystemError),
        (errors.ConfigurationError, ValueError),
        (errors.InvalidURL, errors.ConfigurationError),
        (errors.BackendNotFound, errors.ConfigurationError),
        (errors.BackendNotAvailable, errors.ConfigurationError),
        (errors.QueryBuildError, errors.DBSystemError),
        (errors.MigrationError, errors.SchemaError),
        (errors.PermissionDenied, errors.SecurityError),
        (errors.AuthenticationError, errors.SecurityError),
    ],
)
def test_hierarchy(child, parent):
    assert issubclass(child, parent)


def test_every_exported_error_has_a_docstring():
    for name in errors.__all__:
        assert getattr(errors, name).__doc__, name


@pytest.mark.parametrize(
    ("driver_error", "ours"),
    [
        (sqlite3.IntegrityError("dup"), errors.IntegrityError),
        (sqlite3.OperationalError("locked"), errors.OperationalError),
        (sqlite3.ProgrammingError("bad"), errors.ProgrammingError),
        (sqlite3.DataError("too big"), errors.DataError),
        (sqlite3.NotSupportedError("no"), errors.NotSupportedError),
        (sqlite3.InterfaceError("bind"), errors.InterfaceError),
        (RuntimeError("odd"), errors.DatabaseError),
    ],
)
def test_translate_maps_pep249_classes_and_keeps_the_cause(driver_error, ours):
    err = translate(driver_error, backend="sqlite", statement="SELECT 1")
    assert type(err) is ours
    assert err.__cause__ is driver_error and err.orig is driver_error
    assert err.backend == "sqlite" and str(err).startswith("[sqlite] ")


def test_translate_scrubs_secrets_and_hides_parameters_unless_asked():
    exc = RuntimeError("auth failed for postgresql://app:pa55word@h/db (pa55word)")
    err = translate(exc, backend="postgresql", params={"card": "4111"}, secrets=["pa55word"])
    assert "pa55word" not in str(err) and "4111" not in str(err) and err.params is None
    shown = translate(exc, backend="postgresql", params={"card": "4111"}, show_params=True)
    assert "4111" in str(shown)


def test_errors_survive_pickling():
    err = errors.IntegrityError("dup", backend="sqlite", statement="INSERT")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is errors.IntegrityError
    assert (copy.message, copy.backend, copy.statement) == ("dup", "sqlite", "INSERT")
