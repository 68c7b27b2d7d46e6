"""The audit log (records, hash chain, tamper detection) and credentials (argon2, files)."""

from __future__ import annotations

import json
import logging
import os

import argon2
import pytest
from typer.testing import CliRunner

from dbsystem import (
    ConfigurationError,
    ConnectionFailed,
    DatabaseManager,
    DatabaseType,
    PermissionDenied,
    PoolConfig,
    SecurityError,
)
from dbsystem.cli import app
from dbsystem.security import (
    MAX_PASSWORD_LENGTH,
    AccessControl,
    AuditLog,
    CredentialManager,
    JsonLinesAuditSink,
    LoggingAuditSink,
    MemoryAuditSink,
    Permission,
    Role,
    hash_password,
    password_needs_rehash,
    verify_audit_file,
    verify_password,
)

SENTINEL = "Sentinel-Pa55-9f3k"


@pytest.fixture
def audited(tmp_path):
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"*": Permission.SELECT}))
    acl.assign_role("ann", "reader")
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, secret TEXT)")
    db.execute("INSERT INTO t VALUES (1, 'top')")
    db.use_access_control(acl)
    memory = MemoryAuditSink()
    sink = JsonLinesAuditSink(tmp_path / "audit.jsonl")
    db.add_hook(AuditLog([memory, sink]))
    yield db, memory, tmp_path / "audit.jsonl"
    sink.close()
    db.close_all()


def test_every_session_statement_and_decision_is_recorded(audited):
    db, memory, path = audited
    session = db.for_user("ann", session_id="s-1")
    assert session.fetch_all("SELECT id FROM t WHERE secret = :s", {"s": SENTINEL}) == []
    with pytest.raises(PermissionDenied):
        session.execute("DELETE FROM t")
    db.fetch_all("SELECT * FROM t")  # the application's own access: not a user's
    ok, denied = memory.events
    assert (ok.user, ok.session, ok.action, ok.resources, ok.outcome, ok.rows) == (
        "ann",
        "s-1",
        "select",
        ("t",),
        "ok",
        0,
    )
    assert ok.duration_ms is not None and len(ok.fingerprint) == 24
    assert (denied.action, denied.outcome, denied.error) == ("delete", "denied", "PermissionDenied")
    text = path.read_text()
    assert SENTINEL not in text and text.count("\n") == 2  # values are never written


