"""The cost of a two-phase commit across PostgreSQL and MariaDB, one row written on each.

Cases, interleaved over rounds, median and p99 reported (ms per transaction):

* ``raw drivers, 2PC by hand``: psycopg and pymysql running BEGIN / XA START, the insert,
  PREPARE TRANSACTION / XA END + XA PREPARE, COMMIT PREPARED / XA COMMIT (no log: not
  crash-safe, the floor of the protocol);
* ``SQLAlchemy Core, begin_twophase``: both engines' ``begin_twophase()``, prepared then
  committed by the caller (also without a coordinator log);
* ``dbsystem TransactionCoordinator``: the same, with the decision fsynced to the log;
* ``dbsystem, two local transactions``: no atomicity across the two, for scale.

Run: ``python benchmarks/bench_2pc.py`` (``--quick``; ``DBSYSTEM_TEST_POSTGRES_URL`` and
``DBSYSTEM_TEST_MYSQL_URL``; PostgreSQL needs ``max_prepared_transactions`` > 0).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

import psycopg
import pymysql
from sqlalchemy import create_engine, text

from dbsystem import DatabaseManager, DatabaseType, TransactionCoordinator

PG, MY = DatabaseType.POSTGRES, DatabaseType.MYSQL
TABLE = "bench_2pc"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pg_url = os.environ.get("DBSYSTEM_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    my_url = os.environ.get("DBSYSTEM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    n, rounds = (50, 3) if args.quick else (200, 5)

    db = DatabaseManager()
    db.create_pool(PG, pg_url)
    db.create_pool(MY, my_url)
    for db_type in (PG, MY):
        db.execute(f"DROP TABLE IF EXISTS {TABLE}", db_type=db_type)
        db.execute(
            f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, note VARCHAR(20))", db_type=db_type
        )
    ids = itertools.count(1)
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    coordinator = TransactionCoordinator(db, log=log)

    def dbsystem_2pc() -> None:
        i = next(ids)
        with coordinator.transaction([PG, MY]) as tx:
            tx.connection(PG).execute(f"INSERT INTO {TABLE} VALUES (:i, 'x')", {"i": i})
            tx.connection(MY).execute(f"INSERT INTO {TABLE} VALUES (:i, 'x')", {"i": i})

    def dbsystem_local() -> None:
        i = next(ids)
        with db.transaction(PG) as a:
            a.execute(f"INSERT INTO {TABLE} VALUES (:i, 'x')", {"i": i})
        with db.transaction(MY) as b:
            b.execute(f"INSERT INTO {TABLE} VALUES (:i, 'x')", {"i": i})

    pg = psycopg.connect(pg_url, autocommit=True)
    my = pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)
    my_cur = my.cursor()

    def raw_2pc() -> None:
        i, gid = next(ids), f"raw_{uuid.uuid4().hex[:16]}"
        pg.execute("BEGIN")
        pg.execute(f"INSERT INTO {TABLE} VALUES (%s, 'x')", (i,))
        my_cur.execute(f"XA START '{gid}'")
        my_cur.execute(f"INSERT INTO {TABLE} VALUES (%s, 'x')", (i,))
        pg.execute(f"PREPARE TRANSACTION '{gid}'")
        my_cur.execute(f"XA END '{gid}'")
        my_cur.execute(f"XA PREPARE '{gid}'")
        pg.execute(f"COMMIT PREPARED '{gid}'")
        my_cur.execute(f"XA COMMIT '{gid}'")

    pg_engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    my_engine = create_engine(my_url.replace("mysql://", "mysql+pymysql://"))
    sa_pg, sa_my = pg_engine.connect(), my_engine.connect()

    def sqlalchemy_2pc() -> None:
        i = next(ids)
        xid = uuid.uuid4().hex[:16]
        tpg = sa_pg.begin_twophase(f"sa_{xid}")
        tmy = sa_my.begin_twophase(f"sa_{xid}")
        sa_pg.execute(text(f"INSERT INTO {TABLE} VALUES (:i, 'x')"), {"i": i})
        sa_my.execute(text(f"INSERT INTO {TABLE} VALUES (:i, 'x')"), {"i": i})
        tpg.prepare()
        tmy.prepare()
        tpg.commit()
        tmy.commit()

    cases: dict[str, Callable[[], None]] = {
        "raw drivers, 2PC by hand": raw_2pc,
        "SQLAlchemy Core, begin_twophase": sqlalchemy_2pc,
        "dbsystem TransactionCoordinator": dbsystem_2pc,
        "dbsystem, two local transactions": dbsystem_local,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        for _ in range(10):
            fn()
    for _ in range(rounds):
        for name, fn in cases.items():
            for _ in range(n):
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000)
    floor = statistics.median(times["raw drivers, 2PC by hand"])
    print(f"One row on PostgreSQL and one on MariaDB, ms per transaction, {rounds} x {n}")
    for name, values in times.items():
        values.sort()
        median, p99 = statistics.median(values), values[int(len(values) * 0.99) - 1]
        print(f"  {name:<34} median {median:6.2f}  p99 {p99:6.2f}  ({median / floor:.2f}x raw)")
    sa_pg.close()
    sa_my.close()
    pg.close()
    my.close()
    for db_type in (PG, MY):
        db.execute(f"DROP TABLE {TABLE}", db_type=db_type)
    db.close_all()
    os.unlink(log)


if __name__ == "__main__":
    main()
