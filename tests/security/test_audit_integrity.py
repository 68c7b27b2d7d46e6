"""An audit log that proves itself (issue 19): every way of tampering with the file, its
checkpoint or its writer is detected, and the log survives what a crash leaves.

Each tamper test does what an attacker with write access to the files (but without the
key) would do, then asserts the exact verdict of ``verify_audit_file``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import weakref

import pytest

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.errors import ConfigurationError, SecurityError
from dbsystem.security import (
    AuditLog,
    CredentialManager,
    DatabaseAuditSink,
    JsonLinesAuditSink,
    MemoryAuditSink,
    verify_audit_file,
)
from dbsystem.security._records import chain, checkpoint_text, signing_key

KEY_TEXT = "audit-key-0123456789-abcdef"
NEW_KEY_TEXT = "audit-key-rotated-9876543210"


@pytest.fixture
def creds():
    """Keys come from the credential store, as an application would keep them."""
    store = CredentialManager()
    store.set("audit", password=KEY_TEXT)
    store.set("audit-next", password=NEW_KEY_TEXT)
    return store


@pytest.fixture
def key(creds):
    return creds.get("audit")


@pytest.fixture
def new_key(creds):
    return creds.get("audit-next")


def _log(path, n, *, key=None, **sink_options):
    """A log in the documented setup, with ``n`` records written."""
    sink = JsonLinesAuditSink(path, **sink_options)
    log = AuditLog([sink], key=key)
    for i in range(n):
        log.log_access("ann", f"s-{i % 3}", "read", f"r{i}", success=i % 4 != 3)
    return log, sink


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def _cut(path, keep):
    path.write_text("".join(_lines(path)[:keep]))


def _rechain_unkeyed(lines, edit=None):
    """What an attacker without the key can do: rebuild every line's SHA-256 chain (and
    a matching checkpoint), after editing the records with ``edit``."""
    previous, out = "0" * 64, []
    for seq, line in enumerate(lines, start=1):
        record = json.loads(line)
        for name in ("seq", "prev", "hash", "key_id"):
            record.pop(name, None)
        if edit is not None:
            edit(seq, record)
        text, previous = chain(record, seq, previous)
        out.append(text + "\n")
    return out, checkpoint_text(len(out), previous, None)


# -- a cut tail ------------------------------------------------------------------------------


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
@pytest.mark.parametrize("cut", [1, 10, 49])
def test_a_cut_tail_is_detected_with_the_documented_setup(tmp_path, key, keyed, cut):
    # Before: a checkpoint every 100 records and none at close, so up to 99 could go.
    path = tmp_path / "a.jsonl"
    log, _ = _log(path, 50, key=key if keyed else None)  # no flush, no close: still running
    _cut(path, 50 - cut)
    assert verify_audit_file(path, key=key if keyed else None) == (
        False,
        51 - cut,
        "records at the end were removed (the checkpoint is at 50)",
    )
    assert log.failures == 0  # (the log is held, so nothing was written by its collection)


def test_a_cut_tail_with_a_forged_checkpoint_is_detected(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 20, key=key)[1].close()
    lines = _lines(path)
    _cut(path, 15)
    last = json.loads(lines[14])
    # The attacker points the checkpoint at the new last record: unsigned...
    path.with_name("a.jsonl.checkpoint").write_bytes(checkpoint_text(15, last["hash"], None))
    assert verify_audit_file(path, key=key)[:2] == (False, None)
    # ...or signed with a key of their own.
    forged = checkpoint_text(15, last["hash"], signing_key(b"attacker-key-0123456789"))
    path.with_name("a.jsonl.checkpoint").write_bytes(forged)
    assert verify_audit_file(path, key=key) == (
        False,
        None,
        f"the checkpoint {path}.checkpoint is not signed with the chain's key",
    )


# -- the checkpoint deleted, the file emptied or removed -----------------------------------


def test_a_deleted_checkpoint_is_reported(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 5, key=key)[1].close()
    path.with_name("a.jsonl.checkpoint").unlink()
    ok, line, reason = verify_audit_file(path, key=key)
    assert (ok, line) == (False, None)
    assert reason.startswith(f"the checkpoint {path}.checkpoint is missing (pass expect_")
    # Told there is none (a file from before checkpoints), the chain alone is judged.
    assert verify_audit_file(path, key=key, expect_checkpoint=False) == (
        True,
        None,
        "the chain is intact",
    )


def test_an_emptied_file_is_reported(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 20, key=key)[1].close()
    path.write_text("")
    assert verify_audit_file(path, key=key) == (
        False,
        1,
        "the file is empty, but its checkpoint is at 20",
    )
    path.with_name("a.jsonl.checkpoint").unlink()  # both gone
    ok, _, reason = verify_audit_file(path, key=key)
    assert ok is False
    assert "is missing and the file is empty" in reason
    path.unlink()
    assert verify_audit_file(path) == (False, None, f"the audit file {path} does not exist")


def test_an_opened_log_without_records_verifies_empty(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 0, key=key)[0].close()
    assert verify_audit_file(path, key=key) == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (0)",
    )


# -- rewritten without the key -------------------------------------------------------------


def test_a_full_rewrite_without_the_key_is_detected(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 12, key=key)[1].close()
    lines = _lines(path)

    def hide_denials(seq, record):
        record["outcome"] = "ok"

    rewritten, checkpoint = _rechain_unkeyed(lines, hide_denials)
    path.write_text("".join(rewritten))
    path.with_name("a.jsonl.checkpoint").write_bytes(checkpoint)
    assert verify_audit_file(path) == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (12)",
    )
    assert verify_audit_file(path, key=key) == (
        False,
        1,
        "the record is not signed (written, or rewritten, without the key)",
    )


def test_a_rewrite_naming_the_key_without_holding_it_is_detected(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 6, key=key)[1].close()
    key_id = json.loads(_lines(path)[0])["key_id"]
    # The key's id is in every line; SHA-256 over a body that names it is not its HMAC.
    previous, forged = "0" * 64, []
    for seq, line in enumerate(_lines(path), start=1):
        record = {k: v for k, v in json.loads(line).items() if k not in ("seq", "prev", "hash")}
        record.pop("key_id")
        body = (
            "{"
            + ",".join(f'"{k}":{json.dumps(v, separators=(",", ":"))}' for k, v in record.items())
            + f',"key_id":"{key_id}","seq":{seq},"prev":"{previous}"}}'
        )
        previous = hashlib.sha256(body.encode()).hexdigest()
        forged.append(body[:-1] + f',"hash":"{previous}"}}\n')
    path.write_text("".join(forged))
    assert verify_audit_file(path, key=key) == (False, 1, "the record was altered")


def test_a_keyed_file_cannot_be_verified_without_its_key(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _, sink = _log(path, 3, key=key)
    ok, line, reason = verify_audit_file(path)
    assert (ok, line) == (False, 1)
    assert reason == f"the record is signed (key {sink.key_id}): give the key to verify it"
    other = signing_key(b"some-other-key-0123456789")
    ok, line, reason = verify_audit_file(path, key=other)
    assert (ok, line) == (False, 1)
    assert "which was not given" in reason


# -- reorder, edit, insert -----------------------------------------------------------------


def test_reordered_records_are_detected(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 8, key=key)[1].close()
    lines = _lines(path)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_text("".join(lines))
    assert verify_audit_file(path, key=key) == (
        False,
        4,
        "a record before it was removed, inserted or moved",
    )


def test_an_edited_record_is_detected_even_with_its_hash_recomputed(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 8, key=key)[1].close()
    lines = _lines(path)
    record = json.loads(lines[3])
    assert record["outcome"] == "denied"
    path.write_text("".join([*lines[:3], lines[3].replace('"denied"', '"ok"'), *lines[4:]]))
    assert verify_audit_file(path, key=key) == (False, 4, "the record was altered")
    rechained, _ = _rechain_unkeyed(lines, lambda seq, r: r.update(outcome="ok"))
    path.write_text("".join([*lines[:3], rechained[3], *lines[4:]]))
    assert verify_audit_file(path, key=key)[:2] == (False, 4)


def test_a_record_copied_from_another_position_is_detected(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 8, key=key)[1].close()
    lines = _lines(path)
    path.write_text("".join([*lines[:5], lines[2], *lines[5:]]))
    assert verify_audit_file(path, key=key) == (
        False,
        6,
        "a record before it was removed, inserted or moved",
    )


# -- one writer: a second writer, a fork ---------------------------------------------------


def test_a_second_writer_in_this_process_fails_naming_the_file(tmp_path, key):
    path = tmp_path / "a.jsonl"
    log, sink = _log(path, 3, key=key)
    with pytest.raises(ConfigurationError) as info:
        JsonLinesAuditSink(path, key=key)
    assert str(info.value) == (
        f"the audit file {path} already has a writer (a JsonLinesAuditSink in this process or "
        "another): one writer per file, or the chain would fork"
    )
    log.close()  # the lock goes with the file: the next writer continues the chain
    _log(path, 2, key=key)[0].close()
    assert verify_audit_file(path, key=key) == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (5)",
    )


def test_a_second_writer_in_another_process_fails_naming_the_file(tmp_path, key):
    path = tmp_path / "a.jsonl"
    log, _ = _log(path, 3, key=key)
    script = textwrap.dedent(
        f"""
        from dbsystem.security import JsonLinesAuditSink
        JsonLinesAuditSink({str(path)!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"ConfigurationError: the audit file {path} already has a writer" in result.stderr
    log.close()
    assert verify_audit_file(path, key=key)[0] is True


def test_a_forked_chain_is_detected(tmp_path, key):
    # What two writers on one file did before the lock: both continue from the same record.
    path, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _log(path, 10, key=key)[1].close()
    other.write_text(path.read_text())
    other.with_name("b.jsonl.checkpoint").write_bytes(
        path.with_name("a.jsonl.checkpoint").read_bytes()
    )
    _log(path, 1, key=key)[1].close()
    _log(other, 1, key=key)[1].close()
    path.write_text(path.read_text() + _lines(other)[10])
    assert verify_audit_file(path, key=key) == (
        False,
        12,
        "a record before it was removed, inserted or moved",
    )


def test_a_forked_process_cannot_write_the_parents_file(tmp_path, key):
    path = tmp_path / "a.jsonl"
    log, sink = _log(path, 3, key=key)
    pid = os.fork()
    if pid == 0:  # the child: its write must fail, naming the file and the parent
        code = 1
        try:
            log.log_access("child", "s", "read", "x")
        except ConfigurationError as exc:
            code = 0 if str(path) in str(exc) and "forked process" in str(exc) else 2
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.log_access("parent", "s", "read", "y")  # the parent keeps writing
    log.close()
    assert verify_audit_file(path, key=key) == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (4)",
    )


# -- key rotation --------------------------------------------------------------------------


def test_a_key_rotation_is_a_record_and_verify_follows_it(tmp_path, key, new_key):
    path = tmp_path / "a.jsonl"
    log, sink = _log(path, 5, key=key)
    old_id = sink.key_id
    log.rotate_key(new_key)
    new_id = sink.key_id
    assert new_id != old_id
    for i in range(3):
        log.log_access("ann", "s", "read", f"after-{i}")
    log.close()
    records = [json.loads(line) for line in _lines(path)]
    rotation = records[5]
    assert (rotation["backend"], rotation["action"], rotation["resources"]) == (
        "audit",
        "rotate_key",
        [new_id],
    )
    assert [r["key_id"] for r in records] == [old_id] * 6 + [new_id] * 3
    assert verify_audit_file(path, key=new_key, previous_keys=[key]) == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (9)",
    )
    ok, line, reason = verify_audit_file(path, key=new_key)
    assert (ok, line) == (False, 1)
    assert reason == (
        f"signed with key {old_id}, which was not given (pass the keys it rotated from as "
        "previous_keys)"
    )
    ok, line, reason = verify_audit_file(path, key=key, previous_keys=[new_key])
    assert (ok, line) == (False, 9)
    assert reason == f"the chain ends under key {new_id}, not under the current key ({old_id})"
    # A restart continues under the new key; the old one is refused.
    with pytest.raises(ConfigurationError, match=f"continues under key {new_id}"):
        JsonLinesAuditSink(path, key=key)
    _log(path, 1, key=new_key)[1].close()
    assert verify_audit_file(path, key=new_key, previous_keys=[key])[0] is True


