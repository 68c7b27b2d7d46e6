"""Alerts on the monitor's window: error rate, latency and pool saturation.

Each alert has a key (its kind, and the pool for saturation). Evaluation compares the
window's figures with the thresholds: a breach fires the alert once (``state="firing"``);
while it lasts nothing more is sent; when it clears a ``resolved`` notice goes out. An alert
that fired less than ``cooldown`` seconds ago does not fire again: a flapping figure sends
one alert per cooldown, not one per flap. The evaluation runs on a daemon thread every
``interval`` seconds (at most one second by default) once a handler is registered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbsystem._log import get_logger
from dbsystem.errors import ConfigurationError
from dbsystem.monitoring._periodic import Periodic

if TYPE_CHECKING:
    from dbsystem.monitoring.monitor import PerformanceMonitor

__all__ = ["Alert", "AlertEvaluator", "AlertThresholds"]

logger = get_logger("dbsystem.alerts")


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """What ``PerformanceMonitor.set_alert_thresholds`` configured (None: alert off)."""

    error_rate: float | None = None
    latency: float | None = None
    pool_saturation: float | None = None
    min_queries: int = 10
    cooldown: float = 60.0
    interval: float = 1.0


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert fired or resolved."""

    name: str
    """``error_rate``, ``latency`` or ``pool_saturation``."""
    state: str
    """``firing`` or ``resolved``."""
    value: float
    """The figure that was compared (error rate, p95 seconds, share of the pool in use)."""
    threshold: float
    message: str
    time: float
    """Unix time of the evaluation."""
    pool: str | None = None
    """The pool, for ``pool_saturation``."""

    @property
    def key(self) -> str:
        """The alert's identity: its name, and its pool if any."""
        return self.name if self.pool is None else f"{self.name}:{self.pool}"


class _State:
    __slots__ = ("firing", "last_fired")

    def __init__(self) -> None:
        self.firing: Alert | None = None
        self.last_fired = float("-inf")


class AlertEvaluator:
    """Evaluates a monitor's thresholds and calls the handlers; see the module docstring."""

    def __init__(self, monitor: PerformanceMonitor, clock: Callable[[], float]) -> None:
        self._monitor = monitor
        self._clock = clock
        self.thresholds = AlertThresholds()
        self._handlers: list[Callable[[Alert], Any]] = []
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._worker = Periodic(
            "dbsystem-alerts",
            self.evaluate,
            lambda: self.thresholds.interval,
            logger=logger,
            what="alert evaluation",
            join_timeout=5.0,
        )

    def configure(self, thresholds: AlertThresholds) -> None:
        if thresholds.interval <= 0:
            raise ConfigurationError(
                f"alert thresholds: interval must be positive (got {thresholds.interval!r})"
            )
        self.thresholds = thresholds
        if self._handlers:
            self._start()

    def add_handler(self, handler: Callable[[Alert], Any]) -> None:
        with self._lock:
            self._handlers.append(handler)
        self._start()

    def firing(self) -> list[Alert]:
        with self._lock:
            return [s.firing for s in self._states.values() if s.firing is not None]

    def evaluate(self) -> list[Alert]:
        """One evaluation: the alerts it fired or resolved, after calling the handlers."""
        t = self.thresholds
        now_wall, now = time.time(), self._clock()
        checks: list[tuple[str, str | None, float, float | None, bool]] = []
        if t.error_rate is not None or t.latency is not None:
            summary = self._monitor.summary()
            enough = summary.total_queries >= t.min_queries
            checks.append(("error_rate", None, summary.error_rate, t.error_rate, enough))
            checks.append(("latency", None, summary.p95, t.latency, enough))
        if t.pool_saturation is not None:
            for label, used, waiting in self._pool_usage():
                breached = used >= t.pool_saturation or waiting > 0
                checks.append(("pool_saturation", label, used, t.pool_saturation, breached))
        changes: list[Alert] = []
        with self._lock:
            for name, pool, value, threshold, eligible in checks:
                if threshold is None:
                    continue
                key = name if pool is None else f"{name}:{pool}"
                state = self._states.setdefault(key, _State())
                if name == "pool_saturation":
                    breached = eligible
                else:
                    breached = eligible and value > threshold
                if breached and state.firing is None:
                    if now - state.last_fired < t.cooldown:
                        continue
                    alert = Alert(
                        name, "firing", value, threshold, _message(name, pool, value, threshold),
                        now_wall, pool,
                    )  # fmt: skip
                    state.firing, state.last_fired = alert, now
                    changes.append(alert)
                elif not breached and state.firing is not None:
                    state.firing = None
                    changes.append(
                        Alert(
                            name,
                            "resolved",
                            value,
                            threshold,
                            f"resolved: {_message(name, pool, value, threshold)}",
                            now_wall,
                            pool,
                        )  # fmt: skip
                    )
            handlers = list(self._handlers)
        for alert in changes:
            log = logger.warning if alert.state == "firing" else logger.info
            log("%s", alert.message)
            for handler in handlers:
                try:
                    handler(alert)
                except Exception:
                    logger.exception("alert handler %r failed", handler)
        return changes

    def _pool_usage(self) -> list[tuple[str, float, int]]:
        from dbsystem.monitoring.health import pool_label

        usage = []
        for db in self._monitor.managers:
            for (db_type, name), pool in db.pools().items():
                stats = pool.stats()
                usage.append(
                    (pool_label(db_type, name), stats.active / stats.max_size, stats.waiting)
                )
        return usage

    def _start(self) -> None:
        with self._lock:
            if not self._worker.running:
                self._worker.start()

    def stop(self) -> None:
        """Stop the evaluation thread."""
        self._worker.stop()


def _message(name: str, pool: str | None, value: float, threshold: float) -> str:
    if name == "error_rate":
        return f"error rate {value:.1%} is above {threshold:.1%}"
    if name == "latency":
        return f"p95 latency {value * 1000:.1f} ms is above {threshold * 1000:.1f} ms"
    return (
        f"pool {pool} is saturated: {value:.0%} of its connections in use "
        f"(alert at {threshold:.0%})"
    )
