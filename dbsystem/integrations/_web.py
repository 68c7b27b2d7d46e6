"""What the web framework integrations share: the pools to open, and who the request's user is.

Both ``dbsystem.integrations.fastapi`` and ``dbsystem.integrations.flask`` take the same
settings (``WebSettings``): a manager, the pools to open at start-up (``pools`` and/or a
TOML ``config`` file), a ``user`` function reading the request's identity, and whether each
request runs in one transaction. The decisions (which pools, what an identity means) are
made here once; each module only wires them into its framework.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from dbsystem.errors import ConfigurationError, InterfaceError
from dbsystem.kernel.config import PoolConfig
from dbsystem.kernel.types import DatabaseType

__all__ = [
    "ConnectionArgs",
    "Identity",
    "PoolsArg",
    "WebSettings",
    "identity_of",
]

PoolsArg = (
    Mapping[DatabaseType | str, PoolConfig | str]
    | Iterable[tuple[DatabaseType | str, PoolConfig | str]]
)
"""The pools to open: ``{DatabaseType.POSTGRES: "postgresql://..."}`` or (type, config) pairs."""


class ConnectionArgs(TypedDict, total=False):
    """The keyword options of both integrations' ``connection()`` (declared once here,
    checked by ``WebSettings.connection_args``)."""

    name: str | None
    """The named pool of the type (default: its default pool)."""
    transaction: bool | None
    """Run the request in one transaction (default: the integration's ``transaction``)."""
    user: bool
    """Lend the connection as the request's user (default: False)."""


_CONNECTION_ARGS = frozenset(ConnectionArgs.__annotations__)


@dataclass(frozen=True, slots=True)
class Identity:
    """A request's user, as a ``user`` function may return it (or just the name)."""

    user: str
    attrs: Mapping[str, Any] | None = None
    session_id: str | None = None

    def session(self, db: Any) -> Any:
        """``db.for_user`` for this identity: the user session its requests run as."""
        return db.for_user(self.user, session_id=self.session_id, attrs=self.attrs)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The settings of a framework integration (see the module docstring)."""

    pools: tuple[tuple[DatabaseType, PoolConfig | str], ...]
    config: str | os.PathLike[str] | None
    user: Callable[..., Any] | None
    transaction: bool
    close: bool

    @classmethod
    def make(
        cls,
        pools: PoolsArg | None,
        config: str | os.PathLike[str] | None,
        user: Callable[..., Any] | None,
        transaction: bool,
        close: bool,
    ) -> WebSettings:
        items = pools.items() if isinstance(pools, Mapping) else (pools or ())
        parsed = []
        for item in items:
            try:
                db_type, pool_config = item
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"pools: expected (DatabaseType, PoolConfig or URL) pairs, got {item!r}"
                ) from None
            parsed.append((DatabaseType.parse(db_type), pool_config))
        return cls(tuple(parsed), config, user, transaction, close)

    def connection_args(self, options: Mapping[str, Any]) -> tuple[str | None, bool, bool]:
        """``name``, whether in one transaction and ``user`` from ``connection()``'s keyword
        options; an option it does not take raises ``InterfaceError`` naming it (as the
        managers' ``connection()`` does)."""
        if not options.keys() <= _CONNECTION_ARGS:
            unknown = ", ".join(sorted(options.keys() - _CONNECTION_ARGS))
            raise InterfaceError(
                f"connection() takes no option {unknown} (its options: name, transaction, user)"
            )
        transaction = options.get("transaction")
        in_transaction = self.transaction if transaction is None else transaction
        return options.get("name"), in_transaction, options.get("user", False)

    def opening(self, db: Any) -> Iterator[Any]:
        """Create the pools on ``db``, one at a time as this is iterated; each item is what
        the manager returned (an awaitable for an ``AsyncDatabaseManager``: await it before
        taking the next)."""
        for db_type, pool_config in self.pools:
            yield db.create_pool(db_type, pool_config)
        if self.config is not None:
            yield db.configure(self.config)

    def closing(self, db: Any) -> Any:
        """Close every pool of ``db`` unless ``close=False``: what ``close_all`` returned."""
        return db.close_all() if self.close else None


def identity_of(found: Any) -> Identity | None:
    """What a ``user`` function returned, as an ``Identity`` (None: no user)."""
    if found is None or found == "":
        return None
    if isinstance(found, Identity):
        return found
    if isinstance(found, str):
        return Identity(found)
    if isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], str):
        return Identity(found[0], found[1])
    raise ConfigurationError(
        "the user function must return None, a user name, (name, attrs) or an Identity; "
        f"got {type(found).__name__}"
    )
