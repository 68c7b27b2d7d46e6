"""Backends: the registry keyed by URL scheme, and the interface every backend implements."""

from __future__ import annotations

from dbsystem.backends._registry import (
    available_schemes,
    get_backend_class,
    register_backend,
    scheme_database_type,
)
from dbsystem.backends.base import Backend, Capabilities, SQLConnectionBase
from dbsystem.kernel.types import DatabaseType
from dbsystem.kernel.url import DatabaseURL

__all__ = [
    "Backend",
    "Capabilities",
    "SQLConnectionBase",
    "available_schemes",
    "database_type_for_url",
    "get_backend_class",
    "register_backend",
]


def database_type_for_url(url: DatabaseURL) -> DatabaseType:
    """The database type a URL connects to; ``mock://NAME`` gives the type NAME stands for."""
    db_type = scheme_database_type(url.scheme)
    if db_type is not None:
        return db_type
    return DatabaseType.parse(url.host or "sqlite")
