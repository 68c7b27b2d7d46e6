"""Fixtures of the ``-m ha`` tests: real clusters started once per session and always torn
down (the finalizer runs when a test fails too). Without the Debian packages the tests skip,
and fail in CI (``DBSYSTEM_REQUIRE_SERVERS=1``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.ha.cluster import (
    PG_BIN,
    MariaDBReplication,
    PatroniCluster,
    PgBouncer,
    SentinelCluster,
    missing_tools,
)


def _running(cluster: Any, *tools: str) -> Iterator[Any]:
    """Start ``cluster`` (skip without ``tools``), hand it out, stop it whatever happens;
    its logs are printed if it does not come up."""
    missing = missing_tools(*tools)
    if missing:
        skip_or_fail(missing)
    try:
        cluster.start()
    except Exception:
        print(cluster.logs())  # noqa: T201 - shown by pytest with the error
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def patroni_cluster():
    """Three PostgreSQL 15 nodes under Patroni (synchronous mode) with one etcd member."""
    tools = ("patroni", "patronictl", "etcd", "setpriv", str(PG_BIN / "postgres"))
    yield from _running(PatroniCluster(nodes=3), *tools)


@pytest.fixture(scope="session")
def sentinel_cluster():
    """A Redis master, one replica and three sentinels."""
    yield from _running(SentinelCluster(), "redis-server", "redis-sentinel", "redis-cli")


@pytest.fixture(scope="session")
def pgbouncer(postgres_url):
    """PgBouncer (transaction mode) in front of the shared server's test database."""
    yield from _running(PgBouncer(postgres_url), "pgbouncer", "setpriv")


@pytest.fixture(scope="session")
def mariadb_replication():
    """A MariaDB primary and a replica of it, of their own (ports 15450, 15451)."""
    yield from _running(MariaDBReplication(), "mariadbd", "mariadb-install-db", "mariadb")
