"""What both audit sinks do the same way, over a writer of their own.

``JsonLinesAuditSink`` (``_audit_file``) and ``DatabaseAuditSink`` (``_audit_table``) keep
the same chain in different places. Each has a writer holding the chain's state (the key,
``seq``, the checkpoint) that starts the chain (checks the key against what is already
written), appends records and rewrites the checkpoint; ``ChainSink`` is the rest, written
once: choosing the key, writing, flushing, and rotating the key as a record of the chain.
"""

from __future__ import annotations

import fcntl
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Protocol

from dbsystem._log import get_logger
from dbsystem.errors import ConfigurationError
from dbsystem.security._records import (
    ROTATE,
    AuditEvent,
    AuditKey,
    SigningKey,
    self_record,
    signing_key,
)

__all__ = ["ChainSink", "ChainWriter", "open_locked"]

_logger = get_logger("dbsystem.audit")


def open_locked(path: Path, flags: int, taken: str) -> int:
    """``path`` opened (created with mode 0600) and locked for this writer alone
    (``flock``), or ``ConfigurationError(taken)`` when another writer holds it."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigurationError(taken) from None
    return fd


class ChainWriter(Protocol):
    """A sink's writer; every member is used with ``lock`` held."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held around every use of the writer."""
        ...

    key: SigningKey | None  # signs the records (None: an unsigned SHA-256 chain)
    started: bool
    seq: int  # the last record's
    checkpointed: int  # the seq the checkpoint holds
    every: int  # records between checkpoints at most

    @property
    def closed(self) -> bool:
        """True once nothing more can be written."""
        ...

    def start(self) -> None:
        """Check the key against what is written, write what is owed and the checkpoint
        (once; later calls return at once)."""
        ...

    def append(self, events: Sequence[AuditEvent]) -> None:
        """Chain ``events`` after the last record and write them."""
        ...

    def write_checkpoint(self) -> None:
        """Bring the checkpoint (if kept) up to the last record."""
        ...


class ChainSink(ABC):
    """The sink methods both audit sinks share (see the module docstring)."""

    _writer: ChainWriter
    _kind: ClassVar[str]  # "file" or "table"

    @abstractmethod
    def _where(self) -> str:
        """``the audit file <path>`` or ``the audit table <name>``, for messages."""

    @property
    def key_id(self) -> str | None:
        """The id of the key signing the records (None: an unsigned SHA-256 chain)."""
        key = self._writer.key
        return key.id if key is not None else None

    def use_key(self, key: AuditKey) -> None:
        """Sign the records with ``key`` from now on (``AuditLog(key=...)`` calls this) and
        start the sink. Refused once the sink has started with another key."""
        signer = signing_key(key)
        writer = self._writer
        with writer.lock:
            if writer.started and writer.key != signer:
                raise ConfigurationError(
                    f"{self._where()} is already being written with "
                    f"{'key ' + writer.key.id if writer.key else 'no key'}: use rotate_key"
                )
            writer.key = signer
            writer.start()

    def start(self) -> None:
        """Check the key against what is already written, write what opening it found
        (repairs, discrepancies) and the checkpoint. Runs at the first write when not
        called; ``AuditLog`` calls it at once, so that a wrong key fails at start-up."""
        with self._writer.lock:
            self._writer.start()

    def write(self, event: AuditEvent) -> None:
        """Append one event (before the audited call returns)."""
        self.write_many((event,))

    def write_many(self, events: Sequence[AuditEvent]) -> None:
        """Append several events (``AuditLog(background=True)``)."""
        writer = self._writer
        with writer.lock:
            writer.start()
            writer.append(events)
            if writer.seq - writer.checkpointed >= writer.every:
                writer.write_checkpoint()

    def flush(self) -> None:
        """Bring the checkpoint up to the last record (records are never held back)."""
        writer = self._writer
        with writer.lock:
            if not writer.closed:
                writer.start()
                writer.write_checkpoint()

    def rotate_key(self, key: AuditKey) -> AuditEvent:
        """Sign the records with ``key`` from now on, recording the rotation in the chain
        (a record signed with the old key naming the new key's id). Returns that record."""
        signer = signing_key(key)
        writer = self._writer
        with writer.lock:
            writer.start()
            if writer.key is None:
                raise ConfigurationError(
                    f"{self._where()} is not signed; a key cannot be rotated into an unsigned "
                    f"chain: start a new {self._kind} with key="
                )
            if signer == writer.key:
                raise ConfigurationError("the new audit key is the current key")
            event = self_record(ROTATE, signer.id)
            writer.append((event,))
            writer.key = signer
            writer.write_checkpoint()
        _logger.info("%s: key rotated to %s", self._where(), signer.id)
        return event
