"""Monitoring: query timing and summaries, alerts, health checks, Prometheus metrics.

``PerformanceMonitor.instance()`` times every statement of ``DatabaseManager.instance()``;
``HealthMonitor(db).start()`` keeps every pool's health for ``db.health()``;
``PrometheusExporter(port=9091).start()`` serves ``/metrics``, ``/health``, ``/pools`` and
the live status page ``/status`` (``StatusPage``, also mountable in any WSGI/ASGI app).
"""

from dbsystem.monitoring.alerts import Alert, AlertThresholds
from dbsystem.monitoring.health import BackendHealth, HealthMonitor, HealthStatus, pool_label
from dbsystem.monitoring.monitor import (
    DURATION_BUCKETS,
    PerformanceMonitor,
    PerformanceSummary,
    QueryStats,
    SlowQuery,
)
from dbsystem.monitoring.prometheus import (
    DbsystemCollector,
    PrometheusExporter,
    make_asgi_app_for,
    make_registry,
    make_wsgi_app_for,
    pools_report,
)
from dbsystem.monitoring.status import StatusPage

__all__ = [
    "Alert",
    "AlertThresholds",
    "BackendHealth",
    "DURATION_BUCKETS",
    "DbsystemCollector",
    "HealthMonitor",
    "HealthStatus",
    "PerformanceMonitor",
    "PerformanceSummary",
    "PrometheusExporter",
    "QueryStats",
    "SlowQuery",
    "StatusPage",
    "make_asgi_app_for",
    "make_registry",
    "make_wsgi_app_for",
    "pool_label",
    "pools_report",
]