def test_the_chain_detects_alteration_removal_and_reordering(audited, tmp_path):
    db, _, path = audited
    session = db.for_user("ann")
    for _ in range(4):
        session.fetch_all("SELECT * FROM t")
    assert verify_audit_file(path) == (
        True,
        None,
        "the chain is intact and ends at its checkpoint (4)",
    )
    lines = path.read_text().splitlines(keepends=True)
    altered = tmp_path / "altered.jsonl"
    altered.write_text("".join(lines[:2] + [lines[2].replace('"ok"', '"denied"')] + lines[3:]))
    assert verify_audit_file(altered)[:2] == (False, 3)
    removed = tmp_path / "removed.jsonl"
    removed.write_text("".join(lines[:1] + lines[2:]))
    assert verify_audit_file(removed)[:2] == (False, 2)
    moved = tmp_path / "moved.jsonl"
    moved.write_text("".join([lines[1], lines[0], *lines[2:]]))
    assert verify_audit_file(moved)[:2] == (False, 1)
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "verify", str(path)]).exit_code == 0
    result = runner.invoke(app, ["audit", "verify", str(altered)])
    assert result.exit_code == 1 and "line 3" in " ".join(result.output.split())
    result = runner.invoke(app, ["audit", "verify", str(altered), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["line"] == 3


def test_the_chain_continues_across_reopening(tmp_path):
    path = tmp_path / "a.jsonl"
    for _ in range(2):
        sink = JsonLinesAuditSink(path)
        AuditLog([sink]).log_access("u", "s", "login", "app", success=True)
        sink.close()
    assert verify_audit_file(path)[0] is True


def test_application_events_and_logging_sink(caplog):
    with caplog.at_level(logging.INFO, logger="dbsystem.audit"):
        event = AuditLog([LoggingAuditSink()]).log_access(
            "ann", "s-9", "export", "reports", statement="SELECT 1", success=False, error="quota"
        )
    assert event.outcome == "denied" and json.loads(caplog.records[0].message)["error"] == "quota"


def test_a_failing_sink_fails_the_call(audited):
    db, _, _ = audited

    class Broken:
        def write(self, event):
            raise OSError("disk full")

    db.add_hook(AuditLog([Broken()]))
    with pytest.raises(OSError, match="disk full"):
        db.for_user("ann").fetch_all("SELECT * FROM t")


class FlakySink:
    def __init__(self) -> None:
        self.broken = False
        self.events: list = []

    def write(self, event) -> None:
        if self.broken:
            raise OSError("disk full")
        self.events.append(event)


def test_a_failing_sink_closes_the_gate_until_it_recovers(tmp_path):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, f"sqlite:///{tmp_path}/g.db")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    acl = AccessControl()
    acl.create_role(Role("writer", grants={"t": "SELECT|INSERT"}))
    acl.assign_role("ann", "writer")
    db.use_access_control(acl)
    sink = FlakySink()
    audit = db.add_hook(AuditLog([sink]))
    ann = db.for_user("ann")
    ann.execute("INSERT INTO t VALUES (1)")
    sink.broken = True
    with pytest.raises(OSError, match="disk full"):  # it ran: the caller learns it is unaudited
        ann.execute("INSERT INTO t VALUES (2)")
    for i in (3, 4):
        with pytest.raises(SecurityError, match="refused until"):
            ann.execute(f"INSERT INTO t VALUES ({i})")
    assert db.fetch_value("SELECT COUNT(*) FROM t") == 2  # nothing ran unaudited after that
    assert db.fetch_value("SELECT 1") == 1  # the application's own access is not audited
    sink.broken = False
    with pytest.raises(SecurityError):  # this refusal is recorded: the gate opens again
        ann.execute("INSERT INTO t VALUES (5)")
    ann.execute("INSERT INTO t VALUES (6)")
    assert audit.failures == 3
    assert [e.outcome for e in sink.events] == ["ok", "denied", "ok"]
    db.close_all()


def test_fail_open_lets_statements_through_and_counts_failures(tmp_path, caplog):
    db = DatabaseManager()
    db.create_pool(DatabaseType.SQLITE, "sqlite://")
    acl = AccessControl()
    acl.create_role(Role("reader", grants={"*": Permission.SELECT}))
    acl.assign_role("ann", "reader")
    db.use_access_control(acl)
    sink = FlakySink()
    sink.broken = True
    audit = db.add_hook(AuditLog([sink], fail_open=True))
    with caplog.at_level(logging.WARNING, logger="dbsystem.audit"):
        assert [db.for_user("ann").fetch_value("SELECT 1") for _ in range(3)] == [1, 1, 1]
    assert audit.failures == 3 and "audit record lost: OSError" in caplog.text
    db.close_all()


def test_password_hashing():
    hashed = hash_password(SENTINEL)
    assert hashed.startswith("$argon2id$") and SENTINEL not in hashed
    assert verify_password(hashed, SENTINEL)
    assert not verify_password(hashed, SENTINEL + "x")
    assert not verify_password("not a hash", SENTINEL)
    assert hash_password(SENTINEL) != hashed  # salted
    assert ",t=3," in hashed and "m=65536" in hashed  # argon2id, 64 MiB: above OWASP's floor
    assert not password_needs_rehash(hashed)
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192).hash(SENTINEL)
    assert verify_password(weak, SENTINEL) and password_needs_rehash(weak)
    with pytest.raises(SecurityError, match="longer than"):
        hash_password("x" * (MAX_PASSWORD_LENGTH + 1))
    assert not verify_password(hashed, "x" * (MAX_PASSWORD_LENGTH + 1))


