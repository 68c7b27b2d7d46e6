"""``Periodic``: the background thread of the health monitor and the alert evaluator.

Each runs one task (check every pool; evaluate every threshold) every few seconds on a
daemon thread until stopped. A failing task is logged and the thread carries on: a
monitor must outlive the failure it is there to report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

__all__ = ["Periodic"]


@dataclass(eq=False)
class Periodic:
    """A daemon thread named ``name`` running ``task()`` every ``interval()`` seconds.

    ``interval`` is read before each wait, so a new setting applies from the next round.
    An exception in ``task`` is logged on ``logger`` as ``"<what> failed"``. ``stop()``
    waits up to ``join_timeout`` seconds for the round in progress, unless called from
    the thread itself (a handler stopping its own monitor).
    """

    name: str
    task: Callable[[], object]
    interval: Callable[[], float]
    _: KW_ONLY
    logger: logging.Logger
    what: str
    join_timeout: float
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

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
        while not self._stop.wait(self.interval()):
            try:
                self.task()
            except Exception:
                self.logger.exception("%s failed", self.what)

    def stop(self) -> None:
        """Stop the thread; the round in progress, if any, finishes first."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.join_timeout)
        self._thread = None
