"""The audit log: one record per access decision and per statement of a user session.

A record holds the UTC time, user, session id, backend, action, resources, a fingerprint
of the statement (its normalised text, hashed: parameter values are never written),
outcome (allowed and ok, error, or denied), error class, rows and duration. Sinks receive
records: a JSON-lines file, a SQL table, Python logging, or memory (tests).

The file and table sinks are tamper-evident: each record carries the hash of the previous
one and its own hash over both, an HMAC under a key from the credential store when the log
has one (``AuditLog(..., key=...)``), and a checkpoint names the last record, so
``verify_audit_file`` (and ``dbsystem audit verify FILE``) finds the first record that was
altered, removed, inserted or moved, a cut tail, an emptied file, a missing checkpoint and a
file rewritten without the key. The pieces: ``_records`` (the record, its line, keys and
checkpoint format), ``_audit_file`` (the file sink, its lock, repair and verification),
``_audit_table`` (the table sink).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any, Protocol

from dbsystem._log import get_logger
from dbsystem.errors import ConfigurationError, SecurityError
from dbsystem.kernel.hooks import ExecutionHook, Statement
from dbsystem.security._audit_file import JsonLinesAuditSink, verify_audit_file
from dbsystem.security._audit_table import DatabaseAuditSink, is_writing
from dbsystem.security._records import (
    AuditEvent,
    AuditKey,
    signing_key,
)
from dbsystem.security._records import chain as _chain
from dbsystem.security._records import chain_fast as _chain_fast
from dbsystem.security._records import record_dict as _record
from dbsystem.security._records import utc_now as _utc_now

__all__ = [
    "AuditEvent",
    "AuditKey",
    "AuditLog",
    "AuditSink",
    "DatabaseAuditSink",
    "JsonLinesAuditSink",
    "LoggingAuditSink",
    "MemoryAuditSink",
    "fingerprint",
    "statement_shape",
    "verify_audit_file",
]

# Kept importable from here (tests compare the fast line with the reference line).
_ = (_chain, _chain_fast, _record)

_logger = get_logger("dbsystem.audit")
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
_SPACES = re.compile(r"\s+")


def statement_shape(text: str) -> str:
    """The statement with whitespace folded, literals replaced by ``?``, in lower case."""
    return _SPACES.sub(" ", _LITERALS.sub("?", text)).strip().lower()


@lru_cache(maxsize=4096)
def fingerprint(text: str) -> str:
    """A hash of the statement's shape (``statement_shape``): the same for every value."""
    return hashlib.sha256(statement_shape(text).encode("utf-8")).hexdigest()[:24]


class AuditSink(Protocol):
    """Receives audit events; must not lose them silently (raise if it cannot write).

    A sink may also define ``write_many(events)`` to take a batch at once (the file sink
    does: one ``write(2)`` per batch; ``AuditLog(background=True)`` uses it when present),
    ``flush()`` (``AuditLog.flush`` calls it: the file sink writes its checkpoint),
    ``close()`` (``AuditLog.close`` calls it) and ``use_key(key)`` (``AuditLog(key=...)``
    hands its key to the sinks that sign their records).
    """

    def write(self, event: AuditEvent) -> None: ...


class MemoryAuditSink:
    """Keeps events in a list (tests, short-lived tools)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def write(self, event: AuditEvent) -> None:
        self.events.append(event)


class LoggingAuditSink:
    """Writes events as JSON on a logger (``dbsystem.audit`` at INFO by default)."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("dbsystem.audit")
        self.level = level

    def write(self, event: AuditEvent) -> None:
        self.logger.log(self.level, "%s", json.dumps(asdict(event), sort_keys=True))


