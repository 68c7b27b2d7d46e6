"""Prometheus metrics (prometheus-client), the exporter, and WSGI/ASGI apps to mount.

The metrics are read from the ``PerformanceMonitor`` and the pools at scrape time by a
custom collector, so the statement path only updates the monitor's counters:

==========================================  =========  ===================================
metric                                      type       labels
==========================================  =========  ===================================
``dbsystem_queries_total``                  counter    backend, operation, status
``dbsystem_query_duration_seconds``         histogram  backend, operation
``dbsystem_slow_queries_total``             counter
``dbsystem_pool_connections``               gauge      backend, pool, state (active, idle)
``dbsystem_pool_max_connections``           gauge      backend, pool
``dbsystem_pool_waiting``                   gauge      backend, pool
``dbsystem_pool_acquire_seconds``           histogram  backend, pool
``dbsystem_pool_timeouts_total``            counter    backend, pool
``dbsystem_pool_leaks_total``               counter    backend, pool
``dbsystem_pool_connect_errors_total``      counter    backend, pool
``dbsystem_backend_up``                     gauge      backend, pool
``dbsystem_alerts_firing``                  gauge      alert
``dbsystem_audit_failures_total``           counter
==========================================  =========  ===================================

Every label takes a bounded set of values: backend and operation names, statuses (ok,
error, denied), pool names from the configuration, alert names. No SQL text, no user.

Besides ``/metrics`` the apps serve ``/health`` (JSON; status 503 when a pool is down) and
``/pools`` (JSON: each pool's statistics and who holds its connections), which
``dbsystem pools URL`` prints.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client import make_wsgi_app as _metrics_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from dbsystem.errors import DBSystemError
from dbsystem.kernel.stats import WAIT_BUCKETS
from dbsystem.monitoring.health import HealthStatus, manager_health, pool_label
from dbsystem.monitoring.monitor import DURATION_BUCKETS, PerformanceMonitor
from dbsystem.monitoring.status import StatusPage, asgi_path, asgi_reply

__all__ = [
    "DbsystemCollector",
    "PrometheusExporter",
    "make_asgi_app_for",
    "make_registry",
    "make_wsgi_app_for",
    "pools_report",
]

_ALERTS = ("error_rate", "latency", "pool_saturation")
# Per pool, in exposition order: (family, name, help, labels after backend and pool).
_POOL_METRICS: tuple[tuple[Any, str, str, tuple[str, ...]], ...] = (
    (
        GaugeMetricFamily,
        "dbsystem_pool_connections",
        "Pool connections by state (active: lent out, idle: ready)",
        ("state",),
    ),
    (GaugeMetricFamily, "dbsystem_pool_max_connections", "Pool max_size", ()),
    (GaugeMetricFamily, "dbsystem_pool_waiting", "Callers waiting for a connection", ()),
    (HistogramMetricFamily, "dbsystem_pool_acquire_seconds", "Time an acquire waited", ()),
    (CounterMetricFamily, "dbsystem_pool_timeouts", "Acquires that gave up after the timeout", ()),
    (
        CounterMetricFamily,
        "dbsystem_pool_leaks",
        "Connections held past leak_threshold or lost",
        (),
    ),
    (CounterMetricFamily, "dbsystem_pool_connect_errors", "Failed attempts to connect", ()),
    (
        GaugeMetricFamily,
        "dbsystem_backend_up",
        "1 if the pool's backend answers (up or degraded)",
        (),
    ),
)


class DbsystemCollector(Collector):
    """Yields dbsystem's metrics from a monitor and its managers' pools at each scrape."""

    def __init__(self, monitor: PerformanceMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        yield from self._queries()
        yield from self._pools()
        yield from self._topology()
        firing = GaugeMetricFamily(
            "dbsystem_alerts_firing", "Alerts firing now, by alert", labels=["alert"]
        )
        now = [alert.name for alert in self.monitor.firing]
        for name in _ALERTS:
            firing.add_metric([name], now.count(name))
        yield firing
        audit = CounterMetricFamily(
            "dbsystem_audit_failures", "Audit records that could not be written"
        )
        audit.add_metric([], sum(_audit_failures(self.monitor)))
        yield audit

    def _queries(self) -> Iterator[Metric]:
        queries = CounterMetricFamily(
            "dbsystem_queries",
            "Statements run, by backend, operation and status (ok, error, denied)",
            labels=["backend", "operation", "status"],
        )
        for (backend, operation, status), n in sorted(self.monitor.query_counts().items()):
            queries.add_metric([backend, operation, status], n)
        yield queries
        durations = HistogramMetricFamily(
            "dbsystem_query_duration_seconds",
            "Statement duration in seconds",
            labels=["backend", "operation"],
        )
        for (backend, operation), (counts, total) in sorted(
            self.monitor.duration_histograms().items()
        ):
            durations.add_metric(
                [backend, operation], _cumulative(DURATION_BUCKETS, counts), sum_value=total
            )
        yield durations
        slow = CounterMetricFamily(
            "dbsystem_slow_queries", "Statements at or above the slow-query threshold"
        )
        slow.add_metric([], self.monitor.slow_queries_total)
        yield slow

    def _pools(self) -> Iterator[Metric]:
        families: list[Any] = [
            family(name, text, labels=["backend", "pool", *extra])
            for family, name, text, extra in _POOL_METRICS
        ]
        conns, size, waiting, acquire, timeouts, leaks, errors, up = families
        for db in self.monitor.managers:
            health = manager_health(db)
            for (db_type, name), pool in sorted(
                db.pools().items(), key=lambda item: pool_label(*item[0])
            ):
                stats = pool.stats()
                values = [pool.backend_name or db_type.value, name or "default"]
                conns.add_metric([*values, "active"], stats.active)
                conns.add_metric([*values, "idle"], stats.idle)
                size.add_metric(values, stats.max_size)
                waiting.add_metric(values, stats.waiting)
                if stats.wait_counts:
                    acquire.add_metric(
                        values,
                        _cumulative(WAIT_BUCKETS, stats.wait_counts),
                        sum_value=stats.wait_total,
                    )
                timeouts.add_metric(values, stats.timeouts)
                leaks.add_metric(values, stats.leaks)
                errors.add_metric(values, stats.connect_errors)
                result = health.get(pool_label(db_type, name))
                if result is not None:
                    up.add_metric(values, 0 if result.status is HealthStatus.DOWN else 1)
        yield from families

    def _topology(self) -> Iterator[Metric]:
        """The replicas of each pool that has some (``db.topology()``): in the read
        rotation or not, and their lag in bytes where the source reports it (Patroni)."""
        labels = ["backend", "pool", "replica", "source"]
        rotation = GaugeMetricFamily(
            "dbsystem_replica_in_rotation", "1 if the replica gets reads now", labels=labels
        )
        lag = GaugeMetricFamily(
            "dbsystem_replica_lag_bytes", "WAL bytes the replica is behind", labels=labels
        )
        for db in self.monitor.managers:
            for db_type, name in sorted(getattr(db, "_replicas", {}), key=lambda k: pool_label(*k)):
                try:
                    view = db.topology(db_type, name)
                except DBSystemError:  # the pool was closed meanwhile
                    continue
                for member in view.replicas:
                    values = [db_type.value, name or "default", member.name, view.source]
                    rotation.add_metric(values, 1 if member.in_rotation else 0)
                    if member.lag is not None:
                        lag.add_metric(values, member.lag)
        yield rotation
        yield lag


def _cumulative(bounds: Iterable[float], counts: Iterable[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last past every bound) as Prometheus' cumulative buckets."""
    out: list[tuple[str, float]] = []
    seen = 0
    counts = list(counts)
    for bound, n in zip(bounds, counts, strict=False):
        seen += n
        out.append((repr(float(bound)), seen))
    out.append(("+Inf", seen + sum(counts[len(out) :])))
    return out


