"""The audit table: records inserted into a SQL table, chained (and signed) like the file.

``DatabaseAuditSink`` writes through a pool of the application's manager, marking the
thread while it does (``writing``) so that the ``AuditLog`` hook does not audit the sink's
own statements. Its optional checkpoint file works as the file sink's does.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dbsystem.errors import ConfigurationError
from dbsystem.security._audit_file import ChainWalk, Verdict, judge_checkpoint, keyring
from dbsystem.security._audit_sink import ChainSink, open_locked
from dbsystem.security._records import (
    AUDIT_BACKEND,
    CHECKPOINT_SIZE,
    FIELDS,
    GENESIS,
    ROTATE,
    AuditEvent,
    AuditKey,
    SigningKey,
    chain,
    chain_body,
    checkpoint_text,
    digest,
    parse_checkpoint,
    record_dict,
)

__all__ = ["DatabaseAuditSink"]


class _Local(threading.local):
    writing = 0  # nesting depth of writing blocks in this thread


_local = _Local()


def is_writing() -> bool:
    """True while this thread writes an audit record (its statements are not audited)."""
    return bool(_local.writing)


class writing:
    """Marks this thread as writing an audit record, so the sink's own statements are not
    audited again (which, with ``all_statements=True``, would never end)."""

    def __enter__(self) -> None:
        _local.writing += 1

    def __exit__(self, *exc: object) -> None:
        _local.writing -= 1


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
    columns = ["seq", *(_COLUMN.get(name, name) for name in FIELDS), "prev", "hash"]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )


def _row_record(row: dict[str, Any]) -> dict[str, Any]:
    """A table row back as the record its hash covers."""
    record = {name: row[_COLUMN.get(name, name)] for name in FIELDS}
    record["resources"] = json.loads(record["resources"] or "[]")
    if record["duration_ms"] is not None:
        record["duration_ms"] = float(record["duration_ms"])
    if record["rows"] is not None:
        record["rows"] = int(record["rows"])
    return record


class _TableWriter:
    """The table sink's chain state (see ``ChainWriter``): rows inserted through the
    sink's pool, each autocommitted."""

    def __init__(self, sink: DatabaseAuditSink, last: dict[str, Any] | None) -> None:
        self.sink = sink
        self.lock = threading.Lock()
        self.key: SigningKey | None = None
        self.started = False
        self.every = sink.checkpoint_every
        self.checkpoint_fd: int | None = None
        self.checkpointed = -1
        self.last_row = last
        self.seq: int = int(last["seq"]) if last else 0
        self.previous: str = str(last["hash"]) if last else GENESIS

    @property
    def closed(self) -> bool:
        return False  # rows can be inserted as long as the pool is there

    def start(self) -> None:
        if self.started:
            return
        last = self.last_row
        if last is not None:
            record = _row_record(last)
            announced = (
                record["resources"][0]
                if record["backend"] == AUDIT_BACKEND and record["action"] == ROTATE
                else None
            )
            key = self.key
            body = chain_body(record, int(last["seq"]), str(last["prev"]), key)
            if announced is not None:  # after a rotation only the key it names continues
                fits = key is not None and key.id == announced
            else:
                fits = digest(body, key) == last["hash"]
            if not fits:
                what = "is not signed with this key" if key else "is signed: give the sink its key"
                raise ConfigurationError(
                    f"the last record of the audit table {self.sink.table} {what} (open it "
                    "with the key the chain is under, then rotate_key, or use a new table)"
                )
        self.write_checkpoint()
        self.started = True

    def write_checkpoint(self) -> None:
        fd = self.checkpoint_fd
        if fd is None or self.checkpointed == self.seq:
            return
        os.ftruncate(fd, CHECKPOINT_SIZE)
        os.pwrite(fd, checkpoint_text(self.seq, self.previous, self.key), 0)
        self.checkpointed = self.seq

    def append(self, events: Sequence[AuditEvent]) -> None:
        sink = self.sink
        for event in events:
            record = record_dict(event)
            seq = self.seq + 1
            _, signature = chain(record, seq, self.previous, self.key)
            row = {
                "seq": seq,
                **{_COLUMN.get(k, k): v for k, v in record.items()},
                "resources": json.dumps(list(event.resources)),
                "prev": self.previous,
                "hash": signature,
            }
            with writing(), sink._connection() as conn:
                conn.execute(_insert_sql(sink.table), row)
            self.seq, self.previous = seq, signature


