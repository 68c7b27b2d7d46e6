"""A pool on a real Patroni cluster (3 nodes, synchronous mode) through a switchover and
the loss of the primary's node: ten writer threads insert rows with ids they make while
the primary changes. Measured and checked: no acknowledged row missing, the pool's writes
back at most 1 s after the new primary takes writes directly, every caller error typed and
none once the pool has recovered."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from dbsystem import DatabaseManager, DatabaseType, DBSystemError, PoolConfig
from dbsystem.aio import AsyncDatabaseManager
from tests.ha.cluster import wait_for

pytestmark = [pytest.mark.ha, pytest.mark.slow, pytest.mark.timeout(240)]
PG = DatabaseType.POSTGRES
FIGURES: dict[str, float] = {}


class Writers:
    """``count`` threads inserting rows through one manager until stopped."""

    def __init__(self, db: DatabaseManager, table: str, count: int = 10) -> None:
        self.db, self.table = db, table
        self.acked: list[str] = []
        self.successes: list[float] = []
        self.ports: list[int] = []  # the server of each success, in step with successes
        self.errors: list[tuple[float, BaseException]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(count)]
        self._threads.append(threading.Thread(target=self._read))
        self.reads: list[tuple[float, int | None]] = []  # (when, port; None: failed)
        self.read_errors: list[BaseException] = []

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, number: int) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"{number}-{n}"
            n += 1
            try:
                port = self.db.fetch_value(
                    f"INSERT INTO {self.table} (id) VALUES (:id) RETURNING inet_server_port()",
                    {"id": key},
                )
            except BaseException as exc:
                with self._lock:
                    self.errors.append((time.monotonic(), exc))
                time.sleep(0.05)
            else:
                with self._lock:
                    self.acked.append(key)
                    self.successes.append(time.monotonic())
                    self.ports.append(port)
            time.sleep(0.02)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                port = self.db.fetch_value("SELECT inet_server_port()")
            except BaseException as exc:
                self.read_errors.append(exc)
                port = None
            self.reads.append((time.monotonic(), port))
            time.sleep(0.02)

    def first_success_after(self, moment: float, seconds: float, port: int | None = None) -> float:
        """When the first write after ``moment`` (on the server at ``port``) succeeded."""

        def found() -> float | None:
            with self._lock:
                later = [
                    t
                    for t, p in zip(self.successes, self.ports, strict=True)
                    if t > moment and port in (None, p)
                ]
            return min(later) if later else None

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            when = found()
            if when is not None:
                return when
            time.sleep(0.05)
        raise AssertionError(f"no write succeeded through the pool within {seconds} s")

    def gap_end(self, since: float, until: float) -> float:
        """When the longest stretch without a successful write that began after ``since``
        ended (the first write at or after ``until`` if it lasts beyond)."""
        deadline = time.monotonic() + 10
        while True:
            with self._lock:
                times = sorted(t for t in self.successes if t >= since)
            if times and times[-1] >= until:
                pairs = list(zip([since, *times], times, strict=False))
                return max(pairs, key=lambda pair: pair[1] - pair[0])[1]
            if time.monotonic() > deadline:
                raise AssertionError("no write succeeded through the pool after the outage")
            time.sleep(0.05)

    def longest_gap(self, since: float) -> float:
        with self._lock:
            times = sorted(t for t in self.successes if t >= since)
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def _new_leader_writable(
    cluster, old: str, seconds: float, same: bool = False
) -> tuple[str, float]:
    """Poll until a leader other than ``old`` (``same``: any leader) takes a write on a
    direct connection; return it and when."""

    def probe() -> tuple[str, float] | None:
        leader = cluster.leader()
        if leader is None or (leader == old and not same):
            return None
        with psycopg.connect(cluster.node_url(leader), autocommit=True, connect_timeout=1) as c:
            c.execute("INSERT INTO ha_probe VALUES (1)")
        return leader, time.monotonic()

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = probe()
        except (psycopg.Error, OSError):
            found = None
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no new leader took writes within {seconds} s")


@pytest.fixture
def table(patroni_cluster):
    name = f"ha_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(patroni_cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id TEXT PRIMARY KEY, at TIMESTAMPTZ DEFAULT now())")
    yield name
    with psycopg.connect(patroni_cluster.url(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def db(patroni_cluster):
    manager = DatabaseManager()
    manager.create_pool(
        PG,
        PoolConfig(
            url=patroni_cluster.url(),
            patroni=patroni_cluster.rest_urls(),
            max_size=12,
            connect_timeout=2,
        ),
    )
    yield manager
    manager.close_all()


def test_multi_host_url_connects_to_the_leader(patroni_cluster, db):
    leader = patroni_cluster.leader()
    with db.connection(PG) as conn:  # the primary pool's (reads would go to a replica)
        port = conn.fetch_value("SELECT inet_server_port()")
    assert port == patroni_cluster.port(leader)


def test_standby_url_connects_to_a_replica(patroni_cluster):
    manager = DatabaseManager()
    manager.create_pool(
        PG, PoolConfig(url=patroni_cluster.url("target_session_attrs=standby"), max_size=2)
    )
    try:
        assert manager.fetch_value("SELECT pg_is_in_recovery()") is True
    finally:
        manager.close_all()


def _check_failover(cluster, db, table, event, label: str, same: bool = False) -> None:
    old = cluster.leader()
    with Writers(db, table) as writers:
        writers.first_success_after(time.monotonic(), 10)
        started = time.monotonic()
        event(old)
        since = time.monotonic()
        leader, direct = _new_leader_writable(cluster, old, 40, same)
        if same:  # the same server comes back: the first write after the outage
            pooled = writers.gap_end(started, direct)
        else:
            pooled = writers.first_success_after(since, 10, cluster.port(leader))
        time.sleep(1.0)  # writes keep flowing after the recovery
    late = [exc for at, exc in writers.errors if at > max(pooled, direct) + 1.0]
    primaries = {cluster.port(old), cluster.port(leader)}
    on_replicas = [at for at, port in writers.reads if port is not None and port not in primaries]
    during = [at for at in on_replicas if started <= at <= pooled]
    untyped = [exc for _, exc in writers.errors if not isinstance(exc, DBSystemError)]
    with psycopg.connect(cluster.node_url(leader), autocommit=True) as conn:
        present = {row[0] for row in conn.execute(f"SELECT id FROM {table}")}
    lost = set(writers.acked) - present
    FIGURES[f"{label}: cluster window (s)"] = direct - started
    FIGURES[f"{label}: pool's first write on the new primary (s)"] = pooled - started
    FIGURES[f"{label}: pool lag behind the cluster (s)"] = pooled - direct
    FIGURES[f"{label}: longest gap between writes (s)"] = writers.longest_gap(started - 1)
    FIGURES[f"{label}: caller errors"] = len(writers.errors)
    FIGURES[f"{label}: rows acknowledged"] = len(writers.acked)
    FIGURES[f"{label}: reads"] = len(writers.reads)
    FIGURES[f"{label}: reads failed"] = len(writers.read_errors)
    FIGURES[f"{label}: reads on the replica while no primary wrote"] = len(during)
    print(FIGURES)  # noqa: T201 - the figures, shown with -s
    assert lost == set()
    assert untyped == []
    assert [e for e in writers.read_errors if not isinstance(e, DBSystemError)] == []
    assert on_replicas != []
    assert late == []
    assert pooled - direct <= 1.0


def test_switchover_under_load(patroni_cluster, db, table):
    _check_failover(patroni_cluster, db, table, lambda old: patroni_cluster.switchover(), "switch")
    patroni_cluster.wait_healthy(60)


def test_node_loss_under_load(patroni_cluster, db, table):
    killed: list[str] = []

    def lose(old: str) -> None:
        patroni_cluster.kill_node(old)
        killed.append(old)

    _check_failover(patroni_cluster, db, table, lose, "node loss")
    patroni_cluster.start_node(killed[0])  # it rejoins (pg_rewind) for the next tests
    patroni_cluster.wait_healthy(90)


def test_a_crashed_postmaster_restarted_by_patroni(patroni_cluster, db, table):
    _check_failover(
        patroni_cluster,
        db,
        table,
        patroni_cluster.crash_postgres,
        "postmaster killed",
        same=True,
    )
    patroni_cluster.wait_healthy(60)


def test_async_pool_follows_a_switchover(patroni_cluster, table):
    import asyncio

    async def scenario() -> tuple[int, int]:
        db = AsyncDatabaseManager()
        await db.create_pool(PG, PoolConfig(url=patroni_cluster.url(), max_size=4))
        try:
            before = await db.fetch_value("SELECT inet_server_port()")
            target = await asyncio.to_thread(patroni_cluster.switchover)
            deadline = time.monotonic() + 40
            while True:
                try:
                    await db.execute(f"INSERT INTO {table} (id) VALUES (:id)", {"id": "a"})
                    after = await db.fetch_value("SELECT inet_server_port()")
                    if after == patroni_cluster.port(target):
                        return before, after
                except DBSystemError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
                else:
                    await db.execute(f"DELETE FROM {table}")
                    if time.monotonic() > deadline:
                        raise AssertionError("the async pool stayed on the old primary")
        finally:
            await db.close_all()

    before, after = asyncio.run(scenario())
    assert before != after
    patroni_cluster.wait_healthy(60)


def _published_lags(db) -> dict[str, float]:
    """The replicas' lag as the Prometheus collector publishes it."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from dbsystem.monitoring import PerformanceMonitor, make_registry

    text = generate_latest(make_registry(PerformanceMonitor().attach(db))).decode()
    return {
        s.labels["replica"].removeprefix("__patroni_"): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "dbsystem_replica_lag_bytes" and s.labels["source"] == "patroni"
    }


