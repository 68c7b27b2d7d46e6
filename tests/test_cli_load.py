"""``dbsystem load`` streaming its input: flat memory, progress while reading, all or
nothing (Ctrl-C included: a subprocess interrupted mid-load leaves no table), ``--replace``
and ``--upsert KEY`` on every SQL backend, a header-only CSV refused on every backend."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.cli import app
from dbsystem.cli._load import load_rows, open_file
from tests.backend_params import SQL_BACKENDS

runner = CliRunner()


def _csv(path: Path, rows: int, start: int = 0) -> Path:
    with path.open("w") as fh:
        fh.write("id,name,score\n")
        for i in range(start, start + rows):
            fh.write(f"{i},name-{i},{i % 97}.5\n")
    return path


@pytest.fixture(params=SQL_BACKENDS)
def sql_url(request, tmp_path):
    kind = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/load.db"
    return request.getfixturevalue(f"{kind}_url")


def _db(url: str) -> DatabaseManager:
    db = DatabaseManager()
    db.create_pool(DatabaseType.NONE, url)
    return db


def _exists(db: DatabaseManager, table: str) -> bool:
    dialect = db.backend().dialect
    sql = {
        "sqlite": "SELECT COUNT(*) FROM sqlite_master WHERE name = :t",
        "postgresql": "SELECT COUNT(*) FROM pg_tables WHERE tablename = :t",
        "mysql": "SELECT COUNT(*) FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = :t",
    }[dialect]
    return bool(db.fetch_value(sql, {"t": table}))


def test_memory_stays_flat_on_a_long_csv(tmp_path):
    data = _csv(tmp_path / "big.csv", 200_000)
    db = _db(f"sqlite:///{tmp_path}/big.db")
    positions: list[int] = []
    try:
        tracemalloc.start()
        with open_file(data, None) as source:
            loaded = load_rows(
                db,
                source.tables,
                create=True,
                batch=1000,
                key=None,
                advance=lambda n: positions.append(source.position),
            )
            size = source.size
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert loaded == {"big": 200_000}
        assert db.fetch_value("SELECT COUNT(*) FROM big") == 200_000
        # 200,000 rows held at once take over 60 MB as dicts; a batch at a time, a few.
        assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
        # Progress follows the reading: the position grows from batch to batch.
        assert len(positions) == 200
        assert positions[0] < size / 10
        assert positions == sorted(positions)
    finally:
        tracemalloc.stop()
        db.close_all()


def test_the_report_counts_reading_in_the_rate(tmp_path):
    data = _csv(tmp_path / "rate.csv", 5_000)
    result = runner.invoke(app, ["load", f"sqlite:///{tmp_path}/r.db", str(data)])
    assert result.exit_code == 0, result.output
    assert "loaded 5000 row(s)" in result.output
    assert "reading included" in result.output


def test_sigint_mid_load_leaves_no_table(tmp_path):
    data = _csv(tmp_path / "slow.csv", 600_000)
    db_path = tmp_path / "sig.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "dbsystem.cli", "load", f"sqlite:///{db_path}", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wal = Path(f"{db_path}-wal")  # (the pool opens SQLite files in WAL mode)

        def written() -> bool:
            return wal.exists() and wal.stat().st_size > 0

        deadline = time.monotonic() + 60
        while not written() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the log grows with the load's first write: CREATE TABLE
        time.sleep(0.5)  # rows are going in now
        assert process.poll() is None, "the load ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "dropped the table(s) it created: slow" in err
    db = _db(f"sqlite:///{db_path}")
    try:
        assert not _exists(db, "slow")
    finally:
        db.close_all()


def test_a_failed_load_drops_the_table_it_created(sql_url, tmp_path):
    table = f"loadfail_{uuid.uuid4().hex[:8]}"
    data = tmp_path / f"{table}.jsonl"
    lines = [f'{{"id": {i}}}' for i in range(1500)] + ['{"id": 1, "surprise": 2}']
    data.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["load", sql_url, str(data)])
    assert result.exit_code == 2, result.output
    assert "surprise" in result.output
    assert f"dropped the table(s) it created: {table}" in result.output
    db = _db(sql_url)
    try:
        assert not _exists(db, table)
    finally:
        db.close_all()


def test_replace_and_upsert(sql_url, tmp_path):
    table = f"loadmode_{uuid.uuid4().hex[:8]}"
    db = _db(sql_url)
    try:
        first = _csv(tmp_path / f"{table}.csv", 10)
        result = runner.invoke(app, ["load", sql_url, str(first), "--upsert", "id"])
        assert result.exit_code == 0, result.output
        assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 10
        # ids 5..14: 5 updated, 5 new
        (tmp_path / "more.csv").write_text(
            "id,name,score\n" + "".join(f"{i},new-{i},1.5\n" for i in range(5, 15))
        )
        result = runner.invoke(
            app, ["load", sql_url, str(tmp_path / "more.csv"), "--table", table, "--upsert", "id"]
        )
        assert result.exit_code == 0, result.output
        assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 15
        assert db.fetch_value(f"SELECT name FROM {table} WHERE id = 7") == "new-7"
        assert db.fetch_value(f"SELECT name FROM {table} WHERE id = 2") == "name-2"
        # --replace: the table holds the file's rows, and only them
        (tmp_path / "few.csv").write_text("id,name,score\n100,x,2.5\n101,y,3.5\n")
        result = runner.invoke(
            app, ["load", sql_url, str(tmp_path / "few.csv"), "--table", table, "--replace"]
        )
        assert result.exit_code == 0, result.output
        assert [r["id"] for r in db.fetch_all(f"SELECT id FROM {table} ORDER BY id")] == [100, 101]
        # a failed --replace keeps the rows it would have replaced
        (tmp_path / "bad.csv").write_text("id,name,score\n1,a,1.5\n1,b,1.5\n")
        result = runner.invoke(
            app, ["load", sql_url, str(tmp_path / "bad.csv"), "--table", table, "--replace"]
        )
        assert result.exit_code == 1, result.output
        assert db.fetch_value(f"SELECT COUNT(*) FROM {table}") == 2
    finally:
        db.execute(f"DROP TABLE IF EXISTS {table}")
        db.close_all()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{tmp}/h.db",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
        "mongodb+mock://load",
        "redis+mock://",
    ],
)
def test_a_header_only_csv_is_refused_on_every_backend(url, request, tmp_path):
    if url in ("postgres", "mysql"):
        url = request.getfixturevalue(f"{url}_url")
    url = url.format(tmp=tmp_path)
    data = tmp_path / "headeronly.csv"
    data.write_text("id,name\n")
    result = runner.invoke(app, ["load", url, str(data)])
    assert result.exit_code == 2, result.output
    assert "headeronly has no rows (a CSV header alone?)" in result.output


def test_replace_and_upsert_are_for_sql_tables(tmp_path):
    data = _csv(tmp_path / "docs.csv", 3)
    result = runner.invoke(app, ["load", "mongodb+mock://x", str(data), "--replace"])
    assert result.exit_code == 2
    assert "SQL tables only" in result.output
    result = runner.invoke(app, ["load", f"sqlite:///{tmp_path}/u.db", str(data), "--upsert", "x"])
    assert result.exit_code == 2
    assert "has no such column" in result.output
