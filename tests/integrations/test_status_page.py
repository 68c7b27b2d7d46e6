"""The live status page (dbsystem.monitoring.status): its JSON report, the exporter's
/status, the framework mounts, and the page itself in headless Chromium (Debian's chromium
driven by Playwright): it loads, shows the pools of a running workload, and updates when a
backend goes down (a redis-server of this test's own, on its own port, stopped)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from dbsystem import DatabaseManager, DatabaseType, PoolConfig
from dbsystem.errors import ProgrammingError
from dbsystem.monitoring import PerformanceMonitor, PrometheusExporter, StatusPage
from tests.conftest import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
REDIS_PORT = 15500
DOCS_IMAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "img" / "status-page.png"


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def own_redis():
    """A redis-server of this test's own on port 15500 (data dir under /tmp/integ-*),
    stopped and removed at the end whatever happens. Yields (url, stop)."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed")
    if not _free(REDIS_PORT):
        pytest.fail(f"port {REDIS_PORT} is taken")
    workdir = tempfile.mkdtemp(prefix="integ-redis-")
    process = subprocess.Popen(
        ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            process.wait(10)

    try:
        deadline = time.monotonic() + 10
        while _free(REDIS_PORT):
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the test's redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{REDIS_PORT}/0", stop
    finally:
        stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def workload(tmp_path, own_redis):
    """A manager with a SQLite pool and the test's Redis pool, a monitor, and a thread
    holding a labelled SQLite connection while it runs statements."""
    redis_url, stop_redis = own_redis
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url=f"sqlite:///{tmp_path / 'w.db'}"))
    db.create_pool(DatabaseType.REDIS, PoolConfig(url=redis_url, connect_timeout=1.0))
    monitor = PerformanceMonitor(slow_query_threshold=None).attach(db)
    db.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)", db_type=DatabaseType.SQLITE
    )
    running = threading.Event()
    running.set()
    started = threading.Event()

    def work() -> None:
        with db.connection(DatabaseType.SQLITE, label="report-job") as conn:
            n = 0
            while running.is_set():
                n += 1
                conn.execute("INSERT INTO items (name) VALUES (:n)", {"n": f"item {n}"})
                conn.fetch_all("SELECT * FROM items WHERE id > :id", {"id": n - 5})
                started.set()
                time.sleep(0.02)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    started.wait(5)
    yield db, monitor, stop_redis
    running.clear()
    thread.join(5)
    monitor.close()
    db.close_all()


def test_the_report_holds_pools_holders_health_and_shapes(workload):
    db, monitor, _ = workload
    page = StatusPage(db)
    with db.connection(DatabaseType.REDIS) as r:
        r.execute("SET", "integ:status", "1")
    time.sleep(0.1)
    data = page.data()
    pools = {p["pool"]: p for p in data["pools"]}
    assert set(pools) == {"sqlite", "redis"}
    assert [h["label"] for h in pools["sqlite"]["holders"]] == ["report-job"]
    assert pools["sqlite"]["stats"]["active"] == 1
    assert len(pools["sqlite"]["stats"]["wait_counts"]) == len(data["wait_buckets"]) + 1
    assert {h["pool"]: h["status"] for h in data["health"]} == {"sqlite": "up", "redis": "up"}
    shapes = [q["shape"] for q in data["slowest"]]
    assert "select * from items where id > :id" in shapes
    assert "SET integ:status 1".lower() not in shapes  # redis texts are shaped too
    assert data["alerts"] == []
    json.dumps(data)  # JSON-ready
    page.close()


def test_firing_alerts_and_replicas_and_shards_are_reported(tmp_path):
    from dbsystem.scaling.sharding import ShardedPool

    db = DatabaseManager()
    for name in ("s1", "s2"):
        db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path / name}.db", name=name)
    shards = ShardedPool(db, DatabaseType.SQLITE, ["s1", "s2"], key="tenant")
    monitor = PerformanceMonitor().attach(db)
    monitor.set_alert_thresholds(error_rate=0.1, min_queries=1, interval=3600)
    with db.connection(DatabaseType.SQLITE, name="s1") as conn:
        for _ in range(3):
            with pytest.raises(ProgrammingError):
                conn.execute("SELECT * FROM integ_missing")
    monitor.evaluate_alerts()
    data = StatusPage(db, shards=[shards]).data()
    assert [a["name"] for a in data["alerts"]] == ["error_rate"]
    assert data["shards"] == [
        {"type": "sqlite", "key": "tenant", "strategy": "hash",
         "shards": ["sqlite/s1", "sqlite/s2"]}
    ]  # fmt: skip
    assert data["replicas"] == []
    monitor.close()
    db.close_all()