def test_after_a_rotation_record_only_the_new_key_may_continue(tmp_path, key, new_key):
    path = tmp_path / "a.jsonl"
    log, sink = _log(path, 2, key=key)
    log.rotate_key(new_key)  # the rotation is the last record when the process stops
    new_id = sink.key_id
    log.close()
    with pytest.raises(ConfigurationError, match=f"continues under key {new_id}"):
        JsonLinesAuditSink(path, key=key)
    _log(path, 1, key=new_key)[1].close()
    assert verify_audit_file(path, key=new_key, previous_keys=[key]) == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (4)",
    )


def test_a_rewrite_with_a_retired_key_is_detected(tmp_path, key, new_key):
    # Someone who obtained the retired key re-signs the whole file with it, no rotation.
    path = tmp_path / "a.jsonl"
    log, _ = _log(path, 4, key=key)
    log.rotate_key(new_key)
    log.log_access("ann", "s", "read", "after")
    log.close()
    forged = tmp_path / "forged.jsonl"
    _log(forged, 6, key=key)[1].close()
    ok, line, reason = verify_audit_file(forged, key=new_key, previous_keys=[key])
    assert (ok, line) == (False, 6)
    assert reason.startswith("the chain ends under key")


def test_a_key_change_without_a_rotation_record_is_detected(tmp_path, key, new_key):
    path, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _log(path, 3, key=key)[1].close()
    _log(other, 4, key=new_key)[1].close()
    path.write_text(path.read_text() + _lines(other)[3])
    ok, line, reason = verify_audit_file(path, key=new_key, previous_keys=[key])
    assert (ok, line) == (False, 4)
    assert "no rotation record named it" in reason