def test_credentials_from_files_code_and_environment(tmp_path, monkeypatch):
    creds = CredentialManager()
    path = tmp_path / "creds.toml"
    path.write_text(f'[db-main]\nusername = "app"\npassword = "{SENTINEL}"\n')
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        creds.load_file(path)
    os.chmod(path, 0o600)
    assert creds.load_file(path) == ["db-main"]
    assert creds.get("db-main").password.get_secret_value() == SENTINEL
    assert SENTINEL not in repr(creds.get("db-main")) and SENTINEL not in str(creds.get("db-main"))
    monkeypatch.setenv("MY_DB_PW", SENTINEL)
    creds.load_env("from-env", password_var="MY_DB_PW")
    assert creds.get("from-env").password.get_secret_value() == SENTINEL
    with pytest.raises(ConfigurationError, match="no credential"):
        creds.get("missing")
    secret_file = tmp_path / "pw"
    secret_file.write_text(SENTINEL + "\n")
    monkeypatch.setenv("OTHER_PW_FILE", str(secret_file))
    creds.load_env("from-file", password_var="OTHER_PW")  # Docker/Kubernetes secrets
    assert creds.get("from-file").password.get_secret_value() == SENTINEL
    monkeypatch.setenv("OTHER_PW_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match="OTHER_PW_FILE") as info:
        creds.load_env("broken", password_var="OTHER_PW")
    assert SENTINEL not in str(info.value)
    with pytest.raises(ConfigurationError, match=r"\$UNSET_PW nor \$UNSET_PW_FILE"):
        creds.load_env("unset", password_var="UNSET_PW")


def test_mysql_charsets_that_can_hide_a_backslash_are_refused():
    for charset in ("gbk", "SJIS", "big5", "cp932", "gb18030"):
        with pytest.raises(ConfigurationError, match="use utf8mb4") as info:
            DatabaseManager().create_pool(
                DatabaseType.MYSQL, f"mysql://app:{SENTINEL}@127.0.0.1:1/db?charset={charset}"
            )
        assert SENTINEL not in str(info.value)


def test_a_pool_takes_its_password_from_a_named_credential():
    CredentialManager.instance().set("pg-test", password=SENTINEL, username="someone")
    db = DatabaseManager()
    with pytest.raises(ConnectionFailed) as info:
        db.create_pool(
            DatabaseType.POSTGRES,
            PoolConfig(url="postgresql://127.0.0.1:1/db", credential="pg-test", connect_timeout=1),
        )
    assert SENTINEL not in str(info.value) and "someone" in str(info.value)
    CredentialManager.instance().remove("pg-test")


def test_the_password_never_leaks(caplog):
    url = f"postgresql://app:{SENTINEL}@127.0.0.1:1/db"
    texts = [
        repr(PoolConfig(url=url)),
        str(PoolConfig(url=url).url),
        PoolConfig(url=url).model_dump_json(),
        PoolConfig(url=url).describe(),
    ]
    bad_urls = (
        url,
        url + "?max_size=-1",
        url.replace(":1/", ":x/"),
        f"mysql://app:{SENTINEL}@127.0.0.1:1/db",
        f"redis://:{SENTINEL}@127.0.0.1:1/0",
        f"mongodb://app:{SENTINEL}@127.0.0.1:1/db",
        f"nosuch://app:{SENTINEL}@h/db",
    )
    with caplog.at_level(logging.DEBUG):
        for bad in bad_urls:
            with pytest.raises(Exception) as info:
                DatabaseManager().create_pool(
                    DatabaseType.NONE, PoolConfig(url=bad, connect_timeout=0.5)
                )
            texts += [str(info.value), repr(info.value)]
    texts.append(caplog.text)
    assert len(texts) == 4 + 2 * len(bad_urls) + 1
    assert [t for t in texts if SENTINEL in t] == []


def _leaks(texts: list[str]) -> list[str]:
    import base64
    import urllib.parse

    forms = {
        SENTINEL,
        urllib.parse.quote(SENTINEL, safe=""),
        base64.b64encode(SENTINEL.encode()).decode(),
    }
    return [t for t in texts for form in forms if form in t]


def _error_texts(exc: BaseException) -> list[str]:
    import traceback

    return ["".join(traceback.format_exception(exc)), str(exc), repr(exc)]


@pytest.mark.postgres
def test_no_leak_through_failed_statements_pool_timeouts_and_logs(postgres_url, caplog):
    # Trust authentication accepts any password: the sentinel rides along in the URL.
    url = postgres_url.replace("://root@", f"://root:{SENTINEL}@")
    assert SENTINEL in url
    db = DatabaseManager()
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        pool = db.create_pool(
            DatabaseType.POSTGRES,
            PoolConfig(url=url, max_size=1, acquire_timeout=0.2, echo=True),
        )
        with pytest.raises(Exception) as failed:
            db.execute("SELECT * FROM no_such_table WHERE x = :x", {"x": SENTINEL + "-param"})
        texts += _error_texts(failed.value)
        with db.connection(DatabaseType.POSTGRES):
            with pytest.raises(Exception) as timeout:
                db.connection(DatabaseType.POSTGRES, timeout=0.1)
        texts += _error_texts(timeout.value)
        texts += [repr(db), repr(pool), str(pool.stats()), repr(pool.stats())]
        db.close_all()
    texts.append(caplog.text)
    assert type(timeout.value).__name__ == "PoolTimeout"
    assert _leaks(texts) == []


@pytest.mark.mysql
def test_no_leak_when_authentication_fails(mysql_url, caplog):
    url = mysql_url.replace("://root@", f"://root:{SENTINEL}@")  # root has no password here
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionFailed) as info:
        DatabaseManager().create_pool(DatabaseType.MYSQL, url)
    assert "Access denied" in str(info.value)
    assert _leaks([*_error_texts(info.value), caplog.text]) == []


