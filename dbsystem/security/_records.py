"""The audit record, its chained line, the keys that sign it and the checkpoint's format.

Shared by the file sink and its verifier (``_audit_file``), the table sink and the
``AuditLog`` hook (``audit``). A record becomes one JSON line ending in ``seq``, ``prev``
(the previous record's hash) and ``hash``. Without a key, ``hash`` is SHA-256 of the line up
to it: that catches edits, but anyone can rewrite the whole file and recompute it. With a
key (an ``AuditKey``: a ``SecretStr`` or ``Credential`` from the credential store, or bytes)
the line also names the key by its id (``key_id``, an HMAC of a constant: it reveals
nothing about the key) and ``hash`` is HMAC-SHA256 under the key, so only the key's holder
can write a chain that verifies.

A key rotation is itself a record (backend ``audit``, action ``rotate_key``, the new key's
id as its resource), signed with the old key; the records after it are signed with the new
one. The checkpoint (the last record's ``seq`` and ``hash``) is signed the same way.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from pydantic import SecretStr

from dbsystem.errors import ConfigurationError, InterfaceError
from dbsystem.security.credentials import Credential

__all__ = ["AuditEvent", "AuditKey"]

GENESIS = "0" * 64
# The records the log writes about itself (backend "audit").
AUDIT_BACKEND = "audit"
ROTATE = "rotate_key"  # resources: (the new key's id,)
REPAIR = "repair"  # a partial last line was cut at start; resources say what was cut
CHECKPOINT_MISSING = "checkpoint_missing"  # reopened: records but no checkpoint
CHECKPOINT_MISMATCH = "checkpoint_mismatch"  # reopened: the file ends before its checkpoint
MIN_KEY_BYTES = 16
CHECKPOINT_SIZE = 256  # bytes: rewritten in place, one block, always the same length


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


FIELDS = tuple(AuditEvent.__dataclass_fields__)

AuditKey = SecretStr | Credential | bytes
"""What ``AuditLog(key=...)`` and the sinks accept: a ``SecretStr`` or a ``Credential`` (its
password) from the credential store, or raw bytes; at least 16 bytes."""


class SigningKey:
    """An audit key ready for use (its bytes are never printed) and its public id."""

    __slots__ = ("_inner", "_outer", "id")

    def __init__(self, secret: bytes) -> None:
        self.id = hmac.new(secret, b"dbsystem audit key id", hashlib.sha256).hexdigest()[:16]
        # HMAC (RFC 2104) with its two padded key blocks hashed once: a signature is then
        # two copies and two small updates, half the cost of hmac.digest per call (on
        # every audited statement's path).
        block = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def sign(self, data: bytes) -> str:
        """HMAC-SHA256 of ``data`` under the key, in hex."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __repr__(self) -> str:
        return f"SigningKey(id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningKey) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def signing_key(key: AuditKey | SigningKey) -> SigningKey:
    """``key`` as a ``SigningKey``; a ``ConfigurationError`` for anything else."""
    if isinstance(key, SigningKey):
        return key
    if isinstance(key, Credential):
        key = key.password
    if isinstance(key, SecretStr):
        raw = key.get_secret_value().encode("utf-8")
    elif isinstance(key, bytes | bytearray):
        raw = bytes(key)
    else:
        raise ConfigurationError(
            "an audit key is a SecretStr or a Credential from the credential store "
            "(CredentialManager.instance().get(name)), or bytes; a plain str is refused so "
            "that it cannot be printed by accident"
        )
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigurationError(f"an audit key must hold at least {MIN_KEY_BYTES} bytes")
    return SigningKey(raw)


def digest(body: str, key: SigningKey | None) -> str:
    """The ``hash`` of a line's ``body``: HMAC-SHA256 under ``key``, or plain SHA-256."""
    data = body.encode("ascii")
    return key.sign(data) if key is not None else hashlib.sha256(data).hexdigest()


def record_dict(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in FIELDS}


def to_json(value: Any) -> str:
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


def _tail(key: SigningKey | None) -> str:
    return ',"seq":' if key is None else f',"key_id":"{key.id}","seq":'


def chain_body(
    record: dict[str, Any], seq: int, previous: str, key: SigningKey | None = None
) -> str:
    """What a record's hash covers: its line up to the hash, closed with ``}``."""
    return (
        "{"
        + ",".join([f'"{name}":{to_json(value)}' for name, value in record.items()])
        + f'{_tail(key)}{seq},"prev":"{previous}"}}'
    )