def test_replicas_from_patroni_follow_the_cluster(patroni_cluster):
    from tests.ha.cluster import _terminate

    cluster = patroni_cluster
    leader = cluster.leader()
    replicas = sorted(n for n in cluster.names if n != leader)
    db = DatabaseManager()
    db.create_pool(PG, PoolConfig(url=cluster.url(), patroni=cluster.rest_urls(), max_size=4))
    try:
        view = db.topology(PG)
        assert view.source == "patroni"
        assert view.primary is not None
        assert view.primary.name == leader
        assert sorted(m.name for m in view.replicas if m.in_rotation) == replicas
        ports = {db.fetch_value("SELECT inet_server_port()") for _ in range(6)}
        assert ports == {cluster.port(n) for n in replicas}
        assert db.execute("CREATE TABLE IF NOT EXISTS ha_probe (x int)") is not None
        published = _published_lags(db)
        assert sorted(published) == replicas

        gone, stays = replicas
        started = time.monotonic()
        _terminate(cluster.patroni[gone])  # Patroni stops its PostgreSQL and leaves
        wait_for(
            lambda: [m.name for m in db.topology(PG).replicas if m.in_rotation] == [stays],
            30,
            f"{gone} out of the read rotation",
        )
        FIGURES["replica leaves the rotation after its node stops (s)"] = time.monotonic() - started
        ports = {db.fetch_value("SELECT inet_server_port()") for _ in range(4)}
        assert ports == {cluster.port(stays)}

        cluster.start_node(gone)
        cluster.wait_healthy(90)
        wait_for(
            lambda: sorted(m.name for m in db.topology(PG).replicas if m.in_rotation) == replicas,
            30,
            f"{gone} back in the read rotation",
        )
        ports = {db.fetch_value("SELECT inet_server_port()") for _ in range(6)}
        assert ports == {cluster.port(n) for n in replicas}
    finally:
        db.close_all()
    print(FIGURES)  # noqa: T201


def test_the_async_manager_reads_on_patronis_replicas(patroni_cluster):
    import asyncio

    cluster = patroni_cluster
    leader = cluster.leader()
    replicas = sorted(n for n in cluster.names if n != leader)

    async def scenario():
        adb = AsyncDatabaseManager()
        config = PoolConfig(url=cluster.url(), patroni=cluster.rest_urls(), max_size=4)
        await adb.create_pool(PG, config)
        try:
            view = adb.topology(PG)
            ports = {await adb.fetch_value("SELECT inet_server_port()") for _ in range(6)}
            async with adb.connection(PG) as conn:
                primary = await conn.fetch_value("SELECT inet_server_port()")
            return view, ports, primary
        finally:
            await adb.close_all()

    view, ports, primary = asyncio.run(scenario())
    assert view.source == "patroni"
    assert sorted(m.name for m in view.replicas if m.in_rotation) == replicas
    assert ports == {cluster.port(n) for n in replicas}
    assert primary == cluster.port(leader)