def _audit_failures(monitor: PerformanceMonitor) -> Iterator[int]:
    from dbsystem.security.audit import AuditLog

    seen: set[int] = set()
    for db in monitor.managers:
        for hook in db.hooks:
            if isinstance(hook, AuditLog) and id(hook) not in seen:
                seen.add(id(hook))
                yield hook.failures


def make_registry(monitor: PerformanceMonitor | None = None) -> CollectorRegistry:
    """A registry holding dbsystem's collector (for the process-wide monitor by default).

    To add dbsystem's metrics to an application's own registry instead:
    ``registry.register(DbsystemCollector(monitor))``.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(DbsystemCollector(monitor or PerformanceMonitor.instance()))
    return registry


def pools_report(monitor: PerformanceMonitor) -> dict[str, Any]:
    """Every pool's statistics and holders, as JSON-ready data (``/pools``)."""
    pools = []
    for db in monitor.managers:
        for (db_type, name), pool in db.pools().items():
            holders = pool.holders() if hasattr(pool, "holders") else []
            pools.append(
                {
                    "pool": pool_label(db_type, name),
                    "backend": pool.backend_name or db_type.value,
                    "stats": asdict(pool.stats()),
                    "wait_buckets": list(WAIT_BUCKETS),
                    "holders": [asdict(holder) for holder in holders],
                }
            )
    return {"pools": sorted(pools, key=lambda p: p["pool"])}