def test_l8_a_burst_of_logins_is_bounded_in_memory():
    """50 verifications at once: at most MAX_CONCURRENT_HASHES run together (64 MiB each)."""
    import threading
    import time

    from dbsystem.security import MAX_CONCURRENT_HASHES

    def high_water_mib() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    hashed = hash_password(SENTINEL)
    before = high_water_mib()
    latencies: list[float] = []
    start = threading.Barrier(50)

    def login() -> None:
        start.wait()
        began = time.perf_counter()
        assert verify_password(hashed, SENTINEL)
        latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=login) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(latencies) == 50
    growth = high_water_mib() - before
    assert growth < (MAX_CONCURRENT_HASHES + 2) * 64, f"peak grew {growth:.0f} MiB"
    latencies.sort()
    assert latencies[48] < 30  # the p99 a login waits in the burst (about 2-4 s here)


@pytest.mark.parametrize("kind", ["sqlite", "mongo"])
def test_a_row_policy_refusal_is_recorded_as_denied(kind):
    # A row policy refuses in the builder, before any hook would run the statement: the
    # refusal still reaches the audit log (it was missing from it before).
    from dbsystem.query import col

    acl = AccessControl()
    acl.create_role(
        Role(
            "tenant",
            grants={"orders": Permission.SELECT | Permission.INSERT},
            policies={"orders": lambda ctx: col("tenant") == ctx.attrs["tenant"]},
        )
    )
    acl.assign_role("tess", "tenant")
    db = DatabaseManager()
    db_type = DatabaseType.SQLITE if kind == "sqlite" else DatabaseType.MONGODB
    db.create_pool(db_type, "sqlite://" if kind == "sqlite" else "mongodb+mock://audit")
    if kind == "sqlite":
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, tenant INTEGER)")
    db.use_access_control(acl)
    memory = MemoryAuditSink()
    db.add_hook(AuditLog([memory]))
    try:
        tess = db.for_user("tess", session_id="s-9", attrs={"tenant": 1})
        with pytest.raises(PermissionDenied, match="row policy"):
            if kind == "sqlite":
                tess.query(db_type).insert_into("orders").values({"id": 1, "tenant": 2}).execute()
            else:
                tess.query(db_type).collection("orders").insert_one({"tenant": 2}).execute()
        (event,) = memory.events
        assert (event.user, event.session, event.action, event.outcome) == (
            "tess",
            "s-9",
            "insert",
            "denied",
        )
        assert event.resources == ("orders",) and event.error == "PermissionDenied"
    finally:
        db.close_all()
