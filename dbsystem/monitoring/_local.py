"""Thread-local state shared by the monitoring modules."""

from __future__ import annotations

import threading


class _HealthCheck(threading.local):
    checking = False  # True while this thread runs a health check's ping


health_check = _HealthCheck()
