"""Pool definitions read from a TOML file (``load_toml``) or named by the environment.

The engine's side of configuration: it needs the backend registry to tell a URL's database
type, so it sits above ``dbsystem.kernel.config`` (which validates one pool's settings).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dbsystem.backends import database_type_for_url
from dbsystem.errors import ConfigurationError, DBSystemError
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import DatabaseType

__all__ = ["PoolSpec", "config_path_from_env", "load_toml"]


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One pool to create: its database type, optional name and settings (see ``load_toml``)."""

    db_type: DatabaseType
    config: PoolConfig
    name: str | None = None
    default: bool = False
    source: str | None = None
    """Where it was defined (``databases.reports``), named in its errors."""

    @contextmanager
    def errors_named(self) -> Iterator[None]:
        """Prefix a ``ConfigurationError`` raised in the block with ``source`` (creating
        the pool: a URL of the wrong type, say), so that it names the pool's table."""
        try:
            yield
        except ConfigurationError as exc:
            if self.source is None or exc.message.startswith(f"{self.source}:"):
                raise
            raise ConfigurationError(f"{self.source}: {exc.message}") from None


def load_toml(path: str | os.PathLike[str]) -> list[PoolSpec]:
    """Read pool definitions from a TOML file.

    Each table under ``[databases]`` defines one pool. ``url`` is required; ``type`` is
    optional (taken from the URL's scheme); ``default = true`` makes it the manager's default;
    every other key is a ``PoolConfig`` field. A table named ``default`` or after its type
    (``[databases.sqlite]``) defines that type's unnamed pool; any other name a named pool::

        [databases.sqlite]
        url = "sqlite:///app.db"
        max_size = 5

        [databases.analytics]
        type = "postgres"
        url = "postgresql://app@127.0.0.1/analytics"
    """
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {os.fspath(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"invalid TOML in {os.fspath(path)!r}: {exc}") from None
    databases = document.get("databases")
    if not isinstance(databases, dict) or not databases:
        raise ConfigurationError(f"{os.fspath(path)!r} has no [databases.<name>] tables")
    specs = []
    for key, table in databases.items():
        if not isinstance(table, dict):
            raise ConfigurationError(f"databases.{key} must be a table")
        settings = dict(table)
        type_value = settings.pop("type", None)
        is_default = bool(settings.pop("default", False))
        try:
            config = PoolConfig(**settings)
            db_type = (
                DatabaseType.parse(type_value) if type_value else database_type_for_url(config.url)
            )
        except DBSystemError as exc:
            raise ConfigurationError(f"databases.{key}: {exc.message}") from None
        name = None if key in ("default", db_type.value) else key
        specs.append(
            PoolSpec(
                db_type=db_type,
                config=config,
                name=name,
                default=is_default,
                source=f"databases.{key}",
            )
        )
    return specs


def config_path_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """The TOML file named by ``DBSYSTEM_CONFIG``, if set."""
    env = os.environ if environ is None else environ
    value = env.get("DBSYSTEM_CONFIG")
    return Path(value) if value else None