# -- a crash's partial line, a file changed while the writer was away ----------------------


def test_a_partial_last_line_is_repaired_with_a_warning_and_a_record(tmp_path, key, caplog):
    path = tmp_path / "a.jsonl"
    _log(path, 4, key=key)[1].close()
    whole = path.read_text()
    half = _lines(path)[3][:57]
    path.write_text(whole + half)  # as a crash in the middle of a write leaves it
    with caplog.at_level(logging.WARNING, logger="dbsystem.audit"):
        log, _ = _log(path, 1, key=key)  # before: JSONDecodeError, the application down
    log.close()
    (warning,) = caplog.records
    assert warning.levelname == "WARNING"
    assert f"the audit file {path} ended with a partial record (57 bytes" in warning.getMessage()
    records = [json.loads(line) for line in _lines(path)]
    assert len(records) == 6
    repair = records[4]
    digest = hashlib.sha256(half.encode()).hexdigest()
    assert (repair["backend"], repair["action"], repair["resources"]) == (
        "audit",
        "repair",
        ["cut 57 bytes after seq 4", f"sha256:{digest}"],
    )
    assert records[5]["user"] == "ann"
    ok, line, reason = verify_audit_file(path, key=key)
    assert (ok, line) == (True, None)
    assert reason == (
        "the chain is intact and ends at its checkpoint (6); a partial record was cut at "
        f"start-up before seq 5 (cut 57 bytes after seq 4; sha256:{digest})"
    )


