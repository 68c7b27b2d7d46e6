"""Query builders side by side: the same questions asked of a SQL database, MongoDB and Redis.

Each builder shows what it will send (``build()``: SQL with bound parameters, a MongoDB
command document, Redis command words) and then runs it. Values are always bound or sent
as data, never pasted into the statement.

Run: ``python -m samples.query_builders`` (SQLite file, mock MongoDB and Redis), or with
``--sql-url``, ``--mongo-url`` and ``--redis-url`` for real servers.
"""

from __future__ import annotations

from dbsystem import DatabaseManager, DatabaseType
from dbsystem.query import avg, col, count
from samples._common import database_type, own_tables, sample_urls

PEOPLE = [
    {"id": 1, "name": "Ada", "dept": "research", "salary": 120, "active": True},
    {"id": 2, "name": "Alan", "dept": "research", "salary": 110, "active": True},
    {"id": 3, "name": "Grace", "dept": "engineering", "salary": 130, "active": True},
    {"id": 4, "name": "Linus", "dept": "engineering", "salary": 90, "active": False},
    {"id": 5, "name": "Barbara", "dept": "engineering", "salary": 100, "active": True},
]


def sql_side(db: DatabaseManager, sql: DatabaseType) -> None:
    q = db.query(sql)
    with db.connection(sql) as conn:
        conn.execute(
            "CREATE TABLE sample_people (id INTEGER PRIMARY KEY, name VARCHAR(50), "
            "dept VARCHAR(50), salary INTEGER, active BOOLEAN)"
        )
    q.insert_into("sample_people").values(PEOPLE).execute()
    by_dept = (
        q.select("dept", count().as_("people"), avg("salary").as_("avg_salary"))
        .from_("sample_people")
        .where(col("active") == True)  # noqa: E712 - an expression, not a comparison
        .group_by("dept")
        .having(count() >= 2)
        .order_by("dept")
    )
    text, params = by_dept.build()
    print(f"SQL   {' '.join(text.split())}\n      params {params}")
    for row in by_dept.all():
        print(
            f"      {row['dept']}: {row['people']} people, average {float(row['avg_salary']):.0f}"
        )
    q.update("sample_people").set({"salary": col("salary") + 10}).where(col("id") == 4).execute()
    salary = q.select("salary").from_("sample_people").where(col("id") == 4).scalar_value()
    print(f"      Linus now earns {salary}")


def mongo_side(db: DatabaseManager) -> None:
    people = db.query(DatabaseType.MONGODB).collection("sample_people")
    people.insert_many([{**p, "_id": p["id"]} for p in PEOPLE]).execute()
    by_dept = (
        people.aggregate()
        .match(col("active") == True)  # noqa: E712 - the same expression language
        .group("$dept", people={"$sum": 1}, avg_salary={"$avg": "$salary"})
        .match({"people": {"$gte": 2}})
        .sort("_id")
    )
    print(f"Mongo {by_dept.build()}")
    for doc in by_dept.execute():
        print(f"      {doc['_id']}: {doc['people']} people, average {doc['avg_salary']:.0f}")
    people.where("_id", "=", 4).update_one({"$inc": {"salary": 10}}).execute()
    print(f"      Linus now earns {people.where('_id', '=', 4).first()['salary']}")


def redis_side(db: DatabaseManager) -> None:
    r = db.query(DatabaseType.REDIS)
    r.delete("sample:salaries", "sample:raises").execute()  # a clean start on a real server
    for person in PEOPLE:
        r = r.hset(
            f"sample:person:{person['id']}", {"name": person["name"], "dept": person["dept"]}
        )
        if person["active"]:
            r = r.zadd("sample:salaries", {person["name"]: person["salary"]})
    r.execute()  # one pipeline: every command above in one round trip
    top = db.query(DatabaseType.REDIS).zrevrange("sample:salaries", 0, 2, withscores=True)
    print(f"Redis {top.build()}")
    print("      top earners: " + ", ".join(f"{n} {s:.0f}" for n, s in top.execute()))
    raise_linus = (
        db.query(DatabaseType.REDIS).incr("sample:raises").expire("sample:raises", 60).multi()
    )
    print(f"      {raise_linus.build()} -> {raise_linus.execute()}")


def main(urls: dict[str, str]) -> None:
    db = DatabaseManager()
    sql = database_type(urls["sql"])
    db.create_pool(sql, urls["sql"])
    db.create_pool(DatabaseType.MONGODB, urls["mongo"])
    db.create_pool(DatabaseType.REDIS, urls["redis"])
    try:
        with (
            own_tables(db, sql, "sample_people"),
            own_tables(db, DatabaseType.MONGODB, "sample_people"),
        ):
            sql_side(db, sql)
            mongo_side(db)
            redis_side(db)
    finally:
        db.close_all()


if __name__ == "__main__":
    with sample_urls(__doc__, "sql", "mongo", "redis") as urls:
        main(urls)
