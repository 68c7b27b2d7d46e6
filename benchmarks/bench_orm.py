"""The ORM: loading and saving 1,000 entities, against the raw driver and SQLAlchemy ORM.

The entity has an int key, three text fields, an int and a datetime (issue 24's case). For
each backend (SQLite ``:memory:``; PostgreSQL when reachable) and in one run:

* load 1,000 rows: the raw driver's dict rows (sqlite3 building dicts, psycopg
  ``dict_row``); dbsystem ``Person.query(db).all()`` (entities); SQLAlchemy ORM
  ``session.scalars(select(Person)).all()`` (each backend in its own table);
* save 1,000 new rows: the raw driver's ``executemany`` in one transaction; dbsystem
  ``insert_many`` of plain dicts; ``Person.save_all`` (entities); SQLAlchemy ORM
  ``add_all`` + ``commit``.

The cases run interleaved (one of each per round) and each figure is the median over the
rounds of this process's CPU time (``time.process_time``, the client's cost: the machine
may be shared), with the wall time beside it.

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
    city: str = Field(max_length=50)
    age: int = 0
    created: datetime.datetime = STAMP


class Base(DeclarativeBase):
    pass


class SAPerson(Base):
    __tablename__ = "bench_people_sa"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(50))
    email: Mapped[str] = mapped_column(sa.String(100))
    city: Mapped[str] = mapped_column(sa.String(50))
    age: Mapped[int]
    created: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))


def rows(offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": offset + i,
            "name": f"n{i}",
            "email": f"e{i}@x",
            "city": f"c{i % 50}",
            "age": i % 90,
            "created": STAMP + datetime.timedelta(seconds=i),
        }
        for i in range(1, N + 1)
    ]


def interleaved(
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]], rounds: int
) -> dict[str, tuple[float, float]]:
    """Each case once per round (its reset untimed); median CPU and wall microseconds."""
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    for fn, reset in cases.values():  # warm up
        if reset is not None:
            reset()
        fn()
    for _ in range(rounds):
        for name, (fn, reset) in cases.items():
            if reset is not None:
                reset()
            start_cpu, start = time.process_time(), time.perf_counter()
            fn()
            cpu[name].append((time.process_time() - start_cpu) * 1e6)
            wall[name].append((time.perf_counter() - start) * 1e6)
    return {name: (statistics.median(cpu[name]), statistics.median(wall[name])) for name in cases}


def bench(kind: str, url: str, rounds: int) -> dict[str, tuple[float, float]]:
    db = DatabaseManager()
    db_type = DatabaseType.SQLITE if kind == "sqlite" else DatabaseType.POSTGRES
    db.create_pool(db_type, "sqlite://" if kind == "sqlite" else url)
    db.drop_tables([Person])
    db.create_tables([Person])
    if kind == "sqlite":
        raw: Any = sqlite3.connect(":memory:", isolation_level=None)
        engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
        insert_sql = (
            "INSERT INTO bench_people_raw VALUES (:id, :name, :email, :city, :age, :created)"
        )
        stamp_type = "TEXT"
    else:
        import psycopg
        from psycopg.rows import dict_row

        raw = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        engine = sa.create_engine("postgresql+psycopg" + url[url.index("://") :])
        insert_sql = (
            "INSERT INTO bench_people_raw VALUES "
            "(%(id)s, %(name)s, %(email)s, %(city)s, %(age)s, %(created)s)"
        )
        stamp_type = "TIMESTAMP WITH TIME ZONE"
    raw.execute("DROP TABLE IF EXISTS bench_people_raw")
    raw.execute(
        "CREATE TABLE bench_people_raw (id INTEGER PRIMARY KEY, name VARCHAR(50), "
        f"email VARCHAR(100), city VARCHAR(50), age INTEGER, created {stamp_type})"
    )
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    select_sql = "SELECT id, name, email, city, age, created FROM bench_people_raw"

    def raw_insert(data: list[dict[str, Any]]) -> None:
        if kind == "sqlite":
            text = [{**r, "created": r["created"].isoformat(" ")} for r in data]
            raw.execute("BEGIN")
            raw.executemany(insert_sql, text)
            raw.execute("COMMIT")
        else:
            with raw.transaction():
                raw.cursor().executemany(insert_sql, data)

    def sa_insert(made: list[SAPerson]) -> None:
        with Session(engine) as s:
            s.add_all(made)
            s.commit()

    db.insert_many("bench_people", rows())
    raw_insert(rows())
    sa_insert([SAPerson(**r) for r in rows()])

    def raw_load() -> Any:
        if kind == "sqlite":
            cur = raw.execute(select_sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        return raw.execute(select_sql).fetchall()

    def sa_load() -> Any:
        with Session(engine) as s:
            return s.scalars(sa.select(SAPerson)).all()

    def clear_ours() -> None:
        db.execute("DELETE FROM bench_people")

    def clear_raw() -> None:
        raw.execute("DELETE FROM bench_people_raw")

    # Entities are made before the clock starts: what is timed is saving them.
    made: dict[str, list[Any]] = {}

    def clear_ours_and_make() -> None:
        clear_ours()
        made["ours"] = [Person(**r) for r in rows()]

    def clear_sa_and_make() -> None:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM bench_people_sa"))
        made["sa"] = [SAPerson(**r) for r in rows()]

    loads = interleaved(
        {
            "load raw": (raw_load, None),
            "load dbsystem": (lambda: Person.query(db).all(), None),
            "load sqlalchemy orm": (sa_load, None),
        },
        rounds,
    )
    saves = interleaved(
        {
            "save raw executemany": (lambda: raw_insert(rows()), clear_raw),
            "save dbsystem insert_many": (
                lambda: db.insert_many("bench_people", rows()),
                clear_ours,
            ),
            "save dbsystem save_all": (
                lambda: Person.save_all(db, made["ours"]),
                clear_ours_and_make,
            ),
            "save sqlalchemy orm": (lambda: sa_insert(made["sa"]), clear_sa_and_make),
        },
        max(3, rounds // 3),
    )
    db.drop_tables([Person])
    raw.execute("DROP TABLE IF EXISTS bench_people_raw")
    Base.metadata.drop_all(engine)
    engine.dispose()
    db.close_all()
    return {**loads, **saves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    rounds = 7 if args.quick else 31
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for kind in args.backends.split(","):
        result = bench(kind, url, rounds)
        print(
            f"{kind}: 1,000 entities, microseconds (CPU of this process, and wall), median "
            f"of {rounds} interleaved rounds (saves: {max(3, rounds // 3)})"
        )
        for name, (cpu, wall) in result.items():
            base = (
                result["load raw"]
                if name.startswith("load")
                else result["save dbsystem insert_many"]
                if "save_all" in name or "orm" in name
                else result["save raw executemany"]
            )
            print(
                f"  {name:<28}{cpu:>10.0f}{cpu / base[0]:>8.2f}x   wall {wall:>8.0f}"
                f"{wall / base[1]:>8.2f}x"
            )
        print(
            "  (load ratios vs the raw driver's dict rows; save_all and SQLAlchemy ORM vs "
            "insert_many; insert_many vs executemany)"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
