"""Monitoring: query metrics with percentiles, slow queries, alert thresholds that fire and
resolve, health checks, and the Prometheus exporter scraped over HTTP.

Run: ``python -m samples.monitoring_examples`` (``--sql-url`` for another database).
"""

from __future__ import annotations

import json
import urllib.request

from dbsystem import DatabaseManager, DBSystemError, PoolConfig
from dbsystem.monitoring import HealthMonitor, PerformanceMonitor, PrometheusExporter
from samples._common import database_type, own_tables, sample_urls


def main(url: str) -> None:
    db = DatabaseManager()
    sql = database_type(url)
    db.create_pool(sql, PoolConfig(url=url, max_size=4))
    monitor = PerformanceMonitor(window=60, slow_query_threshold=0.05).attach(db)
    alerts = []
    monitor.set_alert_thresholds(error_rate=0.1, latency=1.0, min_queries=10, cooldown=60)
    monitor.register_alert_handler(alerts.append)
    health = HealthMonitor(db, interval=0.5).start()
    exporter = PrometheusExporter(0, monitor=monitor).start()  # port 0: any free port
    try:
        with own_tables(db, sql, "sample_metrics"):
            db.execute("CREATE TABLE sample_metrics (id INTEGER PRIMARY KEY, v INTEGER)")
            for n in range(200):
                db.execute("INSERT INTO sample_metrics (id, v) VALUES (:id, :v)", {"id": n, "v": n})
            for n in range(300):
                db.fetch_one("SELECT v FROM sample_metrics WHERE id = :id", {"id": n % 200})
            summary = monitor.summary()
            print(
                f"{summary.total_queries} statements, {summary.errors} errors, "
                f"p50 {summary.p50 * 1e6:.0f} us, p95 {summary.p95 * 1e6:.0f} us, "
                f"p99 {summary.p99 * 1e6:.0f} us"
            )
            for operation, stats in sorted(summary.by_operation.items()):
                print(f"  {operation}: {stats.total_queries} calls, p95 {stats.p95 * 1e6:.0f} us")

            # A burst of failing statements: the error rate crosses 10 % and the alert fires.
            for n in range(100):
                try:
                    db.execute("INSERT INTO sample_metrics (id, v) VALUES (:id, 0)", {"id": n})
                except DBSystemError:
                    pass  # duplicate keys, on purpose
            monitor.evaluate_alerts()
            firing = [a for a in alerts if a.state == "firing"]
            print(f"alert: {firing[0].name} {firing[0].state}: {firing[0].message}")
            monitor.reset()  # the window clears; the next evaluation resolves the alert
            for _ in range(20):
                db.fetch_value("SELECT COUNT(*) FROM sample_metrics")
            monitor.evaluate_alerts()
            print(f"alert: {alerts[-1].name} {alerts[-1].state}")

            status = db.health()
            print("health: " + ", ".join(f"{name} {h.status.value}" for name, h in status.items()))

            with urllib.request.urlopen(f"{exporter.url}/metrics", timeout=10) as reply:
                metrics = reply.read().decode()
            wanted = (
                "dbsystem_queries_total{",
                "dbsystem_pool_connections{",
                "dbsystem_backend_up{",
            )
            shown = [line for line in metrics.splitlines() if line.startswith(wanted)]
            print(f"GET {exporter.url}/metrics: {len(metrics.splitlines())} lines, among them:")
            for line in shown[:6]:
                print(f"  {line}")
            with urllib.request.urlopen(f"{exporter.url}/health", timeout=10) as reply:
                print(f"GET /health: HTTP {reply.status} {json.loads(reply.read())['status']}")
    finally:
        exporter.stop()
        health.stop()
        monitor.close()
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql") as urls:
        main(urls["sql"])