def test_a_garbage_last_line_stops_the_writer_with_a_clear_error(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 2, key=key)[1].close()
    path.write_text(path.read_text() + "{not json}\n")
    with pytest.raises(SecurityError) as info:
        JsonLinesAuditSink(path, key=key)
    assert str(info.value).startswith(
        f"the audit file {path} ends with a line that is not an audit record (line 3)"
    )


def test_a_file_cut_while_the_writer_was_away_is_recorded_and_fails(tmp_path, key, caplog):
    path = tmp_path / "a.jsonl"
    _log(path, 10, key=key)[1].close()
    _cut(path, 7)
    with caplog.at_level(logging.ERROR, logger="dbsystem.audit"):
        _log(path, 1, key=key)[1].close()  # the restart records what it found
    assert "does not match its checkpoint" in caplog.text
    notice = json.loads(_lines(path)[7])
    assert (notice["action"], notice["resources"]) == (
        "checkpoint_mismatch",
        ["the checkpoint is at seq 10", "the file ended at seq 7"],
    )
    ok, line, reason = verify_audit_file(path, key=key)
    assert (ok, line) == (False, 8)
    assert reason.startswith("the writer found the file and its checkpoint disagreeing")


def test_a_checkpoint_deleted_while_the_writer_was_away_is_recorded(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 5, key=key)[1].close()
    path.with_name("a.jsonl.checkpoint").unlink()
    _log(path, 1, key=key)[1].close()
    ok, line, reason = verify_audit_file(path, key=key)
    assert (ok, line) == (False, 6)
    assert reason.startswith("the writer found no checkpoint when it reopened the file")
    # A file written before checkpoints existed: told so, it verifies.
    assert verify_audit_file(path, key=key, expect_checkpoint=False)[0] is True


