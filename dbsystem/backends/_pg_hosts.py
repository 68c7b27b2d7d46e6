"""PostgreSQL URLs with several hosts, telling which role a server plays now, and
PgBouncer's transaction mode.

``postgresql://app@h1:5441,h2:5442,h3:5443/shop?target_session_attrs=read-write`` is read
with libpq's semantics: psycopg (3.2 and later, sync and async alike) tries the hosts in
order (``load_balance_hosts=random``: in random order) and keeps the first whose session
matches ``target_session_attrs``:

- ``any`` (the default): the first that answers;
- ``read-write``: one that accepts writes (not a hot standby, and
  ``default_transaction_read_only`` off);
- ``read-only``: the opposite;
- ``primary`` / ``standby``: not in / in hot standby;
- ``prefer-standby``: a standby if one answers, else any.

A pool keeps its connections, and servers change roles under them: after a failover the
old primary comes back as a standby. With ``read-write`` or ``primary`` a connection whose
server reports it is read only (``in_hot_standby``/``default_transaction_read_only``,
which PostgreSQL 14+ pushes to its clients as they change), or whose statement fails with
``ReadOnlySqlTransaction`` while the server says so, is broken: the statement raises
``ConnectionFailed`` and the pool drops the connection; the next one it opens goes to the
new primary. ``standby`` drops a connection to a server that was promoted.

``?pgbouncer=transaction`` says a transaction-pooling PgBouncer sits in front: psycopg
prepares nothing server-side (``prepare_threshold=None``: prepared statements would stay
on PgBouncer's server connections and collide across clients), and what needs the same
server session for more than one transaction is refused with ``NotSupportedError``
(``refuse_session_state``): LISTEN, session advisory locks, PREPARE, WITH HOLD cursors,
and SET/RESET outside a transaction (SET LOCAL inside one is fine).
"""

from __future__ import annotations

import re
from typing import Any

from dbsystem.errors import ConfigurationError, NotSupportedError
from dbsystem.kernel.url import DatabaseURL

__all__ = [
    "SESSION_ATTRS",
    "host_parts",
    "pooling_mode",
    "refuse_session_state",
    "role_mismatch",
    "validate_host_options",
]

SESSION_ATTRS = frozenset(
    {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
)
_LOAD_BALANCE = frozenset({"disable", "random"})
_READ_ONLY_SQLSTATE = "25006"


def validate_host_options(options: dict[str, str], backend: str) -> None:
    """Refuse a ``target_session_attrs`` or ``load_balance_hosts`` libpq would not take,
    now rather than at the first connect."""
    attrs = options.get("target_session_attrs")
    if attrs is not None and attrs not in SESSION_ATTRS:
        raise ConfigurationError(
            f"target_session_attrs={attrs!r} is not one of: {', '.join(sorted(SESSION_ATTRS))}",
            backend=backend,
        )
    balance = options.get("load_balance_hosts")
    if balance is not None and balance not in _LOAD_BALANCE:
        raise ConfigurationError(
            f"load_balance_hosts={balance!r} is not one of: disable, random", backend=backend
        )


def host_parts(url: DatabaseURL) -> dict[str, Any]:
    """libpq's ``host`` and ``port`` for the URL's host list: ``"h1,h2"`` and
    ``"5441,5442"`` (a host without a port gets 5432 when another names one)."""
    if len(url.hosts) <= 1:
        return {"host": url.host or None, "port": url.port}
    hosts = ",".join(host for host, _ in url.hosts)
    ports = [port for _, port in url.hosts]
    if all(port is None for port in ports):
        return {"host": hosts, "port": None}
    return {"host": hosts, "port": ",".join(str(port or 5432) for port in ports)}


def _status(pgconn: Any, name: bytes) -> bool:
    return bool(pgconn.parameter_status(name) == b"on")


def role_mismatch(pgconn: Any, attrs: str | None, exc: BaseException | None = None) -> str | None:
    """Why the server behind ``pgconn`` no longer suits ``target_session_attrs=attrs``,
    or None. With ``exc`` (a statement's error), only a ``ReadOnlySqlTransaction`` counts,
    and only when the server says it is read only (a ``BEGIN READ ONLY`` of the caller's
    own also raises it)."""
    if attrs is None or attrs in ("any", "prefer-standby"):
        return None
    if exc is not None and getattr(exc, "sqlstate", None) != _READ_ONLY_SQLSTATE:
        return None
    standby = _status(pgconn, b"in_hot_standby")
    read_only = standby or _status(pgconn, b"default_transaction_read_only")
    if attrs == "read-write" and read_only:
        return "the server is read only now (a standby after a failover?)"
    if attrs == "primary" and standby:
        return "the server is a standby now (after a failover?)"
    if exc is None and attrs == "standby" and not standby:
        return "the server is no longer a standby (promoted?)"
    if exc is None and attrs == "read-only" and not read_only:
        return "the server accepts writes now (promoted?)"
    return None


# -- PgBouncer in transaction mode ---------------------------------------------------------

_POOLING_MODES = frozenset({"transaction", "session"})
# What lives in a server session beyond one transaction: under a transaction-pooling
# PgBouncer the next statement may run on another server connection.
_SESSION_ONLY = (
    (re.compile(r"^\s*(LISTEN|UNLISTEN)\b", re.I), "LISTEN/UNLISTEN", "a direct URL"),
    (
        re.compile(
            r"\bpg_(try_)?advisory_(lock|unlock|lock_shared|unlock_shared|unlock_all)\b", re.I
        ),
        "a session advisory lock",
        "pg_advisory_xact_lock inside a transaction",
    ),
    (re.compile(r"^\s*(PREPARE|DEALLOCATE)\b", re.I), "PREPARE", "plain statements"),
    (re.compile(r"^\s*DECLARE\b.*\bWITH\s+HOLD\b", re.I | re.S), "a WITH HOLD cursor", "stream()"),
)
_SESSION_SET = re.compile(r"^\s*(SET(?!\s+LOCAL\b)|RESET)\b", re.I)


def pooling_mode(options: dict[str, str], backend: str) -> str | None:
    """``?pgbouncer=transaction`` (or ``session``) taken out of ``options``: it is ours,
    not libpq's."""
    mode = options.pop("pgbouncer", None)
    if mode is not None and mode not in _POOLING_MODES:
        raise ConfigurationError(
            f"pgbouncer={mode!r} is not one of: transaction, session", backend=backend
        )
    return mode


def refuse_session_state(sql: str, in_transaction: bool) -> None:
    """Raise ``NotSupportedError`` for SQL that relies on a server session a
    transaction-pooling PgBouncer does not keep (``?pgbouncer=transaction``)."""
    for pattern, what, instead in _SESSION_ONLY:
        if pattern.search(sql):
            raise NotSupportedError(
                f"{what} is refused through PgBouncer in transaction mode "
                f"(?pgbouncer=transaction): the next statement may run on another server "
                f"connection; use {instead}",
                backend="postgresql",
                statement=sql,
            )
    if not in_transaction and _SESSION_SET.match(sql):
        raise NotSupportedError(
            "SET/RESET outside a transaction is refused through PgBouncer in transaction "
            "mode (?pgbouncer=transaction): it would change a server connection other "
            "clients get next; use SET LOCAL inside a transaction",
            backend="postgresql",
            statement=sql,
        )
