"""OpenTelemetry tracing (dbsystem.integrations.opentelemetry) with the SDK's in-memory
exporter, on every backend: SQLite, PostgreSQL, MariaDB, Redis (real servers) and MongoDB
(mongomock; the real server when DBSYSTEM_TEST_MONGO_URL is set)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType, PoolConfig
from dbsystem.errors import ProgrammingError
from dbsystem.integrations.opentelemetry import instrument, is_instrumented, uninstrument

SECRET = "s3cret-value-42"


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _sql_url(kind: str, request: pytest.FixtureRequest, tmp_path) -> tuple[DatabaseType, str]:
    if kind == "sqlite":
        return DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'otel.db'}"
    if kind == "postgres":
        return DatabaseType.POSTGRES, request.getfixturevalue("postgres_url")
    return DatabaseType.MYSQL, request.getfixturevalue("mysql_url")


SQL_KINDS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
SYSTEMS = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mysql"}


def _db_spans(exporter):
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


@contextlib.contextmanager
def _instrumented(db_type, url, provider, **options):
    """A manager with one pool, instrumented; uninstrumented and closed at the end."""
    db = DatabaseManager()
    db.create_pool(db_type, PoolConfig(url=url, **options))
    instrument(db, tracer_provider=provider)
    try:
        yield db
    finally:
        uninstrument(db)
        db.close_all()


@contextlib.contextmanager
def _table(db):
    """A table ``integ_otel_*`` (id, name) of the test's own, dropped at the end."""
    table = f"integ_otel_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40))")
    try:
        yield table
    finally:
        db.execute(f"DROP TABLE IF EXISTS {table}")


