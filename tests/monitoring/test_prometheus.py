"""Exporter output parsed with prometheus-client's parser; WSGI/ASGI apps; a real Prometheus."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.errors import IntegrityError, PermissionDenied, ProgrammingError
from dbsystem.monitoring import (
    PerformanceMonitor,
    PrometheusExporter,
    make_asgi_app_for,
    make_wsgi_app_for,
)
from dbsystem.security import AccessControl, Role
from tests.conftest import servers_required

EXPECTED = {
    "dbsystem_queries": "counter",
    "dbsystem_query_duration_seconds": "histogram",
    "dbsystem_slow_queries": "counter",
    "dbsystem_pool_connections": "gauge",
    "dbsystem_pool_max_connections": "gauge",
    "dbsystem_pool_waiting": "gauge",
    "dbsystem_pool_acquire_seconds": "histogram",
    "dbsystem_pool_timeouts": "counter",
    "dbsystem_pool_leaks": "counter",
    "dbsystem_pool_connect_errors": "counter",
    "dbsystem_backend_up": "gauge",
    "dbsystem_alerts_firing": "gauge",
    "dbsystem_audit_failures": "counter",
}
ALLOWED_LABELS = {"backend", "operation", "status", "pool", "state", "alert", "le"}


@pytest.fixture
def workload():
    """A SQLite manager with a known workload: 30 inserts, 5 selects, 2 errors, 1 denial."""
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite:///:memory:", max_size=3))
    db.create_pool(
        DatabaseType.SQLITE, PoolConfig(url="sqlite:///:memory:", max_size=1), name="reports"
    )
    monitor = PerformanceMonitor().attach(db)
    db.execute("CREATE TABLE secrets_of_alice (id INTEGER PRIMARY KEY)")
    for i in range(30):
        db.execute("INSERT INTO secrets_of_alice (id) VALUES (:id)", {"id": i})
    for _ in range(5):
        db.fetch_all("SELECT * FROM secrets_of_alice WHERE id > 3")
    for _ in range(2):
        with pytest.raises(IntegrityError):
            db.execute("INSERT INTO secrets_of_alice (id) VALUES (1)")
    acl = AccessControl()
    acl.create_role(Role("none", grants={}))
    acl.assign_role("alice", "none")
    db.use_access_control(acl)
    with pytest.raises(PermissionDenied):
        db.for_user("alice").fetch_all("SELECT * FROM secrets_of_alice")
    yield db, monitor
    monitor.close()
    db.close_all()


def parse(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families, name, **labels):
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError((name, labels))


def test_exporter_serves_every_metric_with_the_workloads_counts(workload):
    db, monitor = workload
    held = db.connection(DatabaseType.SQLITE, label="report-job")
    try:
        with PrometheusExporter(port=0, monitor=monitor) as exporter:
            text = urllib.request.urlopen(exporter.url + "/metrics", timeout=5).read().decode()
    finally:
        held.release()
    families = parse(text)
    assert {name: families[name].type for name in EXPECTED} == EXPECTED
    q = "dbsystem_queries_total"
    assert sample(families, q, backend="sqlite", operation="execute", status="ok") == 31
    assert sample(families, q, backend="sqlite", operation="execute", status="error") == 2
    assert sample(families, q, backend="sqlite", operation="fetch_all", status="ok") == 5
    assert sample(families, q, backend="sqlite", operation="fetch_all", status="denied") == 1
    d = "dbsystem_query_duration_seconds"
    assert sample(families, d + "_count", backend="sqlite", operation="execute") == 33
    assert sample(families, d + "_bucket", backend="sqlite", operation="execute", le="+Inf") == 33
    p = {"backend": "sqlite", "pool": "default"}
    assert sample(families, "dbsystem_pool_connections", state="active", **p) == 1
    assert sample(families, "dbsystem_pool_max_connections", **p) == 3
    assert sample(families, "dbsystem_pool_max_connections", backend="sqlite", pool="reports") == 1
    assert sample(families, "dbsystem_backend_up", **p) == 1
    assert sample(families, "dbsystem_pool_acquire_seconds_count", **p) >= 39
    assert sample(families, "dbsystem_alerts_firing", alert="error_rate") == 0


def test_labels_are_bounded_no_sql_and_no_user(workload):
    _, monitor = workload
    with PrometheusExporter(port=0, monitor=monitor) as exporter:
        text = urllib.request.urlopen(exporter.url + "/metrics", timeout=5).read().decode()
    for family in parse(text).values():
        for s in family.samples:
            assert set(s.labels) <= ALLOWED_LABELS, s
    assert "secrets_of_alice" not in text and "alice" not in text and "SELECT" not in text


def test_pools_endpoint_names_each_holder_by_label_or_code(workload):
    db, monitor = workload
    first = db.connection(DatabaseType.SQLITE, label="nightly-export")
    time.sleep(0.02)  # held longer than the second: listed first, whatever the clock's grain
    second = db.connection(DatabaseType.SQLITE)
    try:
        with PrometheusExporter(port=0, monitor=monitor) as exporter:
            report = json.loads(urllib.request.urlopen(exporter.url + "/pools", timeout=5).read())
    finally:
        first.release()
        second.release()
    (pool,) = [p for p in report["pools"] if p["pool"] == "sqlite"]
    assert pool["stats"]["active"] == 2 and pool["stats"]["max_size"] == 3
    labels = [h["label"] for h in pool["holders"]]
    assert labels == ["nightly-export", None]
    assert "test_prometheus.py" in pool["holders"][1]["location"]
    assert len(pool["stats"]["wait_counts"]) == len(pool["wait_buckets"]) + 1


def test_health_endpoint_is_503_when_a_pool_is_down(workload, tmp_path):
    db, monitor = workload
    app = make_wsgi_app_for(monitor)
    statuses = []
    body = b"".join(app({"PATH_INFO": "/health"}, lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK"] and json.loads(body)["status"] == "ok"
    # A pool whose database directory does not exist cannot connect.
    bad = DatabaseManager()
    monitor.attach(bad)
    bad.create_pool(
        DatabaseType.SQLITE,
        PoolConfig(url=f"sqlite:///{tmp_path}/gone/x.db", min_size=0, max_size=1),
    )
    body = b"".join(app({"PATH_INFO": "/health"}, lambda status, headers: statuses.append(status)))
    assert statuses[-1] == "503 Service Unavailable"
    report = json.loads(body)
    assert report["status"] == "down"
    assert sorted(p["status"] for p in report["pools"].values()) == ["down", "up", "up"]
    monitor.detach(bad)
    bad.close_all()
    assert b"not found" in b"".join(app({"PATH_INFO": "/nope"}, lambda s, h: statuses.append(s)))
    assert statuses[-1] == "404 Not Found"


def test_asgi_app_serves_metrics_health_and_pools(workload):
    _, monitor = workload
    app = make_asgi_app_for(monitor)

    async def get(path):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "root_path": "",
                 "query_string": b"", "headers": []}  # fmt: skip
        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    status, body = asyncio.run(get("/metrics"))
    assert status == 200
    families = parse(body.decode())
    assert sample(families, "dbsystem_queries_total", operation="fetch_all", status="ok") == 5
    status, body = asyncio.run(get("/pools"))
    assert status == 200 and json.loads(body)["pools"][0]["pool"] == "sqlite"
    status, body = asyncio.run(get("/health"))
    assert status == 200 and json.loads(body)["status"] == "ok"


DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "dbsystem-dashboard.json"


def dashboard_queries() -> list[str]:
    """The dashboard's PromQL with Grafana's variables filled in as Grafana would."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"].replace("$backend", ".*").replace("$__rate_interval", "1m")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_dashboard_uses_only_metrics_the_exporter_serves(workload):
    _, monitor = workload
    with PrometheusExporter(port=0, monitor=monitor) as exporter:
        text = urllib.request.urlopen(exporter.url + "/metrics", timeout=5).read().decode()
    served = {s.name for family in parse(text).values() for s in family.samples}
    used = {name for expr in dashboard_queries() for name in re.findall(r"dbsystem_\w+", expr)}
    assert len(used) >= 12
    assert used <= served, used - served


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def promql(base: str, query: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    reply = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert reply["status"] == "success", reply
    return list(reply["data"]["result"])


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_workloads_counts(tmp_path, postgres_url):
    binary = shutil.which("prometheus")
    if binary is None:
        if servers_required():
            pytest.fail("the prometheus binary is missing (apt-get install prometheus)")
        pytest.skip("the prometheus binary is missing (apt-get install prometheus)")
    db = DatabaseManager()
    db.create_pool(DatabaseType.POSTGRES, PoolConfig(url=postgres_url, max_size=4))
    monitor = PerformanceMonitor().attach(db)
    exporter = PrometheusExporter(port=0, monitor=monitor).start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: dbsystem\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n"
    )
    server = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for i in range(120):
            db.fetch_value("SELECT :i::int", {"i": i})
        for _ in range(7):
            with pytest.raises(ProgrammingError):
                db.execute("SELECT * FROM no_such_table_here")
        want = {("fetch_value", "ok"): 120, ("execute", "error"): 7}
        deadline = time.monotonic() + 60
        got: dict = {}
        while time.monotonic() < deadline:
            try:
                got = {
                    (r["metric"]["operation"], r["metric"]["status"]): int(float(r["value"][1]))
                    for r in promql(base, 'dbsystem_queries_total{job="dbsystem"}')
                }
            except OSError:
                got = {}  # Prometheus is still starting
            if got == want:
                break
            time.sleep(0.5)
        assert got == want
        (up,) = promql(base, 'dbsystem_backend_up{backend="postgresql"}')
        assert up["value"][1] == "1"
        (p99,) = promql(
            base, "histogram_quantile(0.99, sum by (le) (dbsystem_query_duration_seconds_bucket))"
        )
        assert 0 < float(p99["value"][1]) < 1.0
        # rate() and increase() need two samples in their range: wait for a second scrape.
        while time.monotonic() < deadline:
            (scrapes,) = promql(base, "count_over_time(dbsystem_audit_failures_total[1m])")
            if int(scrapes["value"][1]) >= 2:
                break
            time.sleep(0.5)
        for expr in dashboard_queries():  # every panel's PromQL is valid and finds data
            assert promql(base, expr), expr
    finally:
        server.terminate()
        server.wait(timeout=20)
        exporter.stop()
        monitor.close()
        db.close_all()


def test_the_collector_publishes_the_replicas_in_rotation(tmp_path):
    from prometheus_client import generate_latest

    from dbsystem.monitoring import make_registry

    db = DatabaseManager()
    replicas = [f"sqlite:///{tmp_path / name}" for name in ("r1.db", "r2.db")]
    db.create_pool(
        DatabaseType.SQLITE,
        PoolConfig(url=f"sqlite:///{tmp_path / 'p.db'}", replicas=replicas),
    )
    monitor = PerformanceMonitor().attach(db)
    try:
        db._replicas[(DatabaseType.SQLITE, None)]._failed("__replica2", OSError("down"))
        text = generate_latest(make_registry(monitor)).decode()
    finally:
        db.close_all()
    families = parse(text)
    labels = {"backend": "sqlite", "pool": "default", "source": "configured"}
    name = "dbsystem_replica_in_rotation"
    assert sample(families, name, replica="__replica1", **labels) == 1
    assert sample(families, name, replica="__replica2", **labels) == 0
