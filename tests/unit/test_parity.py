"""Sync and async are twins by construction: the same public names, the same parameters.

For each pair (the manager, the user session, the connection, the pool) every public
member of one must exist on the other with the same kind (method, property, classmethod)
and, when callable, the same ``inspect.signature`` parameters: names, kinds and defaults
(annotations may differ: the async side returns awaitables). ``__enter__``/``__exit__`` are
compared with ``__aenter__``/``__aexit__``. On the async side exactly the members that do
I/O are coroutine functions; the rest (``connection()``, ``transaction()``, ``stream()``,
``query()``, ``stats()``...) return at once what is then awaited or iterated.

What cannot be the same is listed in ``ONLY`` with the reason; each entry must still be a
real difference, so the list cannot rot.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, TypedDict, Unpack

import pytest

from dbsystem import DatabaseManager, UserSession
from dbsystem.aio.connection import AsyncConnection
from dbsystem.aio.manager import AsyncDatabaseManager, AsyncUserSession
from dbsystem.aio.pool import AsyncConnectionPool
from dbsystem.core.connection import Connection
from dbsystem.core.pool import ConnectionPool

# The async dunders stand for the sync ones.
_DUNDERS = {"__init__": "__init__", "__aenter__": "__enter__", "__aexit__": "__exit__"}

# Members one side has and the other cannot (or does not yet), by pair: name -> why.
ONLY: dict[str, dict[str, str]] = {
    "manager": {
        # Sync code (the ORM, migrations) run from async code on a worker thread, its
        # statements on the async pools: there is nothing to bridge on the sync side.
        "run_sync": "async only",
    },
    "session": {
        "run_sync": "async only",  # as the manager's
    },
    "connection": {},
    "pool": {
        # An asyncio pool cannot connect in __init__: ``await pool.open()`` (or ``async
        # with pool``) opens min_size connections; the thread pool opens them in __init__.
        "open": "async only",
    },
}

# The async members that must be coroutine functions (they do I/O); every other is not.
AWAITED: dict[str, set[str]] = {
    "manager": {
        "__enter__",
        "__exit__",
        "close_all",
        "close_pool",
        "configure",
        "create_pool",
        "create_pools",
        "create_tables",
        "drop_tables",
        "execute",
        "executemany",
        "fetch_all",
        "fetch_one",
        "fetch_value",
        "health",
        "insert_many",
        "run_sync",
    },
    "session": {
        "create_tables",
        "drop_tables",
        "execute",
        "executemany",
        "fetch_all",
        "fetch_one",
        "fetch_value",
        "insert_many",
        "run_sync",
    },
    "connection": {
        "__enter__",
        "__exit__",
        "execute",
        "executemany",
        "fetch_all",
        "fetch_one",
        "fetch_value",
        "insert_many",
        "ping",
        "release",
    },
    "pool": {"__enter__", "__exit__", "acquire", "acquire_as", "close", "open", "try_acquire"},
}

PAIRS = [
    pytest.param("manager", DatabaseManager, AsyncDatabaseManager, id="manager"),
    pytest.param("session", UserSession, AsyncUserSession, id="session"),
    pytest.param("connection", Connection, AsyncConnection, id="connection"),
    pytest.param("pool", ConnectionPool, AsyncConnectionPool, id="pool"),
]


def _surface(cls: type, asynchronous: bool) -> dict[str, Any]:
    """Public members by name (async dunders under their sync names), unwrapped."""
    out = {}
    for name in dir(cls):
        if name.startswith("_"):
            if asynchronous and name in _DUNDERS:
                out[_DUNDERS[name]] = inspect.getattr_static(cls, name)
            elif not asynchronous and name in _DUNDERS.values():
                out[name] = inspect.getattr_static(cls, name)
            continue
        out[name] = inspect.getattr_static(cls, name)
    return out


def _kind(member: Any) -> str:
    for kind in (property, classmethod, staticmethod):
        if isinstance(member, kind):
            return kind.__name__
    return "method" if callable(member) else "attribute"


def _function(member: Any) -> Any:
    return member.__func__ if isinstance(member, (classmethod, staticmethod)) else member


_UNPACK = re.compile(r"Unpack\[(\w+)\]")


def _parameters(member: Any) -> list[tuple[str, str, Any]]:
    """Names, kinds and defaults; ``**options: Unpack[SomeOptions]`` (options declared once,
    as a TypedDict) stands for its keys, each a keyword-only parameter of that TypedDict."""
    function = _function(member)
    out: list[tuple[str, str, Any]] = []
    for p in inspect.signature(function).parameters.values():
        unpacked = _UNPACK.fullmatch(str(p.annotation)) if p.kind is p.VAR_KEYWORD else None
        if unpacked is None:
            out.append((p.name, p.kind.name, p.default))
            continue
        options = inspect.unwrap(function).__globals__[unpacked.group(1)]
        out.extend((key, "KEYWORD_ONLY", options.__name__) for key in options.__annotations__)
    return out


@pytest.mark.parametrize(("pair", "sync_cls", "async_cls"), PAIRS)
def test_the_same_public_names(pair, sync_cls, async_cls):
    sync, asynchronous = _surface(sync_cls, False), _surface(async_cls, True)
    only = ONLY[pair]
    assert sorted(set(sync) - set(asynchronous) - set(only)) == [], "missing on the async side"
    assert sorted(set(asynchronous) - set(sync) - set(only)) == [], "missing on the sync side"
    stale = sorted(name for name in only if (name in sync) == (name in asynchronous))
    assert stale == [], "listed in ONLY, but no longer a difference: remove them"


@pytest.mark.parametrize(("pair", "sync_cls", "async_cls"), PAIRS)
def test_the_same_kinds_and_parameters(pair, sync_cls, async_cls):
    sync, asynchronous = _surface(sync_cls, False), _surface(async_cls, True)
    differences = []
    for name in sorted(set(sync) & set(asynchronous)):
        kinds = _kind(sync[name]), _kind(asynchronous[name])
        if kinds[0] != kinds[1]:
            differences.append((name, kinds))
        elif kinds[0] not in ("property", "attribute"):
            parameters = _parameters(sync[name]), _parameters(asynchronous[name])
            if parameters[0] != parameters[1]:
                differences.append((name, parameters))
    assert differences == []


@pytest.mark.parametrize(("pair", "sync_cls", "async_cls"), PAIRS)
def test_exactly_the_io_members_are_awaited(pair, sync_cls, async_cls):
    sync, asynchronous = _surface(sync_cls, False), _surface(async_cls, True)
    awaited = {
        name
        for name, member in asynchronous.items()
        if inspect.iscoroutinefunction(_function(member))
    }
    assert awaited == AWAITED[pair]
    assert [n for n, m in sync.items() if inspect.iscoroutinefunction(_function(m))] == []


def test_the_comparison_sees_a_difference():
    # The checks above pass only if the surfaces match: a drifted twin must be caught.
    class Sync:
        def fetch(self, sql: str, params: Any = None) -> None: ...

    class Async:
        async def fetch(self, sql: str, params: Any = (), *, timeout: float = 1.0) -> None: ...

    assert _parameters(_surface(Sync, False)["fetch"]) != _parameters(
        _surface(Async, True)["fetch"]
    )
    assert _surface(Sync, False).keys() == _surface(Async, True).keys() == {"__init__", "fetch"}


class _Options(TypedDict, total=False):
    name: str
    timeout: float


class _OtherOptions(TypedDict, total=False):
    name: str


def test_options_declared_once_are_compared_key_by_key():
    class Sync:
        def run(self, sql: str, **options: Unpack[_Options]) -> None: ...

    class Async:
        async def run(self, sql: str, **options: Unpack[_OtherOptions]) -> None: ...

    sync, asynchronous = _surface(Sync, False)["run"], _surface(Async, True)["run"]
    assert _parameters(sync)[2:] == [
        ("name", "KEYWORD_ONLY", "_Options"),
        ("timeout", "KEYWORD_ONLY", "_Options"),
    ]
    assert _parameters(sync) != _parameters(asynchronous)
