"""Audit sinks under load and attack: the database-table sink on every SQL backend,
completeness under 50 threads (S12), and random tampering of the file (S13)."""

from __future__ import annotations

import json
import random
import threading
import uuid

import pytest

from dbsystem import (
    ConfigurationError,
    DatabaseManager,
    DatabaseType,
    PermissionDenied,
    PoolConfig,
)
from dbsystem.security import (
    AccessControl,
    AuditLog,
    DatabaseAuditSink,
    JsonLinesAuditSink,
    Permission,
    Role,
    verify_audit_file,
)
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

TYPES = SQL_TYPES


def _acl() -> AccessControl:
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"*": Permission.SELECT}))
    acl.assign_role("ann", "reader")
    return acl


@pytest.mark.parametrize("kind", SQL_BACKENDS)
def test_database_sink_records_and_detects_tampering(kind, request, tmp_path):
    url = (
        f"sqlite:///{tmp_path}/a.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_url")
    )
    db = DatabaseManager()
    db.create_pool(TYPES[kind], PoolConfig(url=url, max_size=2))
    db.create_pool(TYPES[kind], PoolConfig(url=url, max_size=1), name="audit")
    table = f"audit_{uuid.uuid4().hex[:8]}"
    db.use_access_control(_acl())
    sink = DatabaseAuditSink(db, db_type=TYPES[kind], name="audit", table=table)
    audit = db.add_hook(AuditLog([sink], all_statements=True))  # not the sink's own statements
    try:
        ann = db.for_user("ann", session_id="s-1")
        assert ann.fetch_value("SELECT 1 AS one") == 1
        with pytest.raises(PermissionDenied):
            ann.execute(f"DELETE FROM {table}")
        db.fetch_value("SELECT 2 AS two")  # the application's own, audited (all_statements)
        rows = db.fetch_all(f"SELECT seq, user_name, action, outcome FROM {table} ORDER BY seq")
        # (the SELECT above ran after its own audit record was written: it is not in it)
        assert [tuple(r.values()) for r in rows] == [
            (1, "ann", "select", "ok"),
            (2, "ann", "delete", "denied"),
            (3, None, "select", "ok"),
        ]
        assert sink.verify() == (True, None, "the chain is intact")
        db.remove_hook(audit)  # one writer per table: the reopened sink continues the chain
        reopened = DatabaseAuditSink(db, db_type=TYPES[kind], name="audit", table=table)
        AuditLog([reopened]).log_access("ann", "s-1", "export", "reports")
        assert reopened.verify()[0] is True

        db.execute(f"UPDATE {table} SET outcome = 'ok' WHERE seq = 2")
        assert sink.verify() == (False, 2, "the record was altered")
        db.execute(f"UPDATE {table} SET outcome = 'denied' WHERE seq = 2")
        db.execute(f"DELETE FROM {table} WHERE seq = 3")
        assert sink.verify() == (False, 3, "a record is missing")
    finally:
        db.remove_hook(audit)
        db.execute(f"DROP TABLE IF EXISTS {table}")
        db.close_all()


@pytest.mark.parametrize("kind", SQL_BACKENDS)
def test_database_sink_checkpoint_catches_a_cut_tail(kind, request, tmp_path):
    url = (
        f"sqlite:///{tmp_path}/a.db" if kind == "sqlite" else request.getfixturevalue(f"{kind}_url")
    )
    db = DatabaseManager()
    db.create_pool(TYPES[kind], PoolConfig(url=url, max_size=2))
    table = f"audit_{uuid.uuid4().hex[:8]}"
    mark = tmp_path / "audit.checkpoint"
    sink = DatabaseAuditSink(
        db, db_type=TYPES[kind], table=table, checkpoint=mark, checkpoint_every=5
    )
    log = AuditLog([sink])
    try:
        for i in range(12):
            log.log_access("ann", "s", "export", f"report-{i}")
        assert json.loads(mark.read_text())["seq"] == 10  # every 5 records
        sink.close()
        assert json.loads(mark.read_text())["seq"] == 12
        assert sink.verify() == (
            True,
            None,
            "the chain is intact and ends at its checkpoint (12)",
        )
        db.execute(f"DELETE FROM {table} WHERE seq > 9")  # a cut tail: the chain alone is intact
        assert sink.verify() == (
            False,
            10,
            "records at the end were removed (the checkpoint is at 12)",
        )
        with pytest.raises(ConfigurationError, match="checkpoint_every"):
            DatabaseAuditSink(db, db_type=TYPES[kind], table=table, checkpoint_every=0)
    finally:
        db.execute(f"DROP TABLE IF EXISTS {table}")
        db.close_all()


