"""``PerformanceMonitor``: every statement of every backend, timed in the one execution path.

The monitor is an ``ExecutionHook``: attached to a manager (``monitor.attach(db)``, done
for the process-wide pair by ``PerformanceMonitor.instance()``), it sees each statement's
backend, operation, duration and outcome after it ran, with no code in user calls. It keeps

* a sliding window (``window`` seconds, per-second buckets) read by ``summary()``: rate,
  average, p50/p95/p99, error rate, by backend and by operation;
* running totals since start, for Prometheus (``dbsystem.monitoring.prometheus``);
* a slow-query log: fingerprint, normalised statement (literals replaced by ``?``, so no
  values), duration, for each statement at or above ``slow_query_threshold``;
* alert thresholds, evaluated over the window (``dbsystem.monitoring.alerts``).

``errors`` and ``error_rate`` count every statement that did not succeed: those that failed
in the database and those refused before reaching it (access control, a failing audit log).
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from math import floor as _floor
from math import log as _log
from typing import TYPE_CHECKING, Any

from dbsystem._log import get_logger
from dbsystem.errors import ConfigurationError
from dbsystem.kernel._singleton import ProcessWide
from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.monitoring._local import health_check as _health_local
from dbsystem.monitoring._window import FLOOR, LOG_GROWTH, Group, Second
from dbsystem.monitoring.alerts import Alert, AlertEvaluator, AlertThresholds
from dbsystem.security.audit import fingerprint, statement_shape

if TYPE_CHECKING:
    from dbsystem.core.manager import Engine as DatabaseManager

__all__ = [
    "DURATION_BUCKETS",
    "PerformanceMonitor",
    "PerformanceSummary",
    "QueryStats",
    "SlowQuery",
]

slow_logger = get_logger("dbsystem.slow")
_STATUSES = ("ok", "error", "denied")

DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of ``dbsystem_query_duration_seconds``."""


@dataclass(frozen=True, slots=True)
class QueryStats:
    """Figures over the monitor's window (durations in seconds)."""

    total_queries: int
    errors: int
    queries_per_second: float
    avg_latency: float
    p50: float
    p95: float
    p99: float

    @property
    def error_rate(self) -> float:
        """Errors per statement, 0..1 (0 when there were none)."""
        return self.errors / self.total_queries if self.total_queries else 0.0


