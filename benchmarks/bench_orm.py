"""The ORM: loading and saving 1,000 entities, against the raw driver and SQLAlchemy ORM.

For each backend (SQLite ``:memory:``; PostgreSQL when reachable) and in one run:

* load 1,000 rows: the raw driver's dict rows (sqlite3 building dicts, psycopg
  ``dict_row``); dbsystem ``Person.query(db).all()`` (validated pydantic entities);
  SQLAlchemy ORM ``session.scalars(select(Person)).all()``;
* save 1,000 new rows: the raw driver's ``executemany`` in one transaction; dbsystem
  ``insert_many`` of plain dicts; ``Person.save_all`` (entities); SQLAlchemy ORM
  ``add_all`` + ``commit``.

Run: ``python benchmarks/bench_orm.py`` (``--quick``; ``--backends sqlite``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.orm import Entity, Field

N = 1000
STAMP = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


class Person(Entity, table="bench_people"):
    id: int = Field(primary_key=True)
    name: str = Field(max_length=50)
    email: str = Field(max_length=100)
    age: int = 0
    score: float = 0.0


class Base(DeclarativeBase):
    pass


class SAPerson(Base):
    __tablename__ = "bench_people"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(50))
    email: Mapped[str] = mapped_column(sa.String(100))
    age: Mapped[int]
    score: Mapped[float]


def rows(offset: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": offset + i, "name": f"n{i}", "email": f"e{i}@x", "age": i % 90, "score": i / 7}
        for i in range(1, N + 1)
    ]


def median_us(fn: Callable[[], Any], reset: Callable[[], Any] | None, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        if reset is not None:
            reset()
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def bench(kind: str, url: str, rounds: int) -> dict[str, float]:
    db = DatabaseManager()
    db_type = DatabaseType.SQLITE if kind == "sqlite" else DatabaseType.POSTGRES
    db.create_pool(db_type, "sqlite://" if kind == "sqlite" else url)
    db.drop_tables([Person])
    db.create_tables([Person])
    if kind == "sqlite":
        raw: Any = sqlite3.connect(":memory:", isolation_level=None)
        engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
        insert_sql = "INSERT INTO bench_people VALUES (:id, :name, :email, :age, :score)"
    else:
        import psycopg
        from psycopg.rows import dict_row

        raw = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        engine = sa.create_engine("postgresql+psycopg" + url[url.index("://") :])
        insert_sql = (
            "INSERT INTO bench_people_raw VALUES (%(id)s, %(name)s, %(email)s, %(age)s, %(score)s)"
        )
    raw_table = "bench_people" if kind == "sqlite" else "bench_people_raw"
    raw.execute(f"DROP TABLE IF EXISTS {raw_table}")
    raw.execute(
        f"CREATE TABLE {raw_table} (id INTEGER PRIMARY KEY, name VARCHAR(50), "
        "email VARCHAR(100), age INTEGER, score DOUBLE PRECISION)"
    )
    if kind == "sqlite":
        Base.metadata.create_all(engine)
    db.insert_many("bench_people", rows())
    raw.executemany(insert_sql, rows()) if kind == "sqlite" else raw.cursor().executemany(
        insert_sql, rows()
    )
    if kind == "sqlite":
        with Session(engine) as s:
            s.add_all([SAPerson(**r) for r in rows()])
            s.commit()

    def raw_load() -> Any:
        if kind == "sqlite":
            cur = raw.execute("SELECT id, name, email, age, score FROM bench_people")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        return raw.execute(f"SELECT id, name, email, age, score FROM {raw_table}").fetchall()

    def sa_load() -> Any:
        with Session(engine) as s:
            return s.scalars(sa.select(SAPerson)).all()

    def clear_ours() -> None:
        db.execute("DELETE FROM bench_people")

    def clear_raw() -> None:
        raw.execute(f"DELETE FROM {raw_table}")

    def clear_sa() -> None:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM bench_people"))

    def raw_save() -> None:
        data = rows()
        if kind == "sqlite":
            raw.execute("BEGIN")
            raw.executemany(insert_sql, data)
            raw.execute("COMMIT")
        else:
            with raw.transaction():
                raw.cursor().executemany(insert_sql, data)

    # Entities are made before the clock starts: what is timed is saving them.
    made: dict[str, list[Any]] = {}

    def clear_ours_and_make() -> None:
        clear_ours()
        made["ours"] = [Person(**r) for r in rows()]

    def clear_sa_and_make() -> None:
        clear_sa()
        made["sa"] = [SAPerson(**r) for r in rows()]

    def sa_save() -> None:
        with Session(engine) as s:
            s.add_all(made["sa"])
            s.commit()

    results = {
        "load raw": median_us(raw_load, None, rounds),
        "load dbsystem": median_us(lambda: Person.query(db).all(), None, rounds),
        "save raw executemany": median_us(raw_save, clear_raw, rounds),
        "save dbsystem insert_many": median_us(
            lambda: db.insert_many("bench_people", rows()), clear_ours, rounds
        ),
        "save dbsystem save_all": median_us(
            lambda: Person.save_all(db, made["ours"]), clear_ours_and_make, rounds
        ),
    }
    if kind == "sqlite":  # SQLAlchemy ORM shares the database in its own engine here
        results["load sqlalchemy orm"] = median_us(sa_load, None, rounds)
        results["save sqlalchemy orm"] = median_us(sa_save, clear_sa_and_make, rounds)
    db.drop_tables([Person])
    if kind != "sqlite":
        raw.execute(f"DROP TABLE IF EXISTS {raw_table}")
    db.close_all()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    rounds = 5 if args.quick else 15
    for kind in args.backends.split(","):
        result = bench(kind, url, rounds)
        print(f"{kind}: 1,000 entities, microseconds, median of {rounds}")
        for name, value in result.items():
            base = (
                result["load raw"]
                if name.startswith("load")
                else result["save dbsystem insert_many"]
                if "save_all" in name or "orm" in name
                else result["save raw executemany"]
            )
            print(f"  {name:<28}{value:>10.0f}{value / base:>8.2f}x")
        print(
            "  (load ratios vs the raw driver's dict rows; save_all and SQLAlchemy ORM vs "
            "insert_many; insert_many vs executemany)"
        )


if __name__ == "__main__":
    main()