class AuditLog(ExecutionHook):
    """Writes an ``AuditEvent`` for every statement of a user session to its sinks.

    Denied statements are recorded too (outcome ``denied``). Statements without a user are
    the application's own and are not recorded unless ``all_statements=True``.

    Fail-closed by default: when a sink fails, the statement's caller sees the sink's
    error (the statement itself had run: records are written after execution), and every
    audited statement after it is refused with ``SecurityError`` before it reaches the
    database, until a record is written again (the refusals are recorded too, so the
    first refusal after the sink recovers clears the state). ``fail_open=True`` lets
    statements through instead, logging each failure on ``dbsystem.audit``. ``failures``
    counts failed deliveries either way.

    ``background=True`` takes the record off the statement's path: the call only queues
    the statement and its time (well under a microsecond), and a writer thread builds the
    records and hands them to the sinks in batches every ``flush_interval`` seconds (the
    file sink writes a batch with one ``write(2)``). The trade, documented in
    docs/SECURITY.md: a record reaches the sink up to ``flush_interval`` after its call
    returns, so a process killed in between loses those records; a failing sink cannot
    fail the call it records, only refuse the calls after it (fail-closed) while the
    failed batch waits to be retried; the queue holds at most ``max_pending`` records, and
    a caller that finds it full writes the batch itself. ``flush()`` waits until every
    queued record is delivered.

    ``key`` (an ``AuditKey``: a ``SecretStr`` or ``Credential`` from the credential store,
    or bytes) is handed to every sink that signs its records (the file and table sinks):
    their hashes become HMACs under it. ``rotate_key(new)`` records the rotation in each
    chain and signs with the new key from then on.

    ``flush()`` also brings the sinks' checkpoints up to date; ``close()`` flushes, stops
    the writer and closes the sinks. At interpreter exit every log still alive is flushed
    (the exit handler holds logs weakly: it keeps none alive).
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink],
        *,
        all_statements: bool = False,
        fail_open: bool = False,
        background: bool = False,
        flush_interval: float = 0.005,
        max_pending: int = 10_000,
        key: AuditKey | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.all_statements = all_statements
        self.fail_open = fail_open
        self.failures = 0
        self.background = background
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._failing: BaseException | None = None
        self._pending: deque[tuple[float, Statement]] = deque()
        self._retry: list[AuditEvent] = []  # a batch a sink refused, delivered first next time
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        if background and flush_interval <= 0:
            raise ConfigurationError(
                f"AuditLog: flush_interval must be positive (got {flush_interval!r})"
            )
        if background and max_pending < 1:
            raise ConfigurationError(
                f"AuditLog: max_pending must be at least 1 (got {max_pending!r})"
            )
        if key is not None:
            signing_key(key)  # refused early if it is not a usable key
            signers = [s for s in self.sinks if callable(getattr(s, "use_key", None))]
            if not signers:
                raise ConfigurationError(
                    "AuditLog(key=...) needs a sink that signs its records "
                    "(JsonLinesAuditSink, DatabaseAuditSink)"
                )
            for sink in signers:
                getattr(sink, "use_key")(key)  # noqa: B009 (not part of the AuditSink protocol)
        for sink in self.sinks:
            if isinstance(sink, JsonLinesAuditSink | DatabaseAuditSink):
                sink.start()  # a file or table the key cannot continue fails here, at start-up
        if background:
            self._writer = threading.Thread(
                target=_write_behind,
                args=(weakref.ref(self), self._stop, flush_interval),
                name="dbsystem-audit-writer",
                daemon=True,
            )
            self._writer.start()
            weakref.finalize(self, self._stop.set)  # a collected log stops its writer
        _live_logs.add(self)

    def before_execute(self, statement: Statement) -> None:
        failing = self._failing
        if failing is None or self.fail_open or is_writing():
            return
        if statement.context is not None or self.all_statements:
            raise SecurityError(
                f"the audit log cannot write ({type(failing).__name__}: {failing}); "
                "statements are refused until it can",
                backend=statement.backend,
            )

    def after_execute(self, statement: Statement) -> None:
        context = statement.context
        if (context is None and not self.all_statements) or is_writing():
            return
        if self.background:
            pending = self._pending
            pending.append((time.time(), statement))
            if len(pending) >= self.max_pending:
                self.flush()  # back-pressure: the writer has fallen behind
            return
        self._deliver(self._event(statement, None), raise_errors=statement.executed)

    def _event(self, statement: Statement, when: float | None) -> AuditEvent:
        context = statement.context
        error = statement.error
        if error is None:
            outcome = "ok"
        else:
            outcome = "error" if statement.executed else "denied"
        return AuditEvent(
            time=_utc_now(when),
            user=getattr(context, "user", None),
            session=getattr(context, "session_id", None),
            backend=statement.backend,
            action=statement.action,
            resources=tuple(statement.resources),
            fingerprint=fingerprint(statement.text),
            outcome=outcome,
            error=type(error).__name__ if error is not None else None,
            rows=statement.rowcount if statement.executed and error is None else None,
            duration_ms=round(statement.duration * 1000, 3) if statement.duration else None,
            operation=statement.operation,
        )

    # A statement that never ran (denied, refused) leaves nothing unaudited behind: its
    # caller gets the refusal, not the sink's error (``raise_errors=statement.executed``).

    def flush(self) -> None:
        """Deliver every queued record now (background mode), then bring the sinks'
        checkpoints up to date (their ``flush()``).

        Raises the sink's error if a batch cannot be delivered (it stays queued for a retry
        unless ``fail_open``).
        """
        self._deliver_pending()
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if callable(flush):
                flush()

    def _deliver_pending(self) -> None:
        with self._flush_lock:
            pending = self._pending
            events = self._retry
            self._retry = []
            while pending:
                when, statement = pending.popleft()
                events.append(self._event(statement, when))
            if not events:
                return
            try:
                for sink in self.sinks:
                    write_many = getattr(sink, "write_many", None)
                    if write_many is not None:
                        write_many(events)
                    else:
                        for event in events:
                            sink.write(event)
            except Exception as exc:
                self.failures += 1
                if self.fail_open:
                    _logger.warning(
                        "%d audit records lost: %s: %s", len(events), type(exc).__name__, exc
                    )
                    return
                self._failing = exc
                # Kept for the next attempt; while the sink fails, new statements are
                # refused, so only their refusals queue up, and at most max_pending wait.
                self._retry = events[: self.max_pending]
                raise
            self._failing = None

    def rotate_key(self, key: AuditKey) -> None:
        """Sign with ``key`` from now on: what is queued is delivered first, then each
        signing sink records the rotation (signed with the old key, naming the new one)."""
        signing_key(key)
        self._deliver_pending()
        for sink in self.sinks:
            rotate = getattr(sink, "rotate_key", None)
            if callable(rotate):
                rotate(key)

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            self._stop.set()
            writer.join()

    def _at_exit(self) -> None:
        """Interpreter exit: deliver what is queued and write the checkpoints; the sinks stay
        open for whatever else runs at exit."""
        self._stop_writer()
        try:
            self.flush()
        except Exception as exc:
            _logger.error("audit records not delivered at exit: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        """Deliver what is queued, stop the background writer, and close the sinks (their
        checkpoints written). Idempotent."""
        self._stop_writer()
        try:
            self.flush()
        except Exception as exc:
            _logger.error("audit records not delivered at close: %s: %s", type(exc).__name__, exc)
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    _logger.error("audit sink not closed: %s: %s", type(exc).__name__, exc)
        _live_logs.discard(self)

    def _deliver(self, event: AuditEvent, *, raise_errors: bool = True) -> None:
        try:
            for sink in self.sinks:
                sink.write(event)
        except Exception as exc:
            self.failures += 1
            if self.fail_open:
                _logger.warning("audit record lost: %s: %s", type(exc).__name__, exc)
                return
            self._failing = exc
            if raise_errors:
                raise
            return
        self._failing = None

    def log_access(
        self,
        user: str | None,
        session: str | None,
        action: str,
        resource: str,
        statement: str = "",
        success: bool = True,
        error: str | None = None,
    ) -> AuditEvent:
        """Record an application-level event (the seed's AUDIT_LOG_ACCESS)."""
        event = AuditEvent(
            time=_utc_now(),
            user=user,
            session=session,
            backend="application",
            action=action,
            resources=(resource,),
            fingerprint=fingerprint(statement) if statement else "",
            outcome="ok" if success else "denied",
            error=error,
        )
        self._deliver(event)
        return event


def _write_behind(ref: weakref.ref[AuditLog], stop: threading.Event, interval: float) -> None:
    """The background writer: holds the log weakly, so an unreferenced log is collected
    (and its finalizer stops this loop)."""
    while not stop.wait(interval):
        log = ref()
        if log is None:
            return
        if log._pending or log._retry:
            try:
                log.flush()
            except Exception:  # recorded in failures and _failing; retried next time
                pass
        del log


_live_logs: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _flush_logs_at_exit() -> None:
    """Deliver what the logs still queue, and their sinks' checkpoints, at interpreter exit
    (registered after the file sinks' handler, so it runs before it)."""
    for log in list(_live_logs):
        log._at_exit()


atexit.register(_flush_logs_at_exit)


def as_record(event: AuditEvent) -> dict[str, Any]:
    """The event as a dict."""
    return asdict(event)