class DatabaseAuditSink(ChainSink):
    """Inserts events into a SQL table (created if missing), chained by hash like the file.

    ``DatabaseAuditSink(db, db_type=DatabaseType.POSTGRES, name="audit")``: give it a pool
    of its own (``name``), so an audited statement inside a transaction never waits for
    the connection it holds, and a rolled-back transaction never takes its audit records
    with it (the sink's inserts are autocommitted). ``verify()`` checks the chain. One
    writer process per table (a second fails on the primary key). With a ``key`` (or
    ``AuditLog(..., key=...)``) each hash is an HMAC under the key, as in the file.

    A cut tail (the last rows deleted) leaves a valid chain: give ``checkpoint`` a file
    path, best on a machine or volume the database's users cannot write, and the sink
    keeps the last ``seq`` and ``hash`` there (signed with the key; after every
    ``checkpoint_every`` records, on ``flush()`` and on ``close()``; one sink per checkpoint
    file, locked), and ``verify()`` fails a table that ends before it, or a checkpoint
    that is missing.
    """

    _kind = "table"
    _writer: _TableWriter

    def __init__(
        self,
        db: Any,
        *,
        db_type: Any = None,
        name: str | None = None,
        table: str = "dbsystem_audit",
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 1,
        key: AuditKey | None = None,
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
        with writing(), self._connection() as conn:
            conn.execute(_AUDIT_TABLE_DDL.format(table=self.table))
            last = conn.fetch_one(f"SELECT * FROM {self.table} ORDER BY seq DESC LIMIT 1")
        self._writer = _TableWriter(self, last)
        if self.checkpoint_path is not None:
            self._writer.checkpoint_fd = open_locked(
                self.checkpoint_path,
                os.O_RDWR,
                f"the audit checkpoint {self.checkpoint_path} already has a writer: one "
                "sink per checkpoint",
            )
        if key is not None:
            self.use_key(key)

    def _connection(self) -> Any:
        return self.db.connection(self.db_type, name=self.pool_name)

    def _where(self) -> str:
        return f"the audit table {self.table}"

    def close(self) -> None:
        """Write the checkpoint (if the sink keeps one) and release it."""
        writer = self._writer
        with writer.lock:
            fd = writer.checkpoint_fd
            if fd is None:
                return
            try:
                if writer.started:
                    writer.write_checkpoint()
            finally:
                os.close(fd)
                writer.checkpoint_fd = None

    def verify(
        self, *, previous_keys: Iterable[AuditKey] = (), expect_checkpoint: bool = True
    ) -> Verdict:
        """Check the chain, and the checkpoint if the sink keeps one: (ok, first bad seq or
        None, explanation). A keyed sink checks every signature with its key and
        ``previous_keys`` (the keys it rotated from)."""
        current, keys = keyring(self._writer.key, previous_keys)
        found = None
        if self.checkpoint_path is not None:
            try:
                found = parse_checkpoint(self.checkpoint_path.read_text("ascii"))
            except (OSError, ValueError):
                found = None
            if found is None and (expect_checkpoint or self.checkpoint_path.exists()):
                return (
                    False,
                    None,
                    f"the checkpoint {self.checkpoint_path} is missing or unreadable",
                )
        walk = ChainWalk(keys, current, found.seq if found is not None else 0, True)
        with writing(), self._connection() as conn:
            rows = conn.fetch_all(f"SELECT * FROM {self.table} ORDER BY seq")
        expected = 1
        for row in rows:
            seq = int(row["seq"])
            if seq != expected:
                return False, expected, "a record is missing"
            record = _row_record(row)
            record["seq"], record["prev"] = seq, row["prev"]
            signer, failure = _row_signer(walk, keys, row)
            if failure is not None:
                return failure
            body = chain_body(_row_record(row), seq, str(row["prev"]), signer)
            verdict = walk.step(seq, record, body, str(row["hash"]), signer)
            if verdict is not None:
                return verdict
            expected += 1
        verdict = walk.finish()
        if verdict is not None:
            return verdict
        if found is None:
            return walk.intact("the chain is intact")
        signer = walk.checkpoint_signer(found.seq)
        ok, line, reason = judge_checkpoint(
            found, walk.last, walk.hash_at, signer, str(self.checkpoint_path), keyed=bool(keys)
        )
        return walk.intact(reason) if ok else (ok, line, reason)


def _row_signer(
    walk: ChainWalk, keys: dict[str, SigningKey], row: dict[str, Any]
) -> tuple[SigningKey | None, Verdict | None]:
    """The key a row must be signed with (None: an unsigned chain), or the failure.

    A row does not name its key: the first row's is found by trying each key given, and
    after that the key in force (changed by rotation records) must sign each row."""
    seq = int(row["seq"])
    if not keys:
        return None, None
    if walk.key_id is not None:
        found = keys.get(walk.key_id)
        if found is None:
            return None, (
                False,
                seq,
                f"signed with key {walk.key_id}, which was not given (pass the keys it "
                "rotated from as previous_keys)",
            )
        return found, None
    fields = _row_record(row)
    for key in keys.values():
        if digest(chain_body(fields, seq, str(row["prev"]), key), key) == row["hash"]:
            return key, None
    return None, (False, seq, "the record is not signed with any key given (or was altered)")