def chain(
    record: dict[str, Any], seq: int, previous: str, key: SigningKey | None = None
) -> tuple[str, str]:
    """The record as a chained JSON line (no newline), and its hash (over the line up to
    the hash).

    Built by hand rather than by ``json.dumps`` of a dict: it is on every audited
    statement's path, and this is a third of the cost. The verifiers read it back with
    ``json.loads``.
    """
    body = chain_body(record, seq, previous, key)
    signature = digest(body, key)
    return body[:-1] + f',"hash":"{signature}"}}', signature


# The constant middle of a line (user to fingerprint, and operation) for each distinct
# (user, session, backend, action, resources, fingerprint, operation): a user session
# repeats a handful of these, so a line is two cached strings and the changing fields.
_TEMPLATES: dict[tuple[Any, ...], tuple[str, str]] = {}


def chain_fast(
    event: AuditEvent, seq: int, previous: str, key: SigningKey | None = None
) -> tuple[str, str]:
    """``chain(record_dict(event), ...)`` as one newline-ended line: the same bytes, built
    from cached pieces (it is on every audited statement's path)."""
    template = (
        event.user,
        event.session,
        event.backend,
        event.action,
        event.resources,
        event.fingerprint,
        event.operation,
    )
    pieces = _TEMPLATES.get(template)
    if pieces is None:
        pieces = (
            f',"user":{to_json(event.user)},"session":{to_json(event.session)}'
            f',"backend":{to_json(event.backend)},"action":{to_json(event.action)}'
            f',"resources":{to_json(event.resources)}'
            f',"fingerprint":{to_json(event.fingerprint)},"outcome":',
            f',"operation":{to_json(event.operation)}',
        )
        if len(_TEMPLATES) > 4096:  # bounded: many distinct sessions just rebuild pieces
            _TEMPLATES.clear()
        _TEMPLATES[template] = pieces
    error, rows, duration = event.error, event.rows, event.duration_ms
    # The common types inline (an int's and a finite float's JSON are str and repr).
    rows_json = str(rows) if type(rows) is int else to_json(rows)
    duration_json = (
        repr(duration) if type(duration) is float and math.isfinite(duration) else to_json(duration)
    )
    body = (
        f'{{"time":{_quote(event.time)}{pieces[0]}{_quote(event.outcome)}'
        f',"error":{"null" if error is None else _quote(error)}'
        f',"rows":{rows_json},"duration_ms":{duration_json}'
        f'{pieces[1]}{_tail(key)}{seq},"prev":"{previous}"}}'
    )
    signature = digest(body, key)
    return f'{body[:-1]},"hash":"{signature}"}}\n', signature


_second: tuple[int, str] = (0, "")


def utc_now(now: float | None = None) -> str:
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


def self_record(action: str, *resources: str) -> AuditEvent:
    """A record the log writes about itself (backend ``audit``)."""
    return AuditEvent(
        time=utc_now(),
        user=None,
        session=None,
        backend=AUDIT_BACKEND,
        action=action,
        resources=tuple(resources),
        fingerprint="",
        outcome="ok",
    )


def checkpoint_text(seq: int, record_hash: str, key: SigningKey | None) -> bytes:
    """A checkpoint: the last record's ``seq`` and ``hash``, signed with ``key`` if any,
    padded to ``CHECKPOINT_SIZE`` bytes (so that rewriting it in place never leaves a
    longer old tail behind)."""
    # The JSON by hand (json.dumps would give the same text): it is rewritten per record.
    if key is None:
        text = f'{{"seq": {seq}, "hash": "{record_hash}"}}'
    else:
        mac = key.sign(_checkpoint_message(seq, record_hash, key.id))
        text = f'{{"seq": {seq}, "hash": "{record_hash}", "key_id": "{key.id}", "mac": "{mac}"}}'
    return (text.ljust(CHECKPOINT_SIZE - 1) + "\n").encode("ascii")


def _checkpoint_message(seq: int, record_hash: str, key_id: str) -> bytes:
    return f"dbsystem audit checkpoint|{seq}|{record_hash}|{key_id}".encode("ascii")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read back."""

    seq: int
    hash: str
    key_id: str | None
    mac: str | None

    def signed_by(self, key: SigningKey) -> bool:
        """True if the checkpoint carries a valid signature of ``key``."""
        if self.mac is None or self.key_id != key.id:
            return False
        expected = key.sign(_checkpoint_message(self.seq, self.hash, key.id))
        return hmac.compare_digest(expected, self.mac)


def parse_checkpoint(text: str) -> Checkpoint | None:
    """A checkpoint's content; None if it is not one."""
    try:
        content = json.loads(text)
        key_id, mac = content.get("key_id"), content.get("mac")
        return Checkpoint(
            int(content["seq"]),
            str(content["hash"]),
            str(key_id) if key_id is not None else None,
            str(mac) if mac is not None else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
