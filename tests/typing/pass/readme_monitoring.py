"""The README's monitoring example, copied unchanged (test_readme_examples_are_copied)."""

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.monitoring import PerformanceMonitor, PrometheusExporter

db = DatabaseManager()
db.create_pool(DatabaseType.SQLITE, "sqlite://:memory:")
monitor = PerformanceMonitor().attach(db)  # PerformanceMonitor.instance() watches the singleton
monitor.set_alert_thresholds(error_rate=0.05, latency=1.0, pool_saturation=0.9)
monitor.register_alert_handler(lambda alert: print(alert.message))
for i in range(20):
    db.fetch_value("SELECT :i", {"i": i})
summary = monitor.summary()  # over a sliding window (60 s by default)
print(summary.total_queries, summary.error_rate, list(summary.by_operation))
# 20 0.0 ['fetch_value']
print(db.health()["sqlite"].status)  # up (also degraded, down); never waits on a busy pool
exporter = PrometheusExporter(port=0, monitor=monitor).start()  # /metrics, /health, /pools, /status
exporter.stop()
monitor.close()
