"""The JSON-lines audit file: its one writer, its checkpoint, and its verification.

``JsonLinesAuditSink`` appends chained records (``_records``) to a file it holds an
exclusive ``flock`` on for its whole life, so a second writer, in this process or another,
fails at once instead of forking the chain. Beside the file it keeps a checkpoint
(``<file>.checkpoint``: the last record's ``seq`` and ``hash``, signed when the chain is),
rewritten in place after every batch of records, on ``flush()``, ``close()`` and at
interpreter exit: a file cut before its checkpoint, an emptied file, or a missing checkpoint
fails ``verify_audit_file``.

Opening the file repairs what a crash can leave (a partial last line: cut, with a WARNING
and a ``repair`` record in the chain) and records what it finds wrong (a checkpoint ahead of
the file, or missing, while the writer was away) as records of the chain, which the
verifier reports.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

from dbsystem._log import get_logger
from dbsystem.errors import ConfigurationError, SecurityError
from dbsystem.security._audit_sink import ChainSink, open_locked
from dbsystem.security._records import (
    AUDIT_BACKEND,
    CHECKPOINT_MISMATCH,
    CHECKPOINT_MISSING,
    CHECKPOINT_SIZE,
    GENESIS,
    REPAIR,
    ROTATE,
    AuditEvent,
    AuditKey,
    Checkpoint,
    SigningKey,
    chain_fast,
    checkpoint_text,
    digest,
    parse_checkpoint,
    self_record,
    signing_key,
)

__all__ = ["JsonLinesAuditSink", "verify_audit_file"]

_logger = get_logger("dbsystem.audit")
_HASH_SUFFIX = re.compile(r',"hash":"([0-9a-f]{64})"\}$')

Verdict = tuple[bool, int | None, str]


def checkpoint_path_for(path: Path) -> Path:
    """Where the file sink keeps the checkpoint of ``path``."""
    return path.with_name(path.name + ".checkpoint")


class _Writer:
    """The sink's state and file descriptors. Kept apart from the sink so that the sink's
    finalizer (and the fork and exit handlers) can reach them without keeping it alive."""

    def __init__(self, path: Path, checkpoint_path: Path, every: int) -> None:
        self.path, self.checkpoint_path, self.every = path, checkpoint_path, every
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.checkpoint_fd: int | None = None
        self.pid = os.getpid()
        self.forked = False
        self.started = False
        self.key: SigningKey | None = None
        self.seq, self.previous, self.checkpointed = 0, GENESIS, -1
        self.last_key_id: str | None = None  # the key that signed the last record
        self.announced_key_id: str | None = None  # named by a rotation as the last record
        self.found: Checkpoint | None = None  # the checkpoint as found at opening
        self.notices: list[AuditEvent] = []  # records the opening owes the chain

    @property
    def closed(self) -> bool:
        return self.fd is None

    # -- writing (the lock held) -----------------------------------------------------------

    def append(self, events: Sequence[AuditEvent]) -> None:
        fd = self.fd
        if fd is None:
            if self.forked:
                raise ConfigurationError(
                    f"the audit file {self.path} was opened by process {self.pid}; a forked "
                    "process cannot write it (its chain would fork): open the sink in the child"
                )
            raise SecurityError(f"the audit file {self.path} is closed")
        seq, previous, key = self.seq, self.previous, self.key
        lines = []
        for event in events:
            seq += 1
            line, previous = chain_fast(event, seq, previous, key)
            lines.append(line)
        data = "".join(lines).encode("ascii")
        written = os.write(fd, data)
        while written < len(data):  # a short write (a full disk raises before this)
            written += os.write(fd, data[written:])
        self.seq, self.previous = seq, previous
        self.last_key_id = key.id if key is not None else None

    def write_checkpoint(self) -> None:
        fd = self.checkpoint_fd
        if fd is None or self.checkpointed == self.seq:
            return
        # One pwrite of one fixed-size block: a crash leaves the old or the new one, and a
        # rename per record would cost a hundred times more (measured: 5 us against 770 us).
        os.pwrite(fd, checkpoint_text(self.seq, self.previous, self.key), 0)
        self.checkpointed = self.seq

    def start(self) -> None:
        """Check the key against the file, write what the opening owes, the checkpoint."""
        if self.started:
            return
        key, path = self.key, self.path
        if self.seq:
            if key is None and self.last_key_id is not None:
                raise ConfigurationError(
                    f"the audit file {path} is signed (key {self.last_key_id}): give the sink "
                    "its key to continue it"
                )
            # After a rotation record only the key it names may continue the chain.
            allowed = self.announced_key_id or self.last_key_id
            if key is not None and key.id != allowed:
                if self.last_key_id is None:
                    raise ConfigurationError(
                        f"the audit file {path} is not signed: a signed chain cannot continue "
                        "it; start a new file for the key"
                    )
                raise ConfigurationError(
                    f"the audit file {path} continues under key {allowed}, not under this "
                    f"key ({key.id}): open it with that key (and rotate_key), or start a new "
                    "file"
                )
        found = self.found
        if found is not None and key is not None and found.key_id == key.id:
            if not found.signed_by(key):
                self._mismatch("the checkpoint's signature is not valid")
        self.checkpoint_fd = os.open(self.checkpoint_path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.checkpoint_fd, CHECKPOINT_SIZE)
        self.checkpointed = -1
        if self.notices:
            self.append(self.notices)
            self.notices = []
        self.write_checkpoint()
        self.started = True

    def _mismatch(self, *what: str) -> None:
        _logger.error(
            "the audit file %s does not match its checkpoint: %s; recorded in the chain, "
            "and verification will fail",
            self.path,
            "; ".join(what),
        )
        self.notices.append(self_record(CHECKPOINT_MISMATCH, *what))

    # -- opening ---------------------------------------------------------------------------

    def open(self) -> None:
        """Lock the file, repair a partial last line, compare it with its checkpoint."""
        fd = open_locked(
            self.path,
            os.O_WRONLY | os.O_APPEND,
            f"the audit file {self.path} already has a writer (a JsonLinesAuditSink in "
            "this process or another): one writer per file, or the chain would fork",
        )
        try:
            self._load(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def _load(self, fd: int) -> None:
        state, found = _read_checkpoint(self.checkpoint_path)
        self.found = found
        want = found.seq if found is not None else 0
        with self.path.open("rb") as fh:
            data_end = os.fstat(fh.fileno()).st_size
            count, last, at_want, end = 0, b"", None, 0
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # a partial last line
                end += len(raw)
                if raw.strip():
                    count += 1
                    last = raw
                    if count == want:
                        at_want = raw
        if end < data_end:
            with self.path.open("rb") as fh:
                fh.seek(end)
                fragment = fh.read()
            os.ftruncate(fd, end)
            fingerprint = hashlib.sha256(fragment).hexdigest()
            _logger.warning(
                "the audit file %s ended with a partial record (%d bytes, SHA-256 %s) left by "
                "an interrupted write: cut, and the repair recorded in the chain",
                self.path,
                len(fragment),
                fingerprint,
            )
            self.notices.append(
                self_record(
                    REPAIR, f"cut {len(fragment)} bytes after seq {count}", f"sha256:{fingerprint}"
                )
            )
        if last:
            try:
                record = json.loads(last)
                self.seq, self.previous = int(record["seq"]), str(record["hash"])
            except (ValueError, KeyError, TypeError):
                raise SecurityError(
                    f"the audit file {self.path} ends with a line that is not an audit record "
                    f"(line {count}): check it with `dbsystem audit verify` and start a new file"
                ) from None
            self.last_key_id = record.get("key_id")
            resources = record.get("resources") or []
            if record.get("backend") == AUDIT_BACKEND and record.get("action") == ROTATE:
                self.announced_key_id = str(resources[0]) if resources else None
        if state == "missing" and count:
            _logger.warning(
                "the audit file %s has %d records but no checkpoint %s: recorded in the chain",
                self.path,
                count,
                self.checkpoint_path,
            )
            self.notices.append(self_record(CHECKPOINT_MISSING, f"the file ended at seq {count}"))
        elif state == "unreadable":
            self._mismatch(f"the checkpoint {self.checkpoint_path} could not be read")
        elif found is not None and found.seq > count:
            self._mismatch(
                f"the checkpoint is at seq {found.seq}", f"the file ended at seq {count}"
            )
        elif found is not None and found.seq and not _hash_is(at_want, found.hash):
            self._mismatch(f"the record at seq {found.seq} is not the one the checkpoint names")

    # -- closing ---------------------------------------------------------------------------

    def release(self) -> None:
        """Write the checkpoint if it is behind, close the descriptors (the lock with them)."""
        with self.lock:
            self._release()

    def _release(self) -> None:
        try:
            if self.fd is not None and self.started and not self.forked:
                self.write_checkpoint()
        finally:
            for fd in (self.fd, self.checkpoint_fd):
                if fd is not None:
                    os.close(fd)
            self.fd = self.checkpoint_fd = None

    def after_fork(self) -> None:
        """In a forked child: drop the parent's descriptors (its lock stays the parent's)."""
        self.lock = threading.Lock()  # the parent's may have been held at the fork
        if self.fd is not None or self.checkpoint_fd is not None:
            for fd in (self.fd, self.checkpoint_fd):
                if fd is not None:
                    os.close(fd)
            self.fd = self.checkpoint_fd = None
            self.forked = True


def _hash_is(line: bytes | None, expected: str) -> bool:
    if line is None:
        return False
    match = _HASH_SUFFIX.search(line.decode("ascii", "replace").rstrip("\n"))
    return match is not None and hmac.compare_digest(match.group(1), expected)


class JsonLinesAuditSink(ChainSink):
    """Appends events to a JSON-lines file, each line chained to the previous by hash.

    Each line carries ``seq`` (1, 2, 3... across reopenings), ``prev`` and ``hash``; with a
    ``key`` (``AuditKey``: a ``SecretStr`` or ``Credential`` from the credential store, or
    bytes; or given by ``AuditLog(..., key=...)``) the hash is an HMAC under it and the line
    names the key's id, so only the key's holder can write a chain that verifies.

    Each record is written (one ``write(2)`` per batch) before the statement's call
    returns, so a failing disk fails the call. The sink holds an exclusive lock on the file
    (``flock``) from opening to ``close()``: a second sink on the same file, in this process
    or another, raises ``ConfigurationError`` naming it; a process forked from the owner
    cannot write it either.

    The checkpoint (``checkpoint_path``: the last ``seq`` and ``hash``, signed with the key)
    is rewritten after every batch (``checkpoint_every`` records at most, 1 by default), on
    ``flush()``, on ``close()`` and at interpreter exit, so a cut tail, an emptied file or a
    deleted checkpoint is found by ``verify_audit_file``. A larger ``checkpoint_every``
    saves a ``pwrite`` per record and leaves the records since the last checkpoint open to
    an unseen cut. Ship the file (or the checkpoint) somewhere the writer's machine cannot
    rewrite for protection against someone who holds the key or restores an old copy.

    A partial last line (an interrupted write) is cut when the file is opened, with a
    WARNING on ``dbsystem.audit`` and a ``repair`` record in the chain.
    """

    _kind = "file"
    _writer: _Writer

    def __init__(
        self, path: str | Path, *, key: AuditKey | None = None, checkpoint_every: int = 1
    ) -> None:
        if checkpoint_every < 1:
            raise ConfigurationError(
                "JsonLinesAuditSink: checkpoint_every must be at least 1 "
                f"(got {checkpoint_every!r})"
            )
        self.path = Path(path)
        self.checkpoint_path = checkpoint_path_for(self.path)
        self.checkpoint_every = checkpoint_every
        self._writer = writer = _Writer(self.path, self.checkpoint_path, checkpoint_every)
        writer.open()
        self._finalizer = weakref.finalize(self, writer.release)
        self._finalizer.atexit = False  # the exit handler below flushes; GC closes
        _live_sinks.add(self)
        if key is not None:
            self.use_key(key)

    def _where(self) -> str:
        return f"the audit file {self.path}"

    def close(self) -> None:
        """Write the checkpoint and close the file, releasing its lock (idempotent)."""
        writer = self._writer
        try:
            with writer.lock:
                if writer.fd is not None and not writer.started and not writer.forked:
                    writer.start()  # what the opening found still goes into the chain
        except Exception as exc:
            _logger.error("audit file %s closed unstarted: %s", self.path, exc)
        finally:
            self._finalizer()
            _live_sinks.discard(self)


_live_sinks: weakref.WeakSet[JsonLinesAuditSink] = weakref.WeakSet()


def _flush_sinks_at_exit() -> None:
    for sink in list(_live_sinks):
        try:
            sink.flush()
        except Exception as exc:
            _logger.error("audit checkpoint not written at exit: %s: %s", type(exc).__name__, exc)


def _after_fork_in_child() -> None:
    for sink in list(_live_sinks):
        sink._writer.after_fork()


atexit.register(_flush_sinks_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)


# -- verification ----------------------------------------------------------------------------


def _read_checkpoint(path: Path) -> tuple[str, Checkpoint | None]:
    """("ok", checkpoint), ("missing", None) or ("unreadable", None).

    Read until two reads agree: the writer rewrites it in place, and a read racing the
    write could see half of each."""
    previous = None
    for _ in range(5):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return "missing", None
        except OSError:
            return "unreadable", None
        if data == previous:
            break
        previous = data
        time.sleep(0.001)
    found = parse_checkpoint(previous.decode("ascii", "replace")) if previous else None
    return ("ok", found) if found is not None else ("unreadable", None)


def judge_checkpoint(
    found: Checkpoint,
    last_seq: int,
    hash_at: str | None,
    signer: SigningKey | None,
    where: str,
    *,
    keyed: bool,
) -> Verdict:
    """A verified chain (its last seq; the hash of the record at the checkpoint's seq and
    the key in force after it) judged against a checkpoint."""
    if keyed:
        if signer is None or not found.signed_by(signer):
            return False, None, f"the checkpoint {where} is not signed with the chain's key"
    elif found.mac is not None:
        return False, None, f"the checkpoint {where} is signed (key {found.key_id}): give the key"
    if last_seq < found.seq:
        if last_seq == 0:
            return False, 1, f"the file is empty, but its checkpoint is at {found.seq}"
        return (
            False,
            last_seq + 1,
            f"records at the end were removed (the checkpoint is at {found.seq})",
        )
    if found.seq and (hash_at is None or not hmac.compare_digest(hash_at, found.hash)):
        return False, found.seq, "the record at the checkpoint was replaced"
    if last_seq == found.seq:
        return True, None, f"the chain is intact and ends at its checkpoint ({found.seq})"
    after = last_seq - found.seq
    return (
        True,
        None,
        f"the chain is intact up to its checkpoint ({found.seq}) and {after} record(s) after it",
    )


class ChainWalk:
    """Follows a chain record by record: links, signatures, key rotations, self-records.

    ``step`` returns a failure verdict or None; after the last record, ``finish`` checks
    that the chain ends under the current key."""

    def __init__(
        self, keys: dict[str, SigningKey], current: SigningKey | None, want: int, strict: bool
    ) -> None:
        self.keys, self.current, self.want, self.strict = keys, current, want, strict
        self.previous, self.last = GENESIS, 0
        self.key_id: str | None = None  # the key in force (set by the first record)
        self.hash_at: str | None = None
        self.key_at: SigningKey | None = None
        self.notes: list[str] = []

    def signer(self, number: int, key_id: str | None) -> tuple[SigningKey | None, Verdict | None]:
        """The key a record must be signed with, or the failure."""
        if not self.keys:
            if key_id is not None:
                return None, (
                    False,
                    number,
                    f"the record is signed (key {key_id}): give the key to verify it",
                )
            return None, None
        if key_id is None:
            return None, (
                False,
                number,
                "the record is not signed (written, or rewritten, without the key)",
            )
        if self.key_id is not None and key_id != self.key_id:
            return None, (
                False,
                number,
                f"signed with key {key_id}, but the chain is under key {self.key_id} and no "
                "rotation record named it",
            )
        found = self.keys.get(key_id)
        if found is None:
            return None, (
                False,
                number,
                f"signed with key {key_id}, which was not given (pass the keys it rotated "
                "from as previous_keys)",
            )
        return found, None

    def step(
        self,
        number: int,
        record: dict[str, object],
        body: str,
        claimed: str,
        signer: SigningKey | None,
    ) -> Verdict | None:
        if not hmac.compare_digest(digest(body, signer), claimed):
            return False, number, "the record was altered"
        if record.get("prev") != self.previous or record.get("seq", number) != number:
            return False, number, "a record before it was removed, inserted or moved"
        self.previous, self.last = claimed, number
        self.key_id = signer.id if signer is not None else None
        if record.get("backend") == AUDIT_BACKEND:
            verdict = self._self_record(number, record)
            if verdict is not None:
                return verdict
        if number == self.want:
            self.hash_at = claimed
            self.key_at = self.keys.get(self.key_id) if self.key_id else None
        return None

    def _self_record(self, number: int, record: dict[str, object]) -> Verdict | None:
        action = record.get("action")
        resources = record.get("resources")
        what = "; ".join(map(str, resources)) if isinstance(resources, list) else ""
        if action == ROTATE and self.keys and isinstance(resources, list) and resources:
            self.key_id = str(resources[0])  # the records after it are under the new key
        elif action == REPAIR:
            self.notes.append(f"a partial record was cut at start-up before seq {number} ({what})")
        elif action == CHECKPOINT_MISMATCH:
            return (
                False,
                number,
                f"the writer found the file and its checkpoint disagreeing when it reopened "
                f"the file ({what})",
            )
        elif action == CHECKPOINT_MISSING and self.strict:
            return (
                False,
                number,
                f"the writer found no checkpoint when it reopened the file ({what}); pass "
                "expect_checkpoint=False if it never had one",
            )
        return None

    def checkpoint_signer(self, seq: int) -> SigningKey | None:
        """The key that must sign a checkpoint at ``seq``: the key in force after that
        record (a rotation hands over to the next), or at the chain's end if the chain
        stops before it, or the current key for an empty chain."""
        if seq and self.last >= seq:
            return self.key_at
        if self.key_id is not None:
            return self.keys.get(self.key_id)
        return self.current

    def finish(self) -> Verdict | None:
        current = self.current
        if current is not None and self.last and self.key_id != current.id:
            return (
                False,
                self.last,
                f"the chain ends under key {self.key_id}, not under the current key ({current.id})",
            )
        return None

    def intact(self, reason: str) -> Verdict:
        if self.notes:
            reason += "; " + "; ".join(self.notes)
        return True, None, reason


def keyring(
    key: AuditKey | SigningKey | None, previous_keys: Iterable[AuditKey | SigningKey]
) -> tuple[SigningKey | None, dict[str, SigningKey]]:
    """The current key and every key by id."""
    current = signing_key(key) if key is not None else None
    keys = {k.id: k for k in map(signing_key, previous_keys)}
    if keys and current is None:
        raise ConfigurationError("previous_keys need key= (the key that signs the chain's end)")
    if current is not None:
        keys[current.id] = current
    return current, keys


def verify_audit_file(
    path: str | Path,
    checkpoint: str | Path | None = None,
    *,
    key: AuditKey | None = None,
    previous_keys: Iterable[AuditKey] = (),
    expect_checkpoint: bool = True,
) -> Verdict:
    """Check an audit file: (ok, first bad line number or None, explanation).

    Every record must link to the one before it (``seq``, ``prev``) and carry its hash.
    With ``key`` (the key the chain ends under) every record must be signed: by ``key``,
    or by one of ``previous_keys`` up to the rotation record that hands over to the next,
    so a file rewritten without the key fails at its first record. The checkpoint
    (``checkpoint``, by default ``<path>.checkpoint``, as the file sink writes it) must name
    a record of the chain, with the key's signature when there is a key: a file cut
    before it, or emptied, fails; a missing checkpoint fails unless
    ``expect_checkpoint=False`` says the file never had one.
    """
    path = Path(path)
    mark = Path(checkpoint) if checkpoint is not None else checkpoint_path_for(path)
    current, keys = keyring(key, previous_keys)
    # The checkpoint before the file: the writer writes a record before its checkpoint, so
    # a checkpoint read first names a record that the file, read next, holds.
    state, found = _read_checkpoint(mark)
    if not path.is_file():
        return False, None, f"the audit file {path} does not exist"
    walk = ChainWalk(keys, current, found.seq if found is not None else 0, expect_checkpoint)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            verdict = _verify_line(walk, number, raw)
            if verdict is not None:
                return verdict
    verdict = walk.finish()
    if verdict is not None:
        return verdict
    if state == "unreadable":
        return False, None, f"the checkpoint {mark} cannot be read"
    if found is None:
        if expect_checkpoint:
            empty = " and the file is empty" if walk.last == 0 else ""
            return (
                False,
                None,
                f"the checkpoint {mark} is missing{empty} (pass expect_checkpoint=False for "
                "a file that never had one)",
            )
        return walk.intact("the chain is intact" if walk.last else "the file is empty")
    signer = walk.checkpoint_signer(found.seq)
    ok, line, reason = judge_checkpoint(
        found, walk.last, walk.hash_at, signer, str(mark), keyed=bool(keys)
    )
    return walk.intact(reason) if ok else (ok, line, reason)


def _verify_line(walk: ChainWalk, number: int, raw: bytes) -> Verdict | None:
    try:
        line = raw.decode("ascii").rstrip("\n")
        record = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        return False, number, "not an audit record"
    match = _HASH_SUFFIX.search(line)
    if match is None or not isinstance(record, dict) or record.get("hash") != match.group(1):
        return False, number, "not an audit record"
    key_id = record.get("key_id")
    signer, failure = walk.signer(number, key_id if isinstance(key_id, str) else None)
    if failure is not None:
        return failure
    body = line[: match.start()] + "}"
    return walk.step(number, record, body, match.group(1), signer)
