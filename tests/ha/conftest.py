"""Fixtures of the ``-m ha`` tests: real clusters started once per session and always torn
down (the finalizer runs when a test fails too). Without the Debian packages the tests skip,
and fail in CI (``DBSYSTEM_REQUIRE_SERVERS=1``)."""

from __future__ import annotations

import pytest

from tests.conftest import skip_or_fail
from tests.ha.cluster import PG_BIN, PatroniCluster, missing_tools


@pytest.fixture(scope="session")
def patroni_cluster():
    """Three PostgreSQL 15 nodes under Patroni (synchronous mode) with one etcd member."""
    missing = missing_tools("patroni", "patronictl", "etcd", "setpriv", str(PG_BIN / "postgres"))
    if missing:
        skip_or_fail(missing)
    cluster = PatroniCluster(nodes=3)
    try:
        cluster.start()
        cluster.wait_healthy(90)
        yield cluster
    except Exception:
        print(cluster.logs())  # noqa: T201 - shown by pytest when the test fails
        raise
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sentinel_cluster():
    """A Redis master, one replica and three sentinels."""
    from tests.ha.cluster import SentinelCluster

    missing = missing_tools("redis-server", "redis-sentinel", "redis-cli")
    if missing:
        skip_or_fail(missing)
    cluster = SentinelCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pgbouncer(postgres_url):
    """PgBouncer (transaction mode) in front of the shared server's test database."""
    from tests.ha.cluster import PgBouncer

    missing = missing_tools("pgbouncer", "setpriv")
    if missing:
        skip_or_fail(missing)
    bouncer = PgBouncer(postgres_url)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def mariadb_replication():
    """A MariaDB primary and a replica of it, of their own (ports 15450, 15451)."""
    from tests.ha.cluster import MariaDBReplication

    missing = missing_tools("mariadbd", "mariadb-install-db", "mariadb")
    if missing:
        skip_or_fail(missing)
    pair = MariaDBReplication()
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
