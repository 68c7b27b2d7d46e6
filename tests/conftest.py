"""Shared fixtures: server URLs from the environment, skipping (or failing, in CI) without them.

``DBSYSTEM_TEST_POSTGRES_URL``, ``DBSYSTEM_TEST_MYSQL_URL``, ``DBSYSTEM_TEST_REDIS_URL`` and
``DBSYSTEM_TEST_MONGO_URL`` point the suite at real servers. A test that needs one skips
when it is not set or not reachable, unless ``DBSYSTEM_REQUIRE_SERVERS=1`` (set by
``.ci/run``), which turns that skip into a failure so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

pytest_plugins = ["pytester"]

SERVER_ENV = {
    "postgres": "DBSYSTEM_TEST_POSTGRES_URL",
    "mysql": "DBSYSTEM_TEST_MYSQL_URL",
    "redis": "DBSYSTEM_TEST_REDIS_URL",
    "mongodb": "DBSYSTEM_TEST_MONGO_URL",
}


def servers_required() -> bool:
    return os.environ.get("DBSYSTEM_REQUIRE_SERVERS", "") not in ("", "0", "false")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return True
    except OSError:
        return False


def skip_or_fail(problem: str) -> NoReturn:
    """Skip a test whose tool or server is missing; fail it where they are required (CI)."""
    if servers_required():
        pytest.fail(problem)
    pytest.skip(problem)


def server_url(kind: str) -> str:
    """The URL of a real server of ``kind``, or skip (fail when servers are required)."""
    env = SERVER_ENV[kind]
    url = os.environ.get(env)
    problem = None if url else f"{env} is not set"
    if url and not _reachable(url):
        problem = f"the {kind} server at {env} is not reachable"
    if problem:
        # No MongoDB server can be had on these machines: its real-server tests run only
        # when a URL is given, in CI too (the mongomock suite always runs).
        if servers_required() and kind != "mongodb":
            pytest.fail(f"{problem}, and DBSYSTEM_REQUIRE_SERVERS is set")
        pytest.skip(problem)
    return url  # type: ignore[return-value]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return server_url("postgres")


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return server_url("mysql")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return server_url("redis")


@pytest.fixture(scope="session")
def redis_cluster_url():
    """A three-master Redis Cluster: DBSYSTEM_TEST_REDIS_CLUSTER_URL, or one started here
    from redis-server processes on ports 7100-7102 (stopped at the end of the session)."""
    import shutil

    from tests.server_control import start_redis_cluster, stop_redis_cluster

    given = os.environ.get("DBSYSTEM_TEST_REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        skip_or_fail("a Redis Cluster needs redis-server and redis-cli")
    url = start_redis_cluster()
    yield url
    stop_redis_cluster()


@pytest.fixture(scope="session")
def mongo_url() -> str:
    return server_url("mongodb")


@pytest.fixture(
    params=[
        pytest.param("redis+mock://", id="fakeredis"),
        pytest.param("real", id="redis", marks=pytest.mark.redis),
    ]
)
def redis_target(request: pytest.FixtureRequest) -> str:
    """A Redis URL: fakeredis, then the real server (``DBSYSTEM_TEST_REDIS_URL``)."""
    url: str = request.getfixturevalue("redis_url") if request.param == "real" else request.param
    return url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses a server fixture gets that server's marker, so -m "not postgres" works.
    markers = {
        "postgres_url": "postgres",
        "mysql_url": "mysql",
        "redis_url": "redis",
        "mongo_url": "mongodb",
    }
    for item in items:
        for fixture, marker in markers.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))
