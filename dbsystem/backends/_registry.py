"""URL scheme -> backend class, imported on first use so that drivers stay optional.

The table holds ``"module:Class"`` strings (encode/databases' approach): importing dbsystem
never imports psycopg or pymysql. Third-party backends register through
``register_backend`` or the ``dbsystem.backends`` entry-point group.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from dbsystem.errors import BackendNotAvailable, BackendNotFound, NotSupportedError
from dbsystem.kernel.types import DatabaseType

if TYPE_CHECKING:
    from dbsystem.backends.base import Backend

ENTRY_POINT_GROUP = "dbsystem.backends"

_PACKAGE = "dbsystem.backends."
# scheme -> (target, database type, pip extra that brings the driver)
_BUILTIN: dict[str, tuple[str, DatabaseType | None, str | None]] = {
    scheme: (_PACKAGE + target, db_type, extra)
    for schemes, target, db_type, extra in (
        (("sqlite",), "sqlite:SQLiteBackend", DatabaseType.SQLITE, None),
        (("mock",), "mock:MockBackend", None, None),
        (
            ("postgresql", "postgres", "postgresql+psycopg"),
            "postgresql:PostgreSQLBackend",
            DatabaseType.POSTGRES,
            "postgresql",
        ),
        (("mysql", "mysql+pymysql", "mariadb"), "mysql:MySQLBackend", DatabaseType.MYSQL, "mysql"),
        (("redis", "rediss", "redis+mock"), "redis:RedisBackend", DatabaseType.REDIS, "redis"),
        (
            ("redis+cluster", "rediss+cluster"),
            "redis_cluster:RedisClusterBackend",
            DatabaseType.REDIS,
            "redis",
        ),
        (
            ("redis+sentinel", "rediss+sentinel"),
            "redis_sentinel:RedisSentinelBackend",
            DatabaseType.REDIS,
            "redis",
        ),
        (("mongodb", "mongodb+srv"), "mongodb:MongoBackend", DatabaseType.MONGODB, "mongodb"),
        (("mongodb+mock",), "mongodb:MongoBackend", DatabaseType.MONGODB, "mock"),
    )
    for scheme in schemes
}
# Schemes whose backends are planned but not in this release: a clear error, not "unknown".
_PLANNED: dict[str, DatabaseType] = {}

_lock = threading.Lock()
_targets: dict[str, tuple[str | type[Backend], DatabaseType | None, str | None]] = dict(_BUILTIN)
_cache: dict[str, type[Backend]] = {}
_entry_points_loaded = False


def register_backend(
    scheme: str,
    target: str | type[Backend],
    db_type: DatabaseType | None = None,
    *,
    extra: str | None = None,
) -> None:
    """Register a backend for a URL scheme: a ``Backend`` subclass or ``"module:Class"``.

    ``db_type`` is the database type its URLs create pools for (None: any SQL type, as
    for mocks). ``extra`` names the pip extra to suggest when its import fails.
    """
    with _lock:
        _targets[scheme.lower()] = (target, db_type, extra)
        _cache.pop(scheme.lower(), None)


def available_schemes() -> list[str]:
    """Every URL scheme with a registered backend, sorted."""
    _load_entry_points()
    return sorted(_targets)


def scheme_database_type(scheme: str) -> DatabaseType | None:
    """The database type URLs of ``scheme`` serve (None for mock-like backends)."""
    _load_entry_points()
    scheme = scheme.lower()
    if scheme in _targets:
        return _targets[scheme][1]
    if scheme in _PLANNED:
        return _PLANNED[scheme]
    raise _not_found(scheme)


def get_backend_class(scheme: str) -> type[Backend]:
    """The backend class for ``scheme``, importing its module on first use."""
    scheme = scheme.lower()
    cached = _cache.get(scheme)
    if cached is not None:
        return cached
    _load_entry_points()
    if scheme not in _targets:
        if scheme in _PLANNED:
            raise NotSupportedError(
                f"the {_PLANNED[scheme].value} backend ({scheme}://) is not part of this "
                f"dbsystem release; available schemes: {', '.join(available_schemes())}",
                backend=scheme,
            )
        raise _not_found(scheme)
    target, _, extra = _targets[scheme]
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f" (pip install 'dbsystem[{extra}]')" if extra else ""
            raise BackendNotAvailable(
                f"the driver for {scheme}:// is not installed{hint}: {exc}", backend=scheme
            ) from exc
        cls: type[Backend] = getattr(module, attr)
    else:
        cls = target
    with _lock:
        _cache[scheme] = cls
    return cls


def _not_found(scheme: str) -> BackendNotFound:
    valid = sorted(set(_targets) | set(_PLANNED))
    return BackendNotFound(f"unknown URL scheme {scheme!r}; valid schemes: {', '.join(valid)}")


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _targets.setdefault(ep.name.lower(), (ep.value, None, None))