def test_a_sink_opened_with_the_wrong_key_fails_at_start(tmp_path, key):
    path = tmp_path / "a.jsonl"
    _log(path, 2, key=key)[1].close()
    with pytest.raises(ConfigurationError, match="is signed"):
        AuditLog([JsonLinesAuditSink(path)])  # unkeyed on a signed file
    plain = tmp_path / "plain.jsonl"
    _log(plain, 2)[1].close()
    with pytest.raises(ConfigurationError, match="is not signed"):
        AuditLog([JsonLinesAuditSink(plain)], key=key)


# -- checkpoints on flush, close, exit; close closes; no log kept alive --------------------


def _checkpoint_seq(path):
    return json.loads(path.with_name(path.name + ".checkpoint").read_text())["seq"]


def test_flush_and_close_write_the_checkpoint_and_close_closes_the_sinks(tmp_path, key):
    path = tmp_path / "a.jsonl"
    log, sink = _log(path, 10, key=key, checkpoint_every=1000)
    assert _checkpoint_seq(path) == 0
    log.flush()
    assert _checkpoint_seq(path) == 10
    log.log_access("ann", "s", "read", "x")
    log.close()
    assert _checkpoint_seq(path) == 11
    with pytest.raises(SecurityError, match="is closed"):
        sink.write(_event())
    JsonLinesAuditSink(path, key=key).close()  # the lock went with close()


def _event():
    from dbsystem.security import AuditEvent

    return AuditEvent("t", "u", "s", "b", "read", (), "", "ok")


