"""What every change source shares: the event, and a subscription read by its own thread
that reconnects by itself."""

from __future__ import annotations

import queue
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dbsystem._log import get_logger
from dbsystem.errors import PermissionDenied

__all__ = ["ChangeEvent", "Subscription"]

logger = get_logger("dbsystem.streams")

_END = object()


def application_backend(db: Any, db_type: Any, name: str | None) -> Any:
    """The backend a listener connects with, for the application's manager only.

    A listener holds a connection of its own outside the hook chain (LISTEN, SUBSCRIBE,
    a change stream), so a user session (``db.for_user``) cannot open one: its events would
    skip access control and audit.
    """
    if db.user_session:
        raise PermissionDenied(
            "a user session cannot open change streams or listeners: they run outside the "
            "checks; open them on the application's manager"
        )
    return db.backend(db_type, name)


@dataclass(frozen=True)
class ChangeEvent:
    """One change: where it came from and what it carries.

    ``source`` is ``postgres``, ``redis``, ``redis-stream`` or ``mongodb``; ``channel`` the
    NOTIFY channel, pub/sub channel, stream key or collection; ``payload`` the message
    (text, or a dict: a stream entry's fields, a JSON NOTIFY payload decoded, a MongoDB
    change document); ``id`` the stream entry id or the change's resume token.
    """

    source: str
    channel: str
    payload: Any
    id: Any = None
    _ack: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def ack(self) -> None:
        """Acknowledge a Redis Streams entry (XACK); a no-op for other sources."""
        if self._ack is not None:
            self._ack()


class Subscription(ABC):
    """Events from one source: iterate (blocking), ``get(timeout)``, or a ``callback``.

    A thread of its own reads the source. When the connection drops it reconnects, with
    exponential backoff and jitter (``reconnect_delay`` to ``max_reconnect_delay``), and
    subscribes again; ``reconnects`` counts the times and ``last_error`` keeps the cause.
    ``stop()`` ends it cleanly: the thread exits, the connection closes, an iteration in
    progress finishes. Events arrive in the order the source delivered them.
    """

    source = "?"

    def __init__(
        self,
        *,
        callback: Callable[[ChangeEvent], Any] | None = None,
        reconnect_delay: float = 0.05,
        max_reconnect_delay: float = 2.0,
    ) -> None:
        self.callback = callback
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.reconnects = 0
        self.last_error: BaseException | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- for sources -----------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Connect and subscribe; raise on failure."""

    @abstractmethod
    def _read(self) -> None:
        """Emit events until ``_stopping`` is set (return) or the connection fails (raise).
        Wait at most about 0.2 s at a time, so that a stop is seen."""

    @abstractmethod
    def _close(self) -> None:
        """Close the connection, quietly."""

    def _emit(self, event: ChangeEvent) -> None:
        if self.callback is None:
            self._events.put(event)
            return
        try:
            self.callback(event)
        except Exception:
            logger.exception("a %s change callback failed", self.source)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Subscription:
        """Subscribe now (errors raise here), then read in the background."""
        self._open()
        self._thread = threading.Thread(
            target=self._run, name=f"dbsystem-{self.source}-changes", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        delay = self.reconnect_delay
        connected = True
        while not self._stopping.is_set():
            try:
                if not connected:
                    self._open()
                    connected = True
                    delay = self.reconnect_delay
                self._read()
            except PermissionDenied as exc:  # a grant revoked meanwhile: no retrying
                self.last_error = exc
                logger.warning("%s change stream refused, stopping: %s", self.source, exc)
                break
            except Exception as exc:
                if self._stopping.is_set():
                    break
                self.last_error = exc
                logger.warning("%s change stream lost, reconnecting: %s", self.source, exc)
                self._close()
                connected = False
                self.reconnects += 1
                self._stopping.wait(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_reconnect_delay)
        self._close()
        self._events.put(_END)

    def stop(self, timeout: float = 5.0) -> None:
        """End the subscription and wait (up to ``timeout``) for its thread to finish."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        elif thread is None:
            self._close()
            self._events.put(_END)

    @property
    def running(self) -> bool:
        """True while the reader thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- consuming -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ChangeEvent]:
        while True:
            item = self._events.get()
            if item is _END:
                self._events.put(_END)  # other consumers finish too
                return
            yield item

    def get(self, timeout: float | None = 1.0) -> ChangeEvent | None:
        """The next event, or None after ``timeout`` seconds (or once stopped)."""
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._events.put(_END)
            return None
        event: ChangeEvent = item
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
