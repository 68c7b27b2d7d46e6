"""The dbsystem command line: exit codes, output formats, and no secrets in errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from typer.testing import CliRunner

from dbsystem.cli import app

runner = CliRunner()


def test_ping_ok_and_failure_codes(tmp_path):
    result = runner.invoke(app, ["ping", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 0 and "answered in" in result.output
    result = runner.invoke(app, ["ping", f"sqlite:///{tmp_path}/missing/dir/x.db"])
    assert result.exit_code == 1 and "cannot open SQLite database" in result.output


def test_ping_redis_and_mongodb_mocks_and_sql_refuses_them():
    assert runner.invoke(app, ["ping", "redis+mock://"]).exit_code == 0
    assert runner.invoke(app, ["ping", "mongodb+mock://"]).exit_code == 0
    result = runner.invoke(app, ["sql", "redis+mock://", "SELECT 1"])
    assert result.exit_code == 2 and "not a SQL database" in result.output


def test_ping_of_an_unreachable_mongodb_fails_in_time_with_one_line():
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        started = time.monotonic()
        result = runner.invoke(app, ["ping", f"mongodb://127.0.0.1:{port}/x", "--timeout", "1"])
        elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0, result.output
    assert "no MongoDB server answered within 1.0s" in result.output
    assert "Topology" not in result.output
    assert elapsed < 4  # the 1 s timeout, not pymongo's 30 s default


def test_usage_errors_exit_2_and_hide_passwords():
    result = runner.invoke(app, ["ping", "nosuch://user:hunter2@host/db"])
    assert result.exit_code == 2
    assert "unknown URL scheme" in result.output and "hunter2" not in result.output
    result = runner.invoke(app, ["ping", "sqlite:///x.db?idle_timeout=-1"])
    assert result.exit_code == 2 and "idle_timeout" in result.output


def test_sql_prints_a_table_json_and_rowcounts(tmp_path):
    url = f"sqlite:///{tmp_path}/cli.db"
    assert runner.invoke(app, ["sql", url, "CREATE TABLE t (id INTEGER, name TEXT)"]).exit_code == 0
    result = runner.invoke(
        app, ["sql", url, "INSERT INTO t VALUES (:id, :name)", "-p", "id=1", "-p", "name=ada"]
    )
    assert result.exit_code == 0 and "1 row(s) affected" in result.output
    result = runner.invoke(app, ["sql", url, "SELECT * FROM t"])
    assert result.exit_code == 0 and "ada" in result.output and "(1 row)" in result.output
    result = runner.invoke(
        app, ["sql", url, "SELECT * FROM t WHERE id = :id", "-p", "id=1", "--json"]
    )
    assert json.loads(result.output) == [{"id": 1, "name": "ada"}]
    result = runner.invoke(app, ["sql", url, "SELECT * FROM missing"])
    assert result.exit_code == 1 and "no such table" in result.output
    result = runner.invoke(app, ["sql", url, "SELECT 1", "-p", "novalue"])
    assert result.exit_code == 2


def test_demo_runs_with_no_setup(tmp_path):
    result = runner.invoke(app, ["demo", "--path", str(tmp_path / "demo.db")])
    assert result.exit_code == 0, result.output
    assert "inserted 500 users" in result.output
    assert "IntegrityError" in result.output and "pool: total=" in result.output
    assert "Redis leaderboard (redis+mock://)" in result.output
    assert "MongoDB aggregation (mongodb+mock://)" in result.output
    assert "pip install" not in result.output  # the mocks come with dbsystem


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "dbsystem.cli", "version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    from dbsystem import __version__

    assert result.stdout.strip() == __version__


def test_migrate_commands(tmp_path, monkeypatch):
    models = tmp_path / "cli_models.py"
    models.write_text(
        "from dbsystem.orm import Entity, Field\n"
        "class Thing(Entity, table='cli_things'):\n"
        "    id: int = Field(primary_key=True)\n"
        "    label: str = Field(max_length=20, index=True)\n"
    )
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(
        app, ["migrate", "new", "things", "--url", url, "--auto", "--models", "cli_models"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "migrations" / "0001_things.py").exists()
    assert "applied: 0001" in runner.invoke(app, ["migrate", "up", "--url", url]).output
    assert "yes" in runner.invoke(app, ["migrate", "status", "--url", url]).output
    status = runner.invoke(app, ["migrate", "status", "--url", url, "--json"]).output
    assert json.loads(status) == [{"revision": "0001", "description": "things", "applied": True}]
    assert "reverted: 0001" in runner.invoke(app, ["migrate", "down", "--url", url]).output
    result = runner.invoke(app, ["migrate", "new", "x", "--url", url, "--auto"])
    assert result.exit_code == 2 and "--models" in result.output


def test_metrics_serve_exposes_the_pools_of_its_urls(tmp_path):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    urls = [f"sqlite:///{tmp_path}/m.db", "redis+mock://"]
    command = [sys.executable, "-m", "dbsystem.cli", "metrics", "serve", *urls, "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        base = line.split()[1].removesuffix("/metrics")
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        up = {
            s.labels["backend"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "dbsystem_backend_up"
        }
        assert up == {"sqlite": 1.0, "mock:redis": 1.0}  # fakeredis names itself
        health = json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())
        assert health["status"] == "ok" and set(health["pools"]) == {"sqlite", "redis"}
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def test_metrics_serve_needs_a_url_or_config():
    result = runner.invoke(app, ["metrics", "serve"])
    assert result.exit_code == 2 and "at least one URL" in result.output


def test_pools_shows_usage_and_holders_from_an_exporter():
    from dbsystem import DatabaseManager, DatabaseType, PoolConfig
    from dbsystem.monitoring import PerformanceMonitor, PrometheusExporter

    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url="sqlite:///:memory:", max_size=2))
    monitor = PerformanceMonitor().attach(db)
    held = db.connection(DatabaseType.SQLITE, label="billing-batch")
    try:
        with PrometheusExporter(port=0, monitor=monitor) as exporter:
            result = runner.invoke(app, ["pools", exporter.url])
            as_json = runner.invoke(app, ["pools", exporter.url, "--json"])
    finally:
        held.release()
        monitor.close()
        db.close_all()
    assert result.exit_code == 0, result.output
    assert "billing-batch" in result.output and "sqlite" in result.output
    report = json.loads(as_json.stdout)
    assert report["pools"][0]["holders"][0]["label"] == "billing-batch"
    missing = runner.invoke(app, ["pools", "http://127.0.0.1:9"])
    assert missing.exit_code == 1 and "cannot read" in missing.output