def test_s12_exactly_one_record_per_attempt_under_50_threads(tmp_path):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, PoolConfig(url=f"sqlite:///{tmp_path}/t.db", max_size=8))
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    db.use_access_control(_acl())
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path)
    db.add_hook(AuditLog([sink]))
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        session = db.for_user("ann", session_id=f"s-{n}")
        try:
            for i in range(20):
                if i % 4 == 3:
                    with pytest.raises(PermissionDenied):
                        session.execute("DELETE FROM t")
                else:
                    session.fetch_all("SELECT id FROM t WHERE id = :id", {"id": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    db.close_all()
    assert errors == []
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 1001))  # gap-free, monotonic
    per_session = {}
    for r in records:
        per_session.setdefault(r["session"], []).append(r["outcome"])
    assert len(per_session) == 50
    assert all(o.count("ok") == 15 and o.count("denied") == 5 for o in per_session.values())
    assert all("params" not in r for r in records)  # values are never written
    assert verify_audit_file(path)[0] is True


def _mutations(lines: list[str], rng: random.Random) -> tuple[str, list[str]]:
    """One random attack on the file and the lines it leaves."""
    out = list(lines)
    i = rng.randrange(1, len(out) - 1)
    kind = rng.choice(["edit", "delete", "insert", "reorder", "swap key", "truncate"])
    if kind == "edit":
        record = json.loads(out[i])
        record["outcome"] = "ok" if record["outcome"] != "ok" else "denied"
        out[i] = json.dumps(record, separators=(",", ":"))
    elif kind == "delete":
        del out[i]
    elif kind == "insert":
        out.insert(i, out[rng.randrange(len(out))])
    elif kind == "reorder":
        out[i], out[i + 1] = out[i + 1], out[i]
    elif kind == "swap key":
        record = json.loads(out[i])
        out[i] = json.dumps(dict(reversed(list(record.items()))), separators=(",", ":"))
    else:
        out = out[:i]
        return kind, out
    return kind, out


def test_s13_every_random_mutation_is_detected(tmp_path):
    path = tmp_path / "a.jsonl"
    sink = JsonLinesAuditSink(path)
    log = AuditLog([sink])
    for i in range(200):
        log.log_access("ann", f"s-{i % 7}", "read", f"r{i}", success=i % 3 != 0)
    sink.close()  # writes the checkpoint at seq 200
    lines = path.read_text().splitlines()
    checkpoint = sink.checkpoint_path.read_text()
    rng = random.Random(7)
    detected = truncations = cut_unseen_without_checkpoint = 0
    for _ in range(1000):
        kind, mutated = _mutations(lines, rng)
        target = tmp_path / "m.jsonl"
        target.write_text("\n".join(mutated) + "\n")
        (tmp_path / "m.jsonl.checkpoint").write_text(checkpoint)
        ok, line, _ = verify_audit_file(target)
        detected += not ok
        if kind == "truncate":
            truncations += 1
            assert line == len(mutated) + 1  # the first missing record
            # The checkpoint deleted too: reported missing. Told there is none, a cut
            # tail is a valid chain: that is what the checkpoint is for.
            (tmp_path / "m.jsonl.checkpoint").unlink()
            assert verify_audit_file(target)[0] is False
            told = verify_audit_file(target, expect_checkpoint=False)
            cut_unseen_without_checkpoint += told[0]
    assert detected == 1000
    assert truncations > 100
    assert cut_unseen_without_checkpoint == truncations


def test_checkpoint_every_n_records_and_what_a_crash_leaves(tmp_path):
    path = tmp_path / "a.jsonl"
    sink = JsonLinesAuditSink(path, checkpoint_every=10)
    log = AuditLog([sink])
    for i in range(25):
        log.log_access("ann", "s", "read", f"r{i}")
    # No close(): as after a crash, the checkpoint is the last multiple of 10.
    assert json.loads(sink.checkpoint_path.read_text())["seq"] == 20
    lines = path.read_text().splitlines()
    assert verify_audit_file(path)[0]
    path.write_text("\n".join(lines[:21]) + "\n")  # cut after the checkpoint: unseen
    assert verify_audit_file(path)[0]
    path.write_text("\n".join(lines[:19]) + "\n")  # cut before it: caught
    assert verify_audit_file(path) == (
        False, 20, "records at the end were removed (the checkpoint is at 20)"
    )  # fmt: skip
    sink.checkpoint_path.write_text(json.dumps({"seq": 20, "hash": "0" * 64}))
    path.write_text("\n".join(lines) + "\n")
    assert verify_audit_file(path)[:2] == (False, 20)
    sink.checkpoint_path.write_text("not json")
    assert verify_audit_file(path)[0] is False
    assert verify_audit_file(path, checkpoint=tmp_path / "elsewhere")[0] is False
    with pytest.raises(ConfigurationError, match="checkpoint_every"):
        JsonLinesAuditSink(tmp_path / "b.jsonl", checkpoint_every=0)