@pytest.mark.parametrize("background", [False, True])
def test_the_checkpoint_is_written_at_interpreter_exit(tmp_path, background):
    # A daemon thread holds the log and the sink to the end, so nothing is collected
    # before exit: only the exit handlers can deliver the queue and write the checkpoint.
    path = tmp_path / "exit.jsonl"
    script = textwrap.dedent(
        f"""
        import threading, time
        from pydantic import SecretStr
        from dbsystem import DatabaseManager, DatabaseType
        from dbsystem.security import AccessControl, AuditLog, JsonLinesAuditSink, Role
        db = DatabaseManager()
        db.create_pool(DatabaseType.SQLITE, "sqlite://")
        acl = AccessControl()
        acl.create_role(Role("reader", grants={{"*": "SELECT"}}))
        acl.assign_role("ann", "reader")
        db.use_access_control(acl)
        sink = JsonLinesAuditSink({str(path)!r}, checkpoint_every=1000)
        log = db.add_hook(
            AuditLog([sink], key=SecretStr({KEY_TEXT!r}), background={background},
                     flush_interval=60)
        )
        for _ in range(7):
            db.for_user("ann").fetch_value("SELECT 1")
        hold = (db, log, sink)
        threading.Thread(target=lambda held=hold: time.sleep(600), daemon=True).start()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert len(_lines(path)) == 7
    assert _checkpoint_seq(path) == 7
    assert verify_audit_file(path, key=signing_key(KEY_TEXT.encode()))[0] is True


def test_the_exit_handler_covers_a_sink_outside_any_log(tmp_path):
    from dbsystem.security._audit_file import _flush_sinks_at_exit

    path = tmp_path / "a.jsonl"
    sink = JsonLinesAuditSink(path, checkpoint_every=1000)
    sink.write_many([_event(), _event(), _event()])
    assert _checkpoint_seq(path) == 0
    _flush_sinks_at_exit()
    assert _checkpoint_seq(path) == 3
    sink.close()


def test_logs_and_sinks_are_not_kept_alive(tmp_path, key):
    path = tmp_path / "a.jsonl"
    sink = JsonLinesAuditSink(path, checkpoint_every=1000)
    log = AuditLog([sink], key=key, background=True, flush_interval=0.01)
    log.log_access("ann", "s", "read", "x")
    writer = log._writer
    log_ref, sink_ref = weakref.ref(log), weakref.ref(sink)
    del log, sink
    gc.collect()
    assert log_ref() is None
    assert sink_ref() is None
    writer.join(timeout=5)
    assert not writer.is_alive()
    JsonLinesAuditSink(path, key=key).close()  # the collected sink released the lock


# -- keys --------------------------------------------------------------------------------


def test_keys_must_come_as_secrets_and_never_print(tmp_path, key):
    with pytest.raises(ConfigurationError, match="a plain str is refused"):
        AuditLog([JsonLinesAuditSink(tmp_path / "a.jsonl")], key=KEY_TEXT)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        JsonLinesAuditSink(tmp_path / "b.jsonl", key=b"short")
    with pytest.raises(ConfigurationError, match="needs a sink that signs"):
        AuditLog([MemoryAuditSink()], key=key)
    signer = signing_key(key)
    assert KEY_TEXT not in repr(signer)
    path = tmp_path / "c.jsonl"
    _log(path, 3, key=key)[1].close()
    assert KEY_TEXT not in path.read_text()
    assert KEY_TEXT not in path.with_name("c.jsonl.checkpoint").read_text()


def test_the_table_sink_signs_rotates_and_detects_a_rewrite(tmp_path, key, new_key):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/audit.db")
    mark = tmp_path / "table.checkpoint"
    sink = DatabaseAuditSink(db, db_type=DatabaseType.SQLITE, checkpoint=mark)
    log = AuditLog([sink], key=key)
    try:
        for i in range(4):
            log.log_access("ann", "s", "read", f"r{i}")
        log.rotate_key(new_key)
        log.log_access("ann", "s", "read", "after")
        assert sink.verify(previous_keys=[key]) == (
            True,
            None,
            "the chain is intact and ends at its checkpoint (6)",
        )
        assert sink.verify()[:2] == (False, 1)  # the first rows need the retired key
        # Rewrite row 2 as an attacker without the key: SHA-256, as the unkeyed chain does.
        row = db.fetch_one("SELECT * FROM dbsystem_audit WHERE seq = 2")
        record = {
            "time": row["time"],
            "user": row["user_name"],
            "session": row["session"],
            "backend": row["backend"],
            "action": row["action"],
            "resources": json.loads(row["resources"]),
            "fingerprint": row["fingerprint"],
            "outcome": "denied",
            "error": row["error"],
            "rows": row["rows_affected"],
            "duration_ms": row["duration_ms"],
            "operation": row["operation"],
        }
        _, forged = chain(record, 2, row["prev"])
        db.execute(
            "UPDATE dbsystem_audit SET outcome = 'denied', hash = :h WHERE seq = 2", {"h": forged}
        )
        assert sink.verify(previous_keys=[key]) == (False, 2, "the record was altered")
        mark.unlink()
        assert sink.verify(previous_keys=[key])[:2] == (False, None)
        log.close()
        # A restart must continue with the key the chain is under.
        with pytest.raises(ConfigurationError, match="is not signed with this key"):
            DatabaseAuditSink(db, db_type=DatabaseType.SQLITE, key=key)
        with pytest.raises(ConfigurationError, match="is signed: give the sink its key"):
            AuditLog([DatabaseAuditSink(db, db_type=DatabaseType.SQLITE)])
        DatabaseAuditSink(db, db_type=DatabaseType.SQLITE, key=new_key).close()
    finally:
        log.close()
        db.close_all()


def test_the_command_line_verifies_signed_files(tmp_path, key, new_key, monkeypatch):
    from typer.testing import CliRunner

    from dbsystem.cli import app

    path = tmp_path / "a.jsonl"
    log, _ = _log(path, 3, key=key)
    log.rotate_key(new_key)
    log.log_access("ann", "s", "read", "after")
    log.close()
    monkeypatch.setenv("AUDIT_KEY", NEW_KEY_TEXT)
    monkeypatch.setenv("OLD_AUDIT_KEY", KEY_TEXT)
    runner = CliRunner()
    args = ["audit", "verify", str(path), "--key-env", "AUDIT_KEY"]
    ok = runner.invoke(app, [*args, "--previous-key-env", "OLD_AUDIT_KEY", "--json"])
    assert ok.exit_code == 0
    assert json.loads(ok.output)["ok"] is True
    missing = runner.invoke(app, args + ["--json"])  # the retired key is needed for 1-4
    assert missing.exit_code == 1
    assert json.loads(missing.output)["line"] == 1
    unsigned = runner.invoke(app, ["audit", "verify", str(path)])
    assert unsigned.exit_code == 1
    assert "give the key" in " ".join(unsigned.output.split())
    absent = runner.invoke(app, ["audit", "verify", str(path), "--key-env", "NO_SUCH_VAR"])
    assert absent.exit_code == 2
    path.with_name("a.jsonl.checkpoint").unlink()
    told = runner.invoke(
        app,
        [*args, "--previous-key-env", "OLD_AUDIT_KEY", "--no-checkpoint"],
    )
    assert told.exit_code == 0
    assert KEY_TEXT not in ok.output + missing.output + unsigned.output + absent.output


@pytest.mark.parametrize("size", [16, 64, 65, 200])
def test_the_precomputed_hmac_is_rfc_2104_hmac(size):
    import hmac

    secret = bytes(i * 7 % 256 for i in range(size))
    signer = signing_key(secret)
    for data in (b"", b"abc", b"x" * 5000):
        assert signer.sign(data) == hmac.new(secret, data, hashlib.sha256).hexdigest()


def test_the_table_after_a_rotation_record_continues_only_under_the_new_key(tmp_path, key, new_key):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/audit.db")
    try:
        log = AuditLog([DatabaseAuditSink(db, db_type=DatabaseType.SQLITE)], key=key)
        log.log_access("ann", "s", "read", "r")
        log.rotate_key(new_key)
        log.close()
        with pytest.raises(ConfigurationError, match="is not signed with this key"):
            DatabaseAuditSink(db, db_type=DatabaseType.SQLITE, key=key)
        sink = DatabaseAuditSink(db, db_type=DatabaseType.SQLITE, key=new_key)
        AuditLog([sink]).log_access("ann", "s", "read", "after")
        assert sink.verify(previous_keys=[key]) == (True, None, "the chain is intact")
    finally:
        db.close_all()
