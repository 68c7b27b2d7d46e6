"""``Periodic``: the background thread of the health monitor and the alert evaluator.

Each runs one task (check every pool; evaluate every threshold) every few seconds on a
daemon thread until stopped. A failing task is logged and the thread carries on: a
monitor must outlive the failure it is there to report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Periodic"]


class Periodic:
    """A daemon thread named ``name`` running ``task()`` every ``interval()`` seconds.

    ``interval`` is read before each wait, so a new setting applies from the next round.
    An exception in ``task`` is logged on ``logger`` as ``"<what> failed"``. ``stop()``
    waits up to ``join_timeout`` seconds for the round in progress, unless called from
    the thread itself (a handler stopping its own monitor).
    """

    def __init__(
        self,
        name: str,
        task: Callable[[], object],
        interval: Callable[[], float],
        *,
        logger: logging.Logger,
        what: str,
        join_timeout: float,
    ) -> None:
        self.name = name
        self._task = task
        self._interval = interval
        self._logger = logger
        self._what = what
        self._join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (the first round runs one interval from now)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self._task()
            except Exception:
                self._logger.exception("%s failed", self._what)

    def stop(self) -> None:
        """Stop the thread; the round in progress, if any, finishes first."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._join_timeout)
        self._thread = None
