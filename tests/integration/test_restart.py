"""A real server restart under write load: nothing acknowledged is lost, the pool recovers.

Destructive (it restarts the local PostgreSQL and MariaDB), so it runs only with
``DBSYSTEM_TEST_DESTRUCTIVE=1``, which ``.ci/run`` sets.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from dbsystem import DatabaseManager, DatabaseType, OperationalError, PoolConfig
from dbsystem.errors import DBSystemError
from tests.server_control import restart_mariadb, restart_postgres

pytestmark = [pytest.mark.destructive, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def _destructive_allowed():
    if os.environ.get("DBSYSTEM_TEST_DESTRUCTIVE") != "1":
        pytest.skip("restarts the local servers: set DBSYSTEM_TEST_DESTRUCTIVE=1")


def _restart(kind: str, manager: DatabaseManager) -> None:
    if kind == "postgres":
        restart_postgres()
        return
    tls_on = manager.fetch_value("SELECT @@have_ssl") == "YES"
    args: list[str] = []
    if tls_on:
        from tests.tls_support import mariadb_tls_args

        args = mariadb_tls_args()
    restart_mariadb(*args)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_restart_under_load_loses_no_acknowledged_write(kind, request):
    url = request.getfixturevalue(f"{kind}_url")
    db_type = DatabaseType.POSTGRES if kind == "postgres" else DatabaseType.MYSQL
    manager = DatabaseManager()
    manager.create_pool(
        db_type, PoolConfig(url=url, min_size=2, max_size=6, acquire_timeout=10, connect_timeout=2)
    )
    table = f"restart_{uuid.uuid4().hex[:10]}"
    manager.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, worker INTEGER)")
    acked: list[int] = []
    successes: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    guard = threading.Lock()

    def worker(number: int) -> None:
        sequence = 0
        while not stop.is_set():
            ident = number * 1_000_000 + sequence
            sequence += 1
            try:
                with manager.connection() as conn:
                    conn.execute(
                        f"INSERT INTO {table} (id, worker) VALUES (:id, :w)",
                        {"id": ident, "w": number},
                    )
            except DBSystemError as exc:
                with guard:
                    errors.append(exc)
                time.sleep(0.02)
                continue
            with guard:
                acked.append(ident)
                successes.append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        before = len(acked)
        _restart(kind, manager)
        back_up = time.monotonic()
        time.sleep(3.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    try:
        stored = {row["id"] for row in manager.fetch_all(f"SELECT id FROM {table}")}
        assert before > 0
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged writes lost"
        assert len(acked) == len(set(acked))
        after = [t for t in successes if t > back_up]
        assert after, "no write succeeded after the server came back"
        recovery = after[0] - back_up
        assert recovery < 2.0, f"recovery took {recovery:.2f} s"
        assert all(isinstance(e, OperationalError) for e in errors), {type(e) for e in errors}
        stats = manager.pool_stats()[db_type]
        assert stats.active == 0 and stats.total <= 6
        print(  # noqa: T201 - the figures, shown with pytest -s
            f"{kind}: {len(acked)} acknowledged, {len(errors)} errors during the restart, "
            f"first success {recovery * 1000:.0f} ms after the server was back"
        )
    finally:
        manager.execute(f"DROP TABLE {table}")
        manager.close_all()
