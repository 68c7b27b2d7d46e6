"""``AuditLog(background=True)``: records queued on the statement's path, written in batches
by a writer thread, with the same chain, the same fail-closed gate and nothing lost."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time

import pytest

from dbsystem import (
    ConfigurationError,
    DatabaseManager,
    DatabaseType,
    PermissionDenied,
    SecurityError,
)
from dbsystem.security import (
    AccessControl,
    AuditEvent,
    AuditLog,
    JsonLinesAuditSink,
    MemoryAuditSink,
    Permission,
    Role,
    verify_audit_file,
)
from dbsystem.security.audit import _chain, _chain_fast, _record


@pytest.fixture
def db(tmp_path):
    manager = DatabaseManager()
    manager.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/bg.db")
    manager.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    acl = AccessControl()
    acl.create_role(Role("writer", grants={"t": Permission.SELECT | Permission.INSERT}))
    acl.assign_role("ann", "writer")
    manager.use_access_control(acl)
    yield manager
    manager.close_all()


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_background_records_match_record_by_record_ones(db, tmp_path):
    behind = JsonLinesAuditSink(tmp_path / "behind.jsonl")
    direct = JsonLinesAuditSink(tmp_path / "direct.jsonl")
    log = db.add_hook(AuditLog([behind], background=True, flush_interval=60))
    db.add_hook(AuditLog([direct]))
    ann = db.for_user("ann", session_id="s-1")
    for i in range(250):
        ann.execute("INSERT INTO t VALUES (:id)", {"id": i})
    with pytest.raises(PermissionDenied):
        ann.execute("DELETE FROM t")  # denied: recorded too
    assert (tmp_path / "behind.jsonl").read_text() == ""  # queued, not yet written
    log.flush()
    behind.close()
    direct.close()
    got, expected = _lines(tmp_path / "behind.jsonl"), _lines(tmp_path / "direct.jsonl")
    assert len(got) == len(expected) == 251
    skip = {"time", "duration_ms", "hash", "prev"}  # timed separately, so chained differently
    assert [{k: v for k, v in r.items() if k not in skip} for r in got] == [
        {k: v for k, v in r.items() if k not in skip} for r in expected
    ]
    assert got[-1]["outcome"] == "denied" and got[-1]["seq"] == 251
    assert verify_audit_file(tmp_path / "behind.jsonl") == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (251)",
    )
    # The time is the statement's, not the writer's.
    assert [r["time"] for r in got] == sorted(r["time"] for r in got)
    log.close()


def test_records_reach_the_file_within_the_flush_interval(db, tmp_path):
    path = tmp_path / "a.jsonl"
    log = db.add_hook(AuditLog([JsonLinesAuditSink(path)], background=True, flush_interval=0.01))
    db.for_user("ann").fetch_all("SELECT * FROM t")
    deadline = time.monotonic() + 2
    while not path.read_text() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(_lines(path)) == 1
    log.close()
    log.close()  # idempotent


class FlakySink:
    def __init__(self) -> None:
        self.broken = False
        self.events: list[AuditEvent] = []

    def write(self, event: AuditEvent) -> None:
        if self.broken:
            raise OSError("disk full")
        self.events.append(event)


def test_a_failing_sink_closes_the_gate_and_loses_nothing(db):
    sink = FlakySink()
    log = db.add_hook(AuditLog([sink], background=True, flush_interval=60))
    ann = db.for_user("ann")
    ann.execute("INSERT INTO t VALUES (1)")
    sink.broken = True
    with pytest.raises(OSError, match="disk full"):
        log.flush()
    with pytest.raises(SecurityError, match="refused until"):
        ann.execute("INSERT INTO t VALUES (2)")
    assert db.fetch_value("SELECT COUNT(*) FROM t") == 1
    sink.broken = False
    log.flush()  # the kept batch and the refusal are delivered: the gate opens
    ann.execute("INSERT INTO t VALUES (3)")
    log.flush()
    assert [e.outcome for e in sink.events] == ["ok", "denied", "ok"]
    assert log.failures == 1
    log.close()


def test_a_full_queue_makes_the_caller_write(db):
    sink = MemoryAuditSink()
    log = db.add_hook(AuditLog([sink], background=True, flush_interval=60, max_pending=10))
    ann = db.for_user("ann")
    for _ in range(25):
        ann.fetch_all("SELECT * FROM t")
    assert len(sink.events) == 20  # two full queues written by the caller; five still queued
    log.close()
    assert len(sink.events) == 25


def test_queued_records_are_written_at_interpreter_exit(tmp_path):
    script = textwrap.dedent(
        f"""
        from dbsystem import DatabaseManager, DatabaseType
        from dbsystem.security import AccessControl, AuditLog, JsonLinesAuditSink, Role
        db = DatabaseManager()
        db.create_pool(DatabaseType.SQLITE, "sqlite://")
        acl = AccessControl()
        acl.create_role(Role("reader", grants={{"*": "SELECT"}}))
        acl.assign_role("ann", "reader")
        db.use_access_control(acl)
        db.add_hook(AuditLog([JsonLinesAuditSink({str(tmp_path / "exit.jsonl")!r})],
                             background=True, flush_interval=60))
        for _ in range(40):
            db.for_user("ann").fetch_value("SELECT 1")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert len(_lines(tmp_path / "exit.jsonl")) == 40


def test_bad_background_settings_are_refused():
    with pytest.raises(ConfigurationError, match="flush_interval"):
        AuditLog([], background=True, flush_interval=0)
    with pytest.raises(ConfigurationError, match="max_pending"):
        AuditLog([], background=True, max_pending=0)


def test_the_fast_line_is_the_reference_line_byte_for_byte():
    rng = random.Random(7)
    texts = ["ann", 'b\u00e9"x\n\r\t\\', "\u2028", "", "O'Brien"]
    for seq in range(1, 3000):
        event = AuditEvent(
            time="2026-11-22T03:00:00.000001+00:00",
            user=rng.choice([None, *texts]),
            session=rng.choice([None, *texts]),
            backend=rng.choice(["postgresql", "mock:redis"]),
            action=rng.choice(["select", "delete"]),
            resources=tuple(rng.sample(texts, rng.randint(0, 3))),
            fingerprint=rng.choice(["", "abc123"]),
            outcome=rng.choice(["ok", "error", "denied"]),
            error=rng.choice([None, "ValueError"]),
            rows=rng.choice([None, 0, 7, -1, 10**12]),
            duration_ms=rng.choice([None, 0.123, 1e-07, 12.0, 123456.789]),
            operation=rng.choice([None, "fetch_one"]),
        )
        previous = f"{seq:064x}"
        line, digest = _chain(_record(event), seq, previous)
        assert _chain_fast(event, seq, previous) == (line + "\n", digest)