def test_replica_topology_is_reported(tmp_path):
    primary = tmp_path / "p.db"
    db = DatabaseManager()
    db.create_pool(
        DatabaseType.SQLITE,
        PoolConfig(url=f"sqlite:///{primary}", replicas=[f"sqlite:///{primary}"]),
    )
    data = StatusPage(db).data()
    (entry,) = data["replicas"]
    assert entry["primary"] == "sqlite"
    assert [r["in_rotation"] for r in entry["replicas"]] == [True]
    db.close_all()


def test_the_exporter_serves_the_page_and_its_data(workload):
    db, monitor, _ = workload
    with PrometheusExporter(port=0, monitor=monitor) as exporter:
        with urllib.request.urlopen(f"{exporter.url}/status", timeout=10) as response:
            html = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/html")
        assert '"/status/data"' in html
        with urllib.request.urlopen(f"{exporter.url}/status/data", timeout=10) as response:
            data = json.load(response)
    assert {p["pool"] for p in data["pools"]} == {"sqlite", "redis"}


def test_fastapi_and_flask_mount_the_page(workload):
    pytest.importorskip("fastapi")
    pytest.importorskip("flask")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from flask import Flask

    from dbsystem.integrations.fastapi import DBSystem as FastAPIDBSystem
    from dbsystem.integrations.flask import DBSystem as FlaskDBSystem

    db, _, _ = workload
    app = FastAPI()
    app.mount("/ops/status", FastAPIDBSystem(db, close=False).status_app())
    with TestClient(app) as client:
        html = client.get("/ops/status/").text
        assert '"/ops/status/data"' in html
        assert {p["pool"] for p in client.get("/ops/status/data").json()["pools"]} == {
            "sqlite",
            "redis",
        }
    flask_app = Flask(__name__)
    FlaskDBSystem(db, close=False).init_status(flask_app)
    client = flask_app.test_client()
    assert '"/status/data"' in client.get("/status").text
    assert client.get("/status/data").json["pools"][0]["pool"] in {"sqlite", "redis"}


def test_the_page_in_headless_chromium_shows_pools_and_sees_a_backend_go_down(workload):
    if not os.path.exists(CHROMIUM):
        skip_or_fail("chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    db, monitor, stop_redis = workload
    page_obj = StatusPage(db, refresh=0.5, title="dbsystem status: demo workload")
    server = _serve(page_obj)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{server.server_port}/status/")
                sqlite_row = page.locator('#pools tr[data-pool="sqlite"]')
                sqlite_row.wait_for(timeout=10_000)
                assert sqlite_row.locator('[data-field="active"]').inner_text() == "1"
                assert "report-job" in sqlite_row.locator('[data-field="holders"]').inner_text()
                redis_health = page.locator('#health tr[data-pool="redis"]')
                assert redis_health.get_attribute("data-status") == "up"
                page.locator("#slowest code", has_text="select * from items").first.wait_for()
                stop_redis()
                page.wait_for_selector(
                    '#health tr[data-pool="redis"][data-status="down"]', timeout=15_000
                )
                assert "down" in redis_health.locator(".badge").inner_text()
                if os.environ.get("DBSYSTEM_UPDATE_SCREENSHOT"):  # the docs' picture
                    DOCS_IMAGE.parent.mkdir(exist_ok=True)
                    page.screenshot(path=str(DOCS_IMAGE), full_page=True)
                assert (
                    page.locator('#health tr[data-pool="sqlite"]').get_attribute("data-status")
                    == "up"
                )
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        page_obj.close()


def _serve(page: StatusPage):
    """The page's WSGI app under /status on a free port, on a thread."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    inner = page.wsgi_app()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if not path.startswith("/status"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b""]
        environ = {**environ, "SCRIPT_NAME": "/status", "PATH_INFO": path[len("/status") :]}
        return inner(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, ThreadingWSGIServer, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
