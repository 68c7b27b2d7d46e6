"""The audit log: one record per access decision and per statement of a user session.

A record holds the UTC time, user, session id, backend, action, resources, a fingerprint
of the statement (its normalised text, hashed: parameter values are never written),
outcome (allowed and ok, error, or denied), error class, rows and duration. Sinks receive
records: a JSON-lines file, Python logging, or memory (tests).

The file sink is tamper-evident: each line carries the hash of the previous line and its
own hash over both, so ``verify_audit_file`` (and ``dbsystem audit verify FILE``) finds the
first line that was altered, removed, inserted or moved.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from dbsystem.core.hooks import ExecutionHook, Statement

__all__ = [
    "AuditEvent",
    "AuditLog",
    "AuditSink",
    "JsonLinesAuditSink",
    "LoggingAuditSink",
    "MemoryAuditSink",
    "fingerprint",
    "verify_audit_file",
]

_GENESIS = "0" * 64
_HASH_SUFFIX = re.compile(r',"hash":"([0-9a-f]{64})"\}$')
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def fingerprint(text: str) -> str:
    """A hash of the statement's shape: whitespace folded, literals replaced by ``?``."""
    shape = _SPACES.sub(" ", _LITERALS.sub("?", text)).strip().lower()
    return hashlib.sha256(shape.encode("utf-8")).hexdigest()[:24]


@dataclass(slots=True)
class AuditEvent:
    """One audit record."""

    time: str
    user: str | None
    session: str | None
    backend: str
    action: str
    resources: tuple[str, ...]
    fingerprint: str
    outcome: str
    error: str | None = None
    rows: int | None = None
    duration_ms: float | None = None
    operation: str | None = None


_FIELDS = tuple(AuditEvent.__dataclass_fields__)


class AuditSink(Protocol):
    """Receives audit events; must not lose them silently (raise if it cannot write)."""

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


class JsonLinesAuditSink:
    """Appends events to a JSON-lines file, each line chained to the previous by hash.

    Each record is written and flushed before the statement's call returns, so a failing
    disk fails the call. (A write-behind thread was tried and measured slower on a local
    PostgreSQL select: the writer contends for the GIL; see docs/SECURITY.md.)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._previous = _last_hash(self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, event: AuditEvent) -> None:
        record = {name: getattr(event, name) for name in _FIELDS}
        with self._lock:
            record["prev"] = self._previous
            body = json.dumps(record, separators=(",", ":"), default=list)
            # The hash covers the line as written, up to the hash itself.
            digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
            self._file.write(body[:-1] + f',"hash":"{digest}"}}\n')
            self._file.flush()
            self._previous = digest

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


def _last_hash(path: Path) -> str:
    if not path.exists():
        return _GENESIS
    last = None
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                last = line
    return str(json.loads(last)["hash"]) if last else _GENESIS


def verify_audit_file(path: str | Path) -> tuple[bool, int | None, str]:
    """Check the hash chain: (ok, first bad line number or None, explanation)."""
    previous = _GENESIS
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            line = line.rstrip("\n")
            match = _HASH_SUFFIX.search(line)
            try:
                record = json.loads(line)
            except ValueError:
                return False, number, "not an audit record"
            if match is None or record.get("hash") != match.group(1):
                return False, number, "not an audit record"
            body = line[: match.start()] + "}"
            if hashlib.sha256(body.encode("utf-8")).hexdigest() != match.group(1):
                return False, number, "the record was altered"
            if record.get("prev") != previous:
                return False, number, "a record before it was removed, inserted or moved"
            previous = match.group(1)
    return True, None, "the chain is intact"


class AuditLog(ExecutionHook):
    """Writes an ``AuditEvent`` for every statement of a user session to its sinks.

    Denied statements are recorded too (outcome ``denied``). Statements without a user are
    the application's own and are not recorded unless ``all_statements=True``. If a sink
    fails, the statement's caller sees the error: an access that cannot be audited is not
    silently let through (after the statement ran, it is reported as failed).
    """

    def __init__(self, sinks: Sequence[AuditSink], *, all_statements: bool = False) -> None:
        self.sinks = list(sinks)
        self.all_statements = all_statements

    def after_execute(self, statement: Statement) -> None:
        context = statement.context
        if context is None and not self.all_statements:
            return
        error = statement.error
        if error is None:
            outcome = "ok"
        else:
            outcome = "error" if statement.executed else "denied"
        event = AuditEvent(
            time=_utc_now(),
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
        for sink in self.sinks:
            sink.write(event)

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
        for sink in self.sinks:
            sink.write(event)
        return event


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def as_record(event: AuditEvent) -> dict[str, Any]:
    """The event as a dict."""
    return asdict(event)
