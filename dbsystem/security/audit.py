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

import atexit
import datetime
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, Protocol

from dbsystem._log import get_logger
from dbsystem.errors import ConfigurationError, InterfaceError, SecurityError
from dbsystem.kernel.hooks import ExecutionHook, Statement

__all__ = [
    "AuditEvent",
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

_GENESIS = "0" * 64
_logger = get_logger("dbsystem.audit")
_HASH_SUFFIX = re.compile(r',"hash":"([0-9a-f]{64})"\}$')
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
_SPACES = re.compile(r"\s+")


def statement_shape(text: str) -> str:
    """The statement with whitespace folded, literals replaced by ``?``, in lower case."""
    return _SPACES.sub(" ", _LITERALS.sub("?", text)).strip().lower()


@lru_cache(maxsize=4096)
def fingerprint(text: str) -> str:
    """A hash of the statement's shape (``statement_shape``): the same for every value."""
    return hashlib.sha256(statement_shape(text).encode("utf-8")).hexdigest()[:24]


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
    """Receives audit events; must not lose them silently (raise if it cannot write).

    A sink may also define ``write_many(events)`` to take a batch at once (the file sink
    does: one ``write(2)`` per batch); ``AuditLog(background=True)`` uses it when present.
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


class JsonLinesAuditSink:
    """Appends events to a JSON-lines file, each line chained to the previous by hash.

    Each line carries ``seq`` (1, 2, 3... across reopenings), ``prev`` and ``hash``. Each
    record is written and flushed before the statement's call returns, so a failing disk
    fails the call. (A write-behind thread was tried and measured slower on a local
    PostgreSQL select: the writer contends for the GIL; see docs/SECURITY.md.) One writer
    process per file: two processes appending to one file break each other's chain.

    A cut tail leaves a valid chain, so the sink also keeps a checkpoint beside the file
    (``<path>.checkpoint``: the last ``seq`` and ``hash``), rewritten every
    ``checkpoint_every`` records and on ``close()``. ``verify_audit_file`` reads it and
    reports a file that ends before the checkpoint or disagrees with it. Records written
    since the last checkpoint can still be cut unseen: ``checkpoint_every=1`` closes that gap
    at the cost of a second write and a rename per record. Ship the checkpoint (or the
    file) somewhere the writer of the file cannot reach for the strongest guarantee.
    """

    def __init__(self, path: str | Path, *, checkpoint_every: int = 100) -> None:
        if checkpoint_every < 1:
            raise ConfigurationError(
                "JsonLinesAuditSink: checkpoint_every must be at least 1 "
                f"(got {checkpoint_every!r})"
            )
        self.path = Path(path)
        self.checkpoint_path = _checkpoint_path(self.path)
        self.checkpoint_every = checkpoint_every
        self._lock = threading.Lock()
        self._seq, self._previous = _last_link(self.path)
        # A raw descriptor in append mode: one write(2) per record, no buffer to flush.
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, event: AuditEvent) -> None:
        self.write_many((event,))

    def write_many(self, events: Sequence[AuditEvent]) -> None:
        """Append several events with one ``write(2)`` (``AuditLog(background=True)``)."""
        with self._lock:
            if self._fd is None:
                raise SecurityError(f"the audit file {self.path} is closed")
            seq, previous = self._seq, self._previous
            lines = []
            for event in events:
                seq += 1
                line, previous = _chain_fast(event, seq, previous)
                lines.append(line)
            data = "".join(lines).encode("ascii")
            written = os.write(self._fd, data)
            while written < len(data):  # a short write (a full disk raises before this)
                written += os.write(self._fd, data[written:])
            checkpoint = seq // self.checkpoint_every != self._seq // self.checkpoint_every
            self._seq, self._previous = seq, previous
            if checkpoint:
                self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        _write_checkpoint(self.checkpoint_path, self._seq, self._previous)

    def close(self) -> None:
        """Write the checkpoint and close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if self._seq:
                    self._write_checkpoint()


def _write_checkpoint(path: Path, seq: int, digest: str) -> None:
    """Replace a checkpoint atomically (a crash leaves the old one or the new one)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps({"seq": seq, "hash": digest}).encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _read_checkpoint(path: Path) -> tuple[int, str] | None:
    """(seq, hash) of a checkpoint; None if it cannot be read."""
    try:
        expected = json.loads(path.read_text(encoding="utf-8"))
        return int(expected["seq"]), str(expected["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _against_checkpoint(
    mark: Path, last_seq: int, hashes: dict[int, str]
) -> tuple[bool, int | None, str]:
    """A verified chain (its last seq, each record's hash) checked against a checkpoint."""
    found = _read_checkpoint(mark)
    if found is None:
        return False, None, f"the checkpoint {mark} cannot be read"
    seq, digest = found
    if last_seq < seq:
        return False, last_seq + 1, f"records at the end were removed (the checkpoint is at {seq})"
    if hashes.get(seq) != digest:
        return False, seq, "the record at the checkpoint was replaced"
    return True, None, f"the chain is intact up to the checkpoint at {seq} and beyond"


def _record(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in _FIELDS}


def _json(value: Any) -> str:
    """One value as JSON, as ``json.dumps`` writes it (ASCII, no spaces)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, tuple | list):
        return "[" + ",".join(map(_quote, value)) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(value)
    raise InterfaceError(
        f"an audit record field cannot hold a {type(value).__name__} "
        "(str, int, float, bool, None or a sequence of str)"
    )


def _chain(record: dict[str, Any], seq: int, previous: str) -> tuple[str, str]:
    """The record as a chained JSON line, and its hash (over the line up to the hash).

    Built by hand rather than by ``json.dumps`` of a dict: it is on every audited
    statement's path, and this is a third of the cost. ``verify_audit_file`` and the
    table sink's ``verify`` read it back with ``json.loads``.
    """
    body = (
        "{"
        + ",".join([f'"{name}":{_json(value)}' for name, value in record.items()])
        + f',"seq":{seq},"prev":"{previous}"}}'
    )
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    return body[:-1] + f',"hash":"{digest}"}}', digest


# The constant middle of a line (user to fingerprint, and operation) for each distinct
# (user, session, backend, action, resources, fingerprint, operation): a user session
# repeats a handful of these, so a line is two cached strings and the changing fields.
_TEMPLATES: dict[tuple[Any, ...], tuple[str, str]] = {}


def _chain_fast(event: AuditEvent, seq: int, previous: str) -> tuple[str, str]:
    """``_chain(_record(event), ...)`` as one newline-ended line: the same bytes, built from
    cached pieces (it is on every audited statement's path)."""
    key = (
        event.user,
        event.session,
        event.backend,
        event.action,
        event.resources,
        event.fingerprint,
        event.operation,
    )
    pieces = _TEMPLATES.get(key)
    if pieces is None:
        pieces = (
            f',"user":{_json(event.user)},"session":{_json(event.session)}'
            f',"backend":{_json(event.backend)},"action":{_json(event.action)}'
            f',"resources":{_json(event.resources)},"fingerprint":{_json(event.fingerprint)}'
            ',"outcome":',
            f',"operation":{_json(event.operation)},"seq":',
        )
        if len(_TEMPLATES) > 4096:  # bounded: many distinct sessions just rebuild pieces
            _TEMPLATES.clear()
        _TEMPLATES[key] = pieces
    error, rows, duration = event.error, event.rows, event.duration_ms
    # The common types inline (an int's and a finite float's JSON are str and repr).
    rows_json = str(rows) if type(rows) is int else _json(rows)
    duration_json = (
        repr(duration) if type(duration) is float and math.isfinite(duration) else _json(duration)
    )
    body = (
        f'{{"time":{_quote(event.time)}{pieces[0]}{_quote(event.outcome)}'
        f',"error":{"null" if error is None else _quote(error)}'
        f',"rows":{rows_json},"duration_ms":{duration_json}'
        f'{pieces[1]}{seq},"prev":"{previous}"}}'
    )
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}\n', digest


def _last_link(path: Path) -> tuple[int, str]:
    if not path.exists():
        return 0, _GENESIS
    last = None
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                last = line
    if not last:
        return 0, _GENESIS
    record = json.loads(last)
    return int(record.get("seq", 0)), str(record["hash"])


class DatabaseAuditSink:
    """Inserts events into a SQL table (created if missing), chained by hash like the file.

    ``DatabaseAuditSink(db, db_type=DatabaseType.POSTGRES, name="audit")``: give it a pool
    of its own (``name``), so an audited statement inside a transaction never waits for
    the connection it holds, and a rolled-back transaction never takes its audit records
    with it (the sink's inserts are autocommitted). ``verify()`` checks the chain. One
    writer process per table, as for the file.

    A cut tail (the last rows deleted) leaves a valid chain: give ``checkpoint`` a file
    path, best on a machine or volume the database's users cannot write, and the sink
    keeps the last ``seq`` and ``hash`` there (every ``checkpoint_every`` records and on
    ``close()``), and ``verify()`` fails a table that ends before it.
    """

    def __init__(
        self,
        db: Any,
        *,
        db_type: Any = None,
        name: str | None = None,
        table: str = "dbsystem_audit",
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 100,
    ) -> None:
        from dbsystem.query.expr import check_identifier

        if checkpoint_every < 1:
            raise ConfigurationError(
                f"DatabaseAuditSink: checkpoint_every must be at least 1 (got {checkpoint_every!r})"
            )
        self.checkpoint_path = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = checkpoint_every

        self.db, self.db_type, self.pool_name = db, db_type, name
        self.table = check_identifier(table, "audit table name")
        self._lock = threading.Lock()
        with _writing(), self._connection() as conn:
            conn.execute(_AUDIT_TABLE_DDL.format(table=self.table))
            last = conn.fetch_one(f"SELECT seq, hash FROM {self.table} ORDER BY seq DESC LIMIT 1")
        self._seq: int = int(last["seq"]) if last else 0
        self._previous: str = str(last["hash"]) if last else _GENESIS

    def _connection(self) -> Any:
        return self.db.connection(self.db_type, name=self.pool_name)

    def write(self, event: AuditEvent) -> None:
        record = _record(event)
        with self._lock:
            seq = self._seq + 1
            _, digest = _chain(record, seq, self._previous)
            row = {
                "seq": seq,
                **{_COLUMN.get(k, k): v for k, v in record.items()},
                "resources": json.dumps(list(event.resources)),
                "prev": self._previous,
                "hash": digest,
            }
            with _writing(), self._connection() as conn:
                conn.execute(_insert_sql(self.table), row)
            self._seq, self._previous = seq, digest
            if self.checkpoint_path is not None and seq % self.checkpoint_every == 0:
                _write_checkpoint(self.checkpoint_path, seq, digest)

    def close(self) -> None:
        """Write the checkpoint (if the sink keeps one)."""
        with self._lock:
            if self.checkpoint_path is not None and self._seq:
                _write_checkpoint(self.checkpoint_path, self._seq, self._previous)

    def verify(self) -> tuple[bool, int | None, str]:
        """Check the chain, and the checkpoint if the sink keeps one: (ok, first bad seq or
        None, explanation)."""
        previous, expected = _GENESIS, 1
        hashes: dict[int, str] = {}
        with _writing(), self._connection() as conn:
            rows = conn.fetch_all(f"SELECT * FROM {self.table} ORDER BY seq")
        for row in rows:
            seq = int(row["seq"])
            if seq != expected:
                return False, expected, "a record is missing"
            record = {name: row[_COLUMN.get(name, name)] for name in _FIELDS}
            record["resources"] = json.loads(record["resources"] or "[]")
            if record["duration_ms"] is not None:
                record["duration_ms"] = float(record["duration_ms"])
            if record["rows"] is not None:
                record["rows"] = int(record["rows"])
            if row["prev"] != previous:
                return False, seq, "a record before it was removed, inserted or moved"
            if _chain(record, seq, previous)[1] != row["hash"]:
                return False, seq, "the record was altered"
            previous, expected = row["hash"], expected + 1
            hashes[seq] = previous
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            return _against_checkpoint(self.checkpoint_path, expected - 1, hashes)
        return True, None, "the chain is intact"


# Column names that are reserved words somewhere (user: PostgreSQL; rows: MySQL 8).
_COLUMN = {"user": "user_name", "rows": "rows_affected"}
_AUDIT_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (seq BIGINT PRIMARY KEY, time VARCHAR(40) NOT NULL, "
    "user_name VARCHAR(255), session VARCHAR(255), backend VARCHAR(40), action VARCHAR(40), "
    "resources TEXT, fingerprint VARCHAR(64), outcome VARCHAR(16), error VARCHAR(255), "
    "rows_affected BIGINT, duration_ms DOUBLE PRECISION, operation VARCHAR(40), "
    "prev CHAR(64) NOT NULL, hash CHAR(64) NOT NULL)"
)


def _insert_sql(table: str) -> str:
    columns = ["seq", *(_COLUMN.get(name, name) for name in _FIELDS), "prev", "hash"]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )


class _Local(threading.local):
    writing = 0  # nesting depth of _writing blocks in this thread


_local = _Local()


class _writing:
    """Marks this thread as writing an audit record, so the sink's own statements are not
    audited again (which, with ``all_statements=True``, would never end)."""

    def __enter__(self) -> None:
        _local.writing += 1

    def __exit__(self, *exc: object) -> None:
        _local.writing -= 1


def _checkpoint_path(path: Path) -> Path:
    return path.with_name(path.name + ".checkpoint")


def verify_audit_file(
    path: str | Path, checkpoint: str | Path | None = None
) -> tuple[bool, int | None, str]:
    """Check the hash chain: (ok, first bad line number or None, explanation).

    ``checkpoint`` (default: ``<path>.checkpoint`` when it exists, as the file sink writes
    it) must name a record of the chain: a file cut before it fails.
    """
    ok, bad, reason = _verify_chain(Path(path))
    if not ok:
        return ok, bad, reason
    mark = Path(checkpoint) if checkpoint is not None else _checkpoint_path(Path(path))
    if checkpoint is None and not mark.exists():
        return ok, bad, reason
    if _read_checkpoint(mark) is None:
        return False, None, f"the checkpoint {mark} cannot be read"
    return _against_checkpoint(mark, *_chain_hashes(Path(path)))


def _chain_hashes(path: Path) -> tuple[int, dict[int, str]]:
    """The last seq of a verified file, and each record's hash by seq."""
    hashes: dict[int, str] = {}
    last = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                match = _HASH_SUFFIX.search(line.rstrip("\n"))
                if match is not None:
                    hashes[number] = match.group(1)
                    last = number
    return last, hashes


def _verify_chain(path: Path) -> tuple[bool, int | None, str]:
    previous = _GENESIS
    with path.open(encoding="utf-8") as fh:
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
            if record.get("prev") != previous or record.get("seq", number) != number:
                return False, number, "a record before it was removed, inserted or moved"
            previous = match.group(1)
    return True, None, "the chain is intact"


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
    queued record is delivered; ``close()`` (also run at interpreter exit) flushes and stops
    the writer.
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
        if background:
            if flush_interval <= 0:
                raise ConfigurationError(
                    f"AuditLog: flush_interval must be positive (got {flush_interval!r})"
                )
            if max_pending < 1:
                raise ConfigurationError(
                    f"AuditLog: max_pending must be at least 1 (got {max_pending!r})"
                )
            self._writer = threading.Thread(
                target=self._write_behind, name="dbsystem-audit-writer", daemon=True
            )
            self._writer.start()
            atexit.register(self.close)

    def before_execute(self, statement: Statement) -> None:
        failing = self._failing
        if failing is None or self.fail_open or _local.writing:
            return
        if statement.context is not None or self.all_statements:
            raise SecurityError(
                f"the audit log cannot write ({type(failing).__name__}: {failing}); "
                "statements are refused until it can",
                backend=statement.backend,
            )

    def after_execute(self, statement: Statement) -> None:
        context = statement.context
        if (context is None and not self.all_statements) or _local.writing:
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

    def _write_behind(self) -> None:
        while not self._stop.wait(self.flush_interval):
            if self._pending or self._retry:
                try:
                    self.flush()
                except Exception:  # recorded in failures and _failing; retried next time
                    pass

    def flush(self) -> None:
        """Deliver every queued record now (background mode; a no-op otherwise).

        Raises the sink's error if a batch cannot be delivered (it stays queued for a retry
        unless ``fail_open``).
        """
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

    def close(self) -> None:
        """Stop the background writer after delivering what is queued (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._stop.set()
        writer.join()
        atexit.unregister(self.close)
        try:
            self.flush()
        except Exception as exc:
            _logger.error("audit records not delivered at close: %s: %s", type(exc).__name__, exc)

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


_second: tuple[int, str] = (0, "")


def _utc_now(now: float | None = None) -> str:
    """``now`` (default: the current time) in UTC as ISO 8601 with microseconds
    (``datetime.isoformat`` form).

    The date and time to the second are formatted once per second: formatting a datetime
    on every audited statement was a fifth of the audit cost.
    """
    global _second
    if now is None:
        now = time.time()
    whole = int(now)
    cached, text = _second
    if whole != cached:
        stamp = datetime.datetime.fromtimestamp(whole, datetime.UTC)
        text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return f"{text}.{int((now - whole) * 1_000_000):06d}+00:00"


def as_record(event: AuditEvent) -> dict[str, Any]:
    """The event as a dict."""
    return asdict(event)