@dataclass(frozen=True, slots=True)
class PerformanceSummary(QueryStats):
    """``QueryStats`` over the whole window, with breakdowns by backend and by operation."""

    window: float = 0.0
    """Seconds covered: the window, or the time since the monitor started if shorter."""
    by_backend: dict[str, QueryStats] = field(default_factory=dict)
    by_operation: dict[str, QueryStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SlowQuery:
    """One statement at or above the slow-query threshold."""

    time: float
    """When it finished (Unix time)."""
    backend: str
    operation: str
    fingerprint: str
    statement: str
    """The statement's shape: whitespace folded, literals replaced by ``?``, cut at 200."""
    duration: float
    ok: bool


class PerformanceMonitor(ProcessWide, ExecutionHook):
    """Times every statement of the managers it is attached to; see the module docstring.

    ``PerformanceMonitor.instance()`` is the process-wide monitor, attached to
    ``DatabaseManager.instance()`` on creation. ``clock`` (monotonic seconds) is for tests.
    """

    def __init__(
        self,
        *,
        window: float = 60.0,
        slow_query_threshold: float | None = 1.0,
        slow_query_log_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 1:
            raise ConfigurationError(
                f"PerformanceMonitor: window must be at least 1 second (got {window!r})"
            )
        self.window = window
        self.slow_query_threshold = slow_query_threshold
        self.slow_queries: deque[SlowQuery] = deque(maxlen=slow_query_log_size)
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._seconds: deque[Second] = deque()
        self._current: Second | None = None
        # Running totals since start, for Prometheus.
        # Per (backend, operation): [ok, error, denied, one count per duration bucket...,
        # the rest, sum of durations]; one list, so one lookup per statement.
        self._totals: dict[tuple[str, str], list[float]] = {}
        self._slow_total = 0
        self._managers: weakref.WeakSet[DatabaseManager] = weakref.WeakSet()
        self.alerts = AlertEvaluator(self, clock)

    # -- the process-wide instance ---------------------------------------------------------

    @classmethod
    def _create_instance(cls) -> PerformanceMonitor:
        """``PerformanceMonitor.instance()`` is attached to ``DatabaseManager.instance()``."""
        from dbsystem.core.manager import Engine

        return cls().attach(Engine.instance())

    def attach(self, db: DatabaseManager) -> PerformanceMonitor:
        """Time every statement of ``db`` (every pool, present and future); return self."""
        if db not in self._managers:
            self._managers.add(db)
            db.add_hook(self)
        return self

    def detach(self, db: DatabaseManager) -> None:
        """Stop timing ``db``'s statements."""
        if db in self._managers:
            self._managers.discard(db)
            db.remove_hook(self)

    @property
    def managers(self) -> list[DatabaseManager]:
        """The managers attached (their pools feed pool metrics and saturation alerts)."""
        return list(self._managers)

    # -- the hook --------------------------------------------------------------------------

    def after_execute(self, statement: Statement) -> None:
        if _health_local.checking:
            return  # the health monitor's pings are not the application's queries
        duration = statement.duration or 0.0
        error = statement.error
        status = 0 if error is None else (1 if statement.executed else 2)
        key = (statement.backend, statement.operation)
        now = self._clock()
        whole = int(now)
        with self._lock:
            second = self._current
            if second is None or second.start != whole:
                second = self._roll(whole)
            group = second.groups.get(key)
            if group is None:
                group = second.groups[key] = Group()
            # Group.add, inlined: this runs once per statement.
            group.count += 1
            group.total += duration
            if error is not None:
                group.errors += 1
            bucket = _floor(_log(duration if duration > FLOOR else FLOOR) / LOG_GROWTH)
            hist = group.hist
            hist[bucket] = hist.get(bucket, 0) + 1
            totals = self._totals.get(key)
            if totals is None:
                totals = self._totals[key] = [0.0] * (len(DURATION_BUCKETS) + 5)
            totals[status] += 1
            totals[3 + bisect_left(DURATION_BUCKETS, duration)] += 1
            totals[-1] += duration
        threshold = self.slow_query_threshold
        if threshold is not None and duration >= threshold:
            self._log_slow(statement, duration, error is None)

    def _roll(self, whole: int) -> Second:
        """Start a new second and drop those that left the window (lock held)."""
        second = self._current = Second(whole)
        self._seconds.append(second)
        horizon = whole - self.window
        while self._seconds and self._seconds[0].start <= horizon:
            self._seconds.popleft()
        return second

    def _log_slow(self, statement: Statement, duration: float, ok: bool) -> None:
        entry = SlowQuery(
            time=time.time(),
            backend=statement.backend,
            operation=statement.operation,
            fingerprint=fingerprint(statement.text),
            statement=statement_shape(statement.text)[:200],
            duration=duration,
            ok=ok,
        )
        with self._lock:
            self.slow_queries.append(entry)
            self._slow_total += 1
        slow_logger.warning(
            "slow %s on %s: %.3f s: %s",
            entry.operation,
            entry.backend,
            duration,
            entry.statement,
        )

    # -- reading ---------------------------------------------------------------------------

    def summary(self, window: float | None = None) -> PerformanceSummary:
        """Figures over the last ``window`` seconds (default: the monitor's window)."""
        span = min(window if window is not None else self.window, self.window)
        now = self._clock()
        horizon = int(now) - span
        with self._lock:
            seconds = [s for s in self._seconds if s.start > horizon]
            groups = [(key, group) for s in seconds for key, group in s.groups.items()]
            total = Group()
            by_backend: dict[str, Group] = {}
            by_operation: dict[str, Group] = {}
            for (backend, operation), group in groups:
                total.merge(group)
                by_backend.setdefault(backend, Group()).merge(group)
                by_operation.setdefault(operation, Group()).merge(group)
        covered = max(min(span, now - self._started), 1e-9)
        return PerformanceSummary(
            **asdict(_stats(total, covered)),
            window=covered,
            by_backend={name: _stats(g, covered) for name, g in sorted(by_backend.items())},
            by_operation={name: _stats(g, covered) for name, g in sorted(by_operation.items())},
        )

    def query_counts(self) -> dict[tuple[str, str, str], int]:
        """Statements since start by (backend, operation, status: ok, error or denied)."""
        with self._lock:
            return {
                (backend, operation, status): int(totals[index])
                for (backend, operation), totals in self._totals.items()
                for index, status in enumerate(_STATUSES)
                if totals[index]
            }

    def duration_histograms(self) -> dict[tuple[str, str], tuple[list[int], float]]:
        """Per (backend, operation): counts per ``DURATION_BUCKETS`` bound (then the rest)
        and the sum of durations, since start."""
        with self._lock:
            return {key: ([int(n) for n in t[3:-1]], t[-1]) for key, t in self._totals.items()}

    @property
    def slow_queries_total(self) -> int:
        """Slow statements logged since start (the log itself keeps the latest only)."""
        return self._slow_total

    def reset(self) -> None:
        """Forget every figure (the window, the totals, the slow-query log)."""
        with self._lock:
            self._seconds.clear()
            self._current = None
            self._totals.clear()
            self.slow_queries.clear()
            self._slow_total = 0
            self._started = self._clock()

    # -- alerts ----------------------------------------------------------------------------

    def set_alert_thresholds(
        self,
        *,
        error_rate: float | None = None,
        latency: float | None = None,
        pool_saturation: float | None = None,
        min_queries: int = 10,
        cooldown: float = 60.0,
        interval: float = 1.0,
    ) -> AlertThresholds:
        """Alert when, over the window, the error rate (0..1) or the p95 latency (seconds)
        exceeds its threshold, or a pool's share of connections in use (0..1) reaches
        ``pool_saturation`` or callers wait for one. ``None`` turns an alert off.

        Error-rate and latency alerts need ``min_queries`` statements in the window. Each
        alert fires once per breach, again only ``cooldown`` seconds after it last fired,
        and sends a resolved notice when it clears. Evaluated every ``interval`` seconds
        by a background thread once a handler is registered (``evaluate_alerts()`` runs
        one evaluation now).
        """
        limits = (error_rate, latency, pool_saturation)
        thresholds = AlertThresholds(*limits, min_queries, cooldown, interval)
        self.alerts.configure(thresholds)
        return thresholds

    def register_alert_handler(self, handler: Callable[[Alert], Any]) -> None:
        """Call ``handler(alert)`` for every alert fired or resolved (on the evaluator's
        thread; an exception in a handler is logged, never raised)."""
        self.alerts.add_handler(handler)

    def evaluate_alerts(self) -> list[Alert]:
        """Evaluate every threshold now; the alerts fired or resolved by this evaluation."""
        return self.alerts.evaluate()

    @property
    def firing(self) -> list[Alert]:
        """The alerts firing now."""
        return self.alerts.firing()

    def close(self) -> None:
        """Stop the alert thread and detach from every manager."""
        self.alerts.stop()
        for db in list(self._managers):
            self.detach(db)

    def __repr__(self) -> str:
        return f"<PerformanceMonitor window={self.window:g}s managers={len(self._managers)}>"


def _stats(group: Group, seconds: float) -> QueryStats:
    p50, p95, p99 = group.percentiles((0.50, 0.95, 0.99))
    return QueryStats(
        total_queries=group.count,
        errors=group.errors,
        queries_per_second=group.count / seconds,
        avg_latency=group.total / group.count if group.count else 0.0,
        p50=p50,
        p95=p95,
        p99=p99,
    )