def _children_per_parent(spans, parents: dict[str, int]) -> dict[str, int]:
    """How many of ``spans`` each named parent span has."""
    by_id = {span_id: name for name, span_id in parents.items()}
    counts = dict.fromkeys(parents, 0)
    for span in spans:
        counts[by_id[span.parent.span_id]] += 1
    return counts


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_each_sql_statement_is_one_client_span_without_values(kind, request, tmp_path, traced):
    provider, exporter = traced
    db_type, url = _sql_url(kind, request, tmp_path)
    with _instrumented(db_type, url, provider) as db, _table(db) as table:
        db.execute(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", {"id": 1, "name": SECRET})
        exporter.clear()
        rows = db.fetch_all(f"SELECT name FROM {table} WHERE name = '{SECRET}' AND id = 1")
        assert rows == [{"name": SECRET}]
        (span,) = _db_spans(exporter)
        attributes = dict(span.attributes)
        assert span.name == f"SELECT {table}"
        assert attributes["db.system.name"] == SYSTEMS[kind]
        assert attributes["db.operation.name"] == "SELECT"
        assert attributes["db.collection.name"] == table
        assert attributes["db.query.text"] == f"select name from {table} where name = ? and id = ?"
        assert SECRET not in repr(attributes)
        assert span.status.status_code is StatusCode.UNSET
        assert span.end_time >= span.start_time
        if kind != "sqlite":
            assert attributes["server.address"] == "127.0.0.1"
            assert isinstance(attributes["server.port"], int)
            assert attributes["db.namespace"] == db.backend(db_type).url.database


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_placeholders_stay_in_the_query_text_and_parameters_never_appear(
    kind, request, tmp_path, traced
):
    provider, exporter = traced
    db_type, url = _sql_url(kind, request, tmp_path)
    with _instrumented(db_type, url, provider) as db, _table(db) as table:
        exporter.clear()
        db.execute(f"INSERT INTO {table} (id, name) VALUES (:id, :name)", {"id": 7, "name": SECRET})
        (span,) = _db_spans(exporter)
        assert span.attributes["db.query.text"] == (
            f"insert into {table} (id, name) values (:id, :name)"
        )
        assert span.attributes["db.operation.name"] == "INSERT"
        assert SECRET not in repr(dict(span.attributes))


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_failing_statement_has_error_type_and_error_status(kind, request, tmp_path, traced):
    provider, exporter = traced
    db_type, url = _sql_url(kind, request, tmp_path)
    with _instrumented(db_type, url, provider) as db:
        with pytest.raises(ProgrammingError):
            db.fetch_all("SELECT * FROM integ_otel_no_such_table")
    (span,) = _db_spans(exporter)
    assert span.attributes["error.type"] == "dbsystem.errors.ProgrammingError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ProgrammingError"


def test_spans_nest_under_the_callers_span_in_each_thread(tmp_path, traced):
    provider, exporter = traced
    tracer = provider.get_tracer("app")
    parents = {}
    with _instrumented(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 'n.db'}", provider) as db:

        def work(name: str) -> None:
            with tracer.start_as_current_span(name) as span:
                parents[name] = span.get_span_context().span_id
                for _ in range(3):
                    db.fetch_value("SELECT 1")

        threads = [threading.Thread(target=work, args=(f"request-{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    spans = _db_spans(exporter)
    assert len(spans) == 12
    assert _children_per_parent(spans, parents) == dict.fromkeys(parents, 3)


def test_a_transaction_is_begin_statements_commit_under_the_same_parent(tmp_path, traced):
    provider, exporter = traced
    tracer = provider.get_tracer("app")
    with _instrumented(DatabaseType.SQLITE, f"sqlite:///{tmp_path / 't.db'}", provider) as db:
        db.execute("CREATE TABLE integ_t (a INTEGER)")
        exporter.clear()
        with tracer.start_as_current_span("unit-of-work") as parent, db.transaction() as conn:
            conn.execute("INSERT INTO integ_t (a) VALUES (:a)", {"a": 1})
    names = [s.name for s in _db_spans(exporter)]
    assert names == ["BEGIN", "INSERT integ_t", "COMMIT"]
    parent_id = parent.get_span_context().span_id
    assert {s.parent.span_id for s in _db_spans(exporter)} == {parent_id}


def test_a_pool_wait_is_an_event_on_the_next_span(tmp_path, traced):
    provider, exporter = traced
    url = f"sqlite:///{tmp_path / 'w.db'}"
    held = threading.Event()
    with _instrumented(DatabaseType.SQLITE, url, provider, max_size=1) as db:

        def holder() -> None:
            with db.connection() as conn:
                conn.fetch_value("SELECT 1")
                held.set()
                time.sleep(0.3)

        thread = threading.Thread(target=holder)
        thread.start()
        held.wait(5)
        db.fetch_value("SELECT 2")
        thread.join()
    first, second = _db_spans(exporter)  # (both have the shape "select ?")
    assert first.events == ()
    (event,) = second.events
    assert event.name == "dbsystem.pool.wait"
    assert event.attributes["db.client.connection.pool.name"] == "sqlite"
    assert event.attributes["dbsystem.pool.wait.duration"] >= 0.1


def test_an_async_pool_wait_is_an_event_on_the_waiting_tasks_span(tmp_path, traced):
    provider, exporter = traced
    tracer = provider.get_tracer("app")

    async def main() -> None:
        adb = AsyncDatabaseManager()
        await adb.create_pool(
            DatabaseType.SQLITE, PoolConfig(url=f"sqlite:///{tmp_path / 'aw.db'}", max_size=1)
        )
        instrument(adb, tracer_provider=provider)
        held = asyncio.Event()

        async def holder() -> None:
            async with adb.connection() as conn:
                await conn.fetch_value("SELECT 1")
                held.set()
                await asyncio.sleep(0.3)

        async def waiter() -> None:
            await held.wait()
            with tracer.start_as_current_span("waiter"):
                await adb.fetch_value("SELECT 2")

        try:
            await asyncio.gather(holder(), waiter())
        finally:
            uninstrument(adb)
            await adb.close_all()

    asyncio.run(main())
    first, second = _db_spans(exporter)
    assert first.events == ()
    assert [e.name for e in second.events] == ["dbsystem.pool.wait"]
    assert second.events[0].attributes["dbsystem.pool.wait.duration"] >= 0.1


def test_without_instrument_nothing_is_installed_and_uninstrument_removes_it(tmp_path, traced):
    provider, exporter = traced
    db = DatabaseManager()
    pool = db.create_pool(DatabaseType.SQLITE, PoolConfig(url=f"sqlite:///{tmp_path / 'c.db'}"))
    assert not pool.hooks.hooks
    hook = instrument(db, tracer_provider=provider)
    assert is_instrumented(db)
    assert pool.hooks.hooks == (hook,)
    again = instrument(db, tracer_provider=provider)  # replaces, never doubles
    assert pool.hooks.hooks == (again,)
    uninstrument(db)
    assert not pool.hooks.hooks
    assert not is_instrumented(db)
    db.fetch_value("SELECT 1")
    assert exporter.get_finished_spans() == ()
    db.close_all()


def test_redis_commands_show_the_command_and_no_argument(redis_url, traced):
    provider, exporter = traced
    db = DatabaseManager()
    db.create_pool(DatabaseType.REDIS, PoolConfig(url=redis_url))
    key = f"integ:otel:{uuid.uuid4().hex[:8]}"
    instrument(db, tracer_provider=provider)
    try:
        with db.connection(DatabaseType.REDIS) as r:
            r.execute("SET", key, SECRET)
            assert r.execute("GET", key) == SECRET
            r.pipeline([("GET", key), ("DEL", key)])
        spans = _db_spans(exporter)
        assert [s.name for s in spans] == ["SET", "GET", "PIPELINE"]
        assert spans[0].attributes["db.query.text"] == "SET ? ?"
        assert spans[0].attributes["db.system.name"] == "redis"
        assert spans[0].attributes["server.port"] == db.backend(DatabaseType.REDIS).url.port
        assert "db.query.text" not in spans[2].attributes
        assert all(SECRET not in repr(dict(s.attributes)) for s in spans)
        assert all(key not in repr(dict(s.attributes)) for s in spans)
    finally:
        uninstrument(db)
        with db.connection(DatabaseType.REDIS) as r:
            r.execute("DEL", key)
        db.close_all()


def test_mongodb_operations_name_the_command_and_collection_and_mask_values(traced):
    provider, exporter = traced
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, PoolConfig(url="mongodb+mock://localhost/integ"))
    instrument(db, tracer_provider=provider)
    try:
        users = db.query(DatabaseType.MONGODB).collection("users")
        users.insert_one({"name": SECRET, "age": 42}).execute()
        assert users.find({"name": SECRET}).all()[0]["age"] == 42
        insert, find = _db_spans(exporter)
        assert insert.name == "insert users"
        assert find.name == "find users"
        assert find.attributes["db.system.name"] == "mongodb"
        assert find.attributes["db.collection.name"] == "users"
        assert find.attributes["db.query.text"] == '{"find": "users", "filter": {"name": "?"}}'
        assert SECRET not in repr(dict(insert.attributes))
    finally:
        uninstrument(db)
        db.close_all()


def test_mongodb_real_server(mongo_url, traced):
    provider, exporter = traced
    db = DatabaseManager()
    db.create_pool(DatabaseType.MONGODB, PoolConfig(url=mongo_url))
    instrument(db, tracer_provider=provider)
    collection = f"integ_otel_{uuid.uuid4().hex[:8]}"
    try:
        db.query(DatabaseType.MONGODB).collection(collection).insert_one({"a": 1}).execute()
        (span,) = _db_spans(exporter)
        assert span.attributes["db.collection.name"] == collection
    finally:
        uninstrument(db)
        db.query(DatabaseType.MONGODB).collection(collection).delete_many().execute()
        db.close_all()


ASYNC_KINDS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_async_spans_nest_under_each_tasks_span(kind, request, tmp_path, traced):
    provider, exporter = traced
    tracer = provider.get_tracer("app")
    db_type, url = _sql_url(kind, request, tmp_path)

    async def main() -> dict[str, int]:
        adb = AsyncDatabaseManager()
        await adb.create_pool(db_type, PoolConfig(url=url, max_size=2))
        instrument(adb, tracer_provider=provider)
        parents: dict[str, int] = {}

        async def task(name: str) -> None:
            with tracer.start_as_current_span(name) as span:
                parents[name] = span.get_span_context().span_id
                for _ in range(3):
                    await adb.fetch_value("SELECT 1")
                    await asyncio.sleep(0)

        try:
            await asyncio.gather(*(task(f"task-{i}") for i in range(4)))
        finally:
            uninstrument(adb)
            await adb.close_all()
        return parents

    parents = asyncio.run(main())
    spans = _db_spans(exporter)
    assert _children_per_parent(spans, parents) == dict.fromkeys(parents, 3)
    assert {span.attributes["db.system.name"] for span in spans} == {SYSTEMS[kind]}


def test_async_redis_and_mongodb_spans(redis_url, traced):
    provider, exporter = traced
    tracer = provider.get_tracer("app")
    key = f"integ:otel:{uuid.uuid4().hex[:8]}"

    async def main() -> int:
        adb = AsyncDatabaseManager()
        await adb.create_pool(DatabaseType.REDIS, PoolConfig(url=redis_url))
        await adb.create_pool(DatabaseType.MONGODB, PoolConfig(url="mongodb+mock://x/integ"))
        instrument(adb, tracer_provider=provider)
        try:
            with tracer.start_as_current_span("job") as span:
                async with adb.connection(DatabaseType.REDIS) as r:
                    await r.execute("SET", key, SECRET)
                    await r.execute("DEL", key)
                await adb.query(DatabaseType.MONGODB).collection("c").insert_one({"a": 1}).execute()
                return span.get_span_context().span_id
        finally:
            uninstrument(adb)
            await adb.close_all()

    parent = asyncio.run(main())
    spans = _db_spans(exporter)
    assert [s.name for s in spans] == ["SET", "DEL", "insert c"]
    assert {s.parent.span_id for s in spans} == {parent}
