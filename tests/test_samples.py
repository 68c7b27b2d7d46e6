"""Every sample runs and prints what it promises: with no setup (a SQLite file, mock Redis
and MongoDB), and against the real servers when their URLs are configured (CI)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLES = sorted(p.stem for p in (ROOT / "samples").glob("*.py") if not p.stem.startswith("_"))


def run_sample(name: str, *args: str, code: int = 0) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBSYSTEM_")}
    result = subprocess.run(
        [sys.executable, "-m", f"samples.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == code, result.stderr
    return result.stdout + result.stderr


def test_every_sample_has_its_checks():
    unchecked = [
        name for name in SAMPLES if name != "__main__" and f"check_{name}" not in globals()
    ]
    assert not unchecked


def test_python_m_samples_lists_them():
    out = subprocess.run(
        [sys.executable, "-m", "samples"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in SAMPLES:
        if name != "__main__":
            assert f"python -m samples.{name}" in out


def check_basic_usage(out: str) -> None:
    assert "inserted 1 note" in out and "refused duplicate title (IntegrityError" in out
    assert "{'id': 4, 'title': 'note 4'}" in out and "PoolStats(" in out


def check_connection_pool_demo(out: str) -> None:
    assert "20 threads ran 500 inserts" in out
    assert re.search(r"stats: total=4 active=0 idle=4 acquired=50\d created=4 timeouts=0", out)
    assert "holders, longest first: report-0, report-1, report-2, report-3" in out
    assert "fifth caller: PoolTimeout after 0.2 s" in out and "after release: active=0" in out


def check_query_builders(out: str) -> None:
    assert out.count("engineering: 2 people, average 115") == 2  # SQL and MongoDB agree
    assert out.count("Linus now earns 100") == 2
    assert "params {'p0': True, 'p1': 2}" in out
    assert "top earners: Grace 130, Ada 120, Alan 110" in out
    assert "['EXEC']] -> [1, True]" in out


def check_multi_database(out: str) -> None:
    assert "first pass: 100 misses" in out and "second pass: 100 hits" in out
    assert "user 7 before: free" in out and "user 7 after the change: pro" in out


def check_orm_examples(out: str) -> None:
    assert "--- mongodb, the same classes" in out  # the same checks hold on both backends
    assert out.count("Stanislaw Lem (1921): Solaris, The Cyberiad, Fiasco") == 2
    assert out.count("a stale copy was refused (optimistic locking): ConflictError") == 2
    assert out.count("price of A1 now 120, before the raise 100") == 2
    assert out.count("A1 has 2 versions: [100, 120]") == 2
    assert "2 CreateTable operations" in out and "up: ['0001']" in out and "down: ['0001']" in out


def check_enterprise_features(out: str) -> None:
    assert "ann deletes: PermissionDenied" in out and "carl updates order 1: allowed" in out
    assert "tess (tenant 1) sees orders [1, 3, 5]" in out
    assert "tess writes a row of tenant 0: PermissionDenied" in out
    assert (
        "audit: 5 records: ann:select:ok, ann:delete:denied, carl:update:ok, tess:select:ok, "
        "tess:insert:denied" in out
    )
    assert "verify: ok=True" in out and "ok=False, line 2: the record was altered" in out
    assert "s3cr3t-pw" not in out and "repr hides it too: True" in out
    assert "verify right password: True" in out and "verify wrong password: False" in out


def check_monitoring_examples(out: str) -> None:
    assert "502 statements, 0 errors" in out
    assert "alert: error_rate firing" in out and "alert: error_rate resolved" in out
    assert "health: " in out and " up" in out
    assert "dbsystem_queries_total{" in out and "GET /health: HTTP 200 ok" in out


def check_async_examples(out: str) -> None:
    assert "50 concurrent inserts on 5 connections" in out
    assert "the transaction rolled back: task 1 done = False" in out
    assert "first open tasks: [1, 2, 4]" in out and "ORM: 16 tasks done" in out
    assert "Redis: hello" in out and "connections lent out now: 0" in out


def check_enterprise_example(out: str) -> None:
    assert "pool: 10 to 100 connections" in out
    assert "5 threads inserted 500 users" in out
    rows = re.findall(r"^  (\w+) +(\d+) +([\d,]+) +([\d,]+)$", out, re.MULTILINE)
    assert len(rows) >= 3 and all(int(n) > 80 for _, n, _, _ in rows)
    averages = [float(a.replace(",", "")) for _, _, a, _ in rows]
    assert averages == sorted(averages, reverse=True)  # ORDER BY avg_salary DESC
    assert re.search(r"performance: 50\d statements, 0 errors", out)
    assert re.search(r"pool stats: total=\d+ active=0 .* timeouts=0", out)


def check_postgres_advanced(out: str) -> None:
    assert "JSONB  A1 attrs -> {'color': 'red', 'watts': 40} (a dict)" in out
    assert "ARRAY  tagged office -> [{'sku': 'B2', 'tags': ['home', 'office']}]" in out
    assert "CTE    the tree under 'home' -> ['furniture', 'home', 'lamps', 'lighting']" in out
    assert "{'sku': 'A1', 'stock': 12}" in out and "rows -> 3" in out
    assert "NOTIFY UPDATE C3 (stock 3)" in out and "NOTIFY DELETE B2 (stock 0)" in out


EMBEDDED = [s for s in SAMPLES if s not in ("postgres_advanced", "__main__")]


@pytest.mark.parametrize("name", EMBEDDED)
def test_sample__embedded(name):
    globals()[f"check_{name}"](run_sample(name))


# The same samples on the real servers: SQL on PostgreSQL and MariaDB, with real Redis.
SQL_SAMPLES = EMBEDDED


SERVERS = [
    pytest.param("postgres_url", marks=[pytest.mark.postgres, pytest.mark.redis], id="postgres"),
    pytest.param("mysql_url", marks=[pytest.mark.mysql, pytest.mark.redis], id="mysql"),
]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("name", SQL_SAMPLES)
def test_sample__on_servers(name, server, request, redis_url):
    sql_url = request.getfixturevalue(server)
    _drop_leftovers(sql_url)
    globals()[f"check_{name}"](run_sample(name, *_flags(name, sql_url, redis_url)))


LEFTOVERS = (  # what the samples left in a test database before they dropped their tables
    "sample_books", "sample_authors", "sample_prices_history", "sample_prices",
    "dbsystem_migrations", "sample_products", "sample_categories",
)  # fmt: skip


def _drop_leftovers(sql_url: str) -> None:
    """The samples refuse to run where their tables exist; older ones left theirs in the
    test database (ours to clear)."""
    from dbsystem import DatabaseManager
    from samples._common import database_type

    db = DatabaseManager()
    db.create_pool(database_type(sql_url), sql_url)
    try:
        for table in LEFTOVERS:
            db.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        db.close_all()


def _flags(name: str, sql_url: str, redis_url: str) -> list[str]:
    source = (ROOT / "samples" / f"{name}.py").read_text()
    flags = ["--sql-url", sql_url]
    if '"redis"' in source:
        flags += ["--redis-url", redis_url]
    return flags


@pytest.mark.postgres
def test_postgres_advanced(postgres_url):
    _drop_leftovers(postgres_url)
    check_postgres_advanced(run_sample("postgres_advanced", "--postgres-url", postgres_url))


def test_postgres_advanced__says_what_it_needs():
    out = run_sample("postgres_advanced", code=2)
    assert "needs postgres: pass --postgres-url URL or set DBSYSTEM_POSTGRES_URL" in out


def test_samples__read_urls_from_the_environment(tmp_path):
    env = {**os.environ, "DBSYSTEM_SQL_URL": f"sqlite:///{tmp_path}/from_env.db"}
    subprocess.run(
        [sys.executable, "-m", "samples.basic_usage"], cwd=ROOT, env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    assert (tmp_path / "from_env.db").exists()
