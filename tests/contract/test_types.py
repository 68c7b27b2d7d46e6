"""The type matrix: what each SQL backend gives back for each Python value written.

PostgreSQL round-trips every type. MySQL and SQLite have no boolean, UUID or (usable) JSON
type and SQLite no date or decimal type: there the value comes back in the form the column
stores, as the table below pins down. docs/TYPES.md shows the same matrix.
"""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest

from dbsystem import DatabaseManager, PoolConfig
from tests.backend_params import SQL_BACKENDS, SQL_TYPES

BACKENDS = SQL_BACKENDS
TYPES = SQL_TYPES

PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
IDENT = uuid.UUID("12345678-1234-5678-1234-567812345678")
NAIVE = datetime.datetime(2024, 2, 29, 13, 14, 15, 123456)
AWARE = datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=PLUS_TWO)
DOC = {"a": [1, 2], "b": {"c": None}}

# column -> (value written, {backend: column type}, {backend: value read back})
MATRIX = {
    "c_int": (2**40, {"sqlite": "INTEGER", "postgres": "BIGINT", "mysql": "BIGINT"}, {"*": 2**40}),
    "c_float": (
        0.1,
        {"sqlite": "REAL", "postgres": "DOUBLE PRECISION", "mysql": "DOUBLE"},
        {"*": 0.1},
    ),
    "c_decimal": (
        decimal.Decimal("12345.678"),
        {"sqlite": "TEXT", "postgres": "NUMERIC(12,3)", "mysql": "DECIMAL(12,3)"},
        {"*": decimal.Decimal("12345.678"), "sqlite": "12345.678"},
    ),
    "c_text": (
        "naïve ✓ 'quoted' \\ %s :name",
        {"sqlite": "TEXT", "postgres": "TEXT", "mysql": "TEXT"},
        {"*": "naïve ✓ 'quoted' \\ %s :name"},
    ),
    "c_bytes": (
        b"\x00\xff\r\n'",
        {"sqlite": "BLOB", "postgres": "BYTEA", "mysql": "BLOB"},
        {"*": b"\x00\xff\r\n'"},
    ),
    "c_bool": (
        True,
        {"sqlite": "BOOLEAN", "postgres": "BOOLEAN", "mysql": "BOOLEAN"},
        {"*": 1, "postgres": True},
    ),
    "c_null": (None, {"sqlite": "TEXT", "postgres": "TEXT", "mysql": "TEXT"}, {"*": None}),
    "c_date": (
        datetime.date(2024, 2, 29),
        {"sqlite": "TEXT", "postgres": "DATE", "mysql": "DATE"},
        {"*": datetime.date(2024, 2, 29), "sqlite": "2024-02-29"},
    ),
    "c_naive": (
        NAIVE,
        {"sqlite": "TEXT", "postgres": "TIMESTAMP", "mysql": "DATETIME(6)"},
        {"*": NAIVE, "sqlite": "2024-02-29 13:14:15.123456"},
    ),
    "c_aware": (
        AWARE,
        {"sqlite": "TEXT", "postgres": "TIMESTAMPTZ", "mysql": "DATETIME(6)"},
        {
            "postgres": AWARE,  # the same instant, in the session's zone
            "mysql": datetime.datetime(2024, 2, 29, 11, 14, 15),  # UTC, no zone
            "sqlite": "2024-02-29 13:14:15+02:00",
        },
    ),
    "c_time": (
        datetime.time(23, 59, 58),
        {"sqlite": "TEXT", "postgres": "TIME", "mysql": "TIME"},
        {"*": datetime.time(23, 59, 58), "sqlite": "23:59:58"},
    ),
    "c_uuid": (
        IDENT,
        {"sqlite": "TEXT", "postgres": "UUID", "mysql": "CHAR(36)"},
        {"*": str(IDENT), "postgres": IDENT},
    ),
    "c_json": (
        DOC,
        {"sqlite": "TEXT", "postgres": "JSONB", "mysql": "JSON"},
        {"*": '{"a":[1,2],"b":{"c":null}}', "postgres": DOC},
    ),
}


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    kind = request.param
    url = (
        f"sqlite:///{tmp_path}/types.db"
        if kind == "sqlite"
        else request.getfixturevalue(f"{kind}_url")
    )
    manager = DatabaseManager()
    manager.create_pool(TYPES[kind], PoolConfig(url=url, max_size=2))
    manager.kind = kind  # type: ignore[attr-defined]
    yield manager
    manager.close_all()


def test_type_matrix(db):
    kind = db.kind
    table = f"types_{uuid.uuid4().hex[:10]}"
    columns = ", ".join(f"{name} {spec[1][kind]}" for name, spec in MATRIX.items())
    db.execute(f"CREATE TABLE {table} ({columns})")
    try:
        values = {name: spec[0] for name, spec in MATRIX.items()}
        placeholders = ", ".join(f":{name}" for name in MATRIX)
        db.execute(f"INSERT INTO {table} ({', '.join(MATRIX)}) VALUES ({placeholders})", values)
        row = db.fetch_one(f"SELECT * FROM {table}")
        for name, (_, _, expected) in MATRIX.items():
            want = expected.get(kind, expected.get("*"))
            got = row[name]
            if isinstance(want, bytes):
                got = bytes(got)
            assert got == want, f"{kind} {name}: {got!r} != {want!r}"
            if want is not None and not isinstance(want, (int, float)) or isinstance(want, bool):
                assert type(got) is type(want), f"{kind} {name}: {type(got)} != {type(want)}"
    finally:
        db.execute(f"DROP TABLE {table}")