def _health_report(monitor: PerformanceMonitor) -> tuple[bool, dict[str, Any]]:
    results: dict[str, Any] = {}
    for number, db in enumerate(monitor.managers, start=1):
        for label, health in manager_health(db).items():
            record = asdict(health)
            record["status"] = health.status.value
            # Two managers may both have, say, a "sqlite" pool: keep both.
            results[label if label not in results else f"{label}#{number}"] = record
    ok = all(r["status"] != HealthStatus.DOWN.value for r in results.values())
    return ok, {"status": "ok" if ok else "down", "pools": results}


def _json_headers() -> list[tuple[str, str]]:
    # A new list per response: WSGI servers add Content-Length to the list they are given.
    return [("Content-Type", "application/json")]


StartResponse = Callable[..., Any]


def make_wsgi_app_for(
    monitor: PerformanceMonitor | None = None, registry: CollectorRegistry | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app serving ``/metrics``, ``/health``, ``/pools`` and the live status page
    ``/status`` (``dbsystem.monitoring.status``); mount it in Flask, Django or any WSGI
    server."""
    monitor = monitor or PerformanceMonitor.instance()
    metrics = _metrics_wsgi_app(registry or make_registry(monitor))

    status_page = _LazyStatus(monitor)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        if path == "/status" or path.startswith("/status/"):
            base = environ.get("SCRIPT_NAME", "").rstrip("/") + "/status"
            code, content_type, page = status_page.page().respond(base, path[len("/status") :])
            start_response(code, [("Content-Type", content_type)])
            return [page]
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/health":
            ok, body = _health_report(monitor)
            start_response("200 OK" if ok else "503 Service Unavailable", _json_headers())
            return [json.dumps(body).encode()]
        if path == "/pools":
            start_response("200 OK", _json_headers())
            return [json.dumps(pools_report(monitor)).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /health, /pools or /status\n"]

    return app


def make_asgi_app_for(
    monitor: PerformanceMonitor | None = None, registry: CollectorRegistry | None = None
) -> Callable[..., Any]:
    """An ASGI app serving ``/metrics``, ``/health``, ``/pools`` and ``/status`` (mount it
    in FastAPI or Starlette: ``app.mount("/monitoring", make_asgi_app_for())``)."""
    monitor = monitor or PerformanceMonitor.instance()
    metrics = make_asgi_app(registry or make_registry(monitor))
    status_page = _LazyStatus(monitor)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        root, path = asgi_path(scope)
        path = path.rstrip("/") or "/"
        if path == "/status" or path.startswith("/status/"):
            await status_page.page().asgi_app()(
                {**scope, "root_path": root + "/status", "path": path[len("/status") :] or "/"},
                receive,
                send,
            )
            return
        if path == "/metrics":
            await metrics(scope, receive, send)
            return
        if path == "/health":
            ok, body = _health_report(monitor)
            status, payload = (200 if ok else 503), json.dumps(body).encode()
        elif path == "/pools":
            status, payload = 200, json.dumps(pools_report(monitor)).encode()
        else:
            status, payload = 404, b"not found: try /metrics, /health, /pools or /status\n"
        await receive()
        await asgi_reply(send, status, "application/json", payload)

    return app


class _LazyStatus:
    """The status page of an exporter's app, made on its first request (it then times the
    statements of the monitored managers, for its slowest shapes)."""

    def __init__(self, monitor: PerformanceMonitor) -> None:
        self._monitor = monitor
        self._page: StatusPage | None = None
        self._lock = threading.Lock()

    def page(self) -> StatusPage:
        with self._lock:
            if self._page is None:
                self._page = StatusPage(monitor=self._monitor)
            return self._page


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr; stay silent."""


class PrometheusExporter:
    """Serves ``/metrics``, ``/health``, ``/pools`` and the live status page ``/status``
    over HTTP on a daemon thread.

    Binds 127.0.0.1 by default: ``/pools`` names code locations, so exposing it beyond the
    machine is a choice (``host="0.0.0.0"``). ``port=0`` picks a free port (see ``port``).
    """

    def __init__(
        self,
        port: int = 9091,
        *,
        host: str = "127.0.0.1",
        monitor: PerformanceMonitor | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.monitor = monitor or PerformanceMonitor.instance()
        self.registry = registry or make_registry(self.monitor)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> PrometheusExporter:
        """Start serving; returns self. Raises ``OSError`` if the port is taken."""
        if self._server is not None:
            return self
        app = make_wsgi_app_for(self.monitor, self.registry)
        server = make_server(
            self.host, self.port, app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = server.server_port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="dbsystem-exporter", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The base URL served."""
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and free the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> PrometheusExporter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"<PrometheusExporter {self.url} {state}>"
