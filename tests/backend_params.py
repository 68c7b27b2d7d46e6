"""The backends the cross-backend suites run on, as pytest parameters (one place)."""

from __future__ import annotations

import pytest

from dbsystem import DatabaseType

SQL_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]
SQL_TYPES = {
    "sqlite": DatabaseType.SQLITE,
    "postgres": DatabaseType.POSTGRES,
    "mysql": DatabaseType.MYSQL,
}
# Where one entity definition persists: the SQL backends and MongoDB (mongomock).
ENTITY_BACKENDS = [*SQL_BACKENDS, pytest.param("mongo", id="mongomock")]
ENTITY_TYPES = {**SQL_TYPES, "mongo": DatabaseType.MONGODB}
