"""The README's quick start, query builder and ORM example, copied unchanged (test_readme_examples_are_copied)."""

from __future__ import annotations

# --- README ---
from dbsystem import DatabaseManager, DatabaseType, IntegrityError, PoolConfig

db = DatabaseManager.instance()  # process-wide; DatabaseManager() for an isolated one
db.create_pool(
    DatabaseType.SQLITE,
    # "sqlite:///app.db" for a file; this one is shared by the pool's connections, and new each run
    PoolConfig(url="sqlite://:memory:", min_size=2, max_size=10, acquire_timeout=5.0),
)
with db.connection(DatabaseType.SQLITE) as conn:  # borrowed from the pool, returned on exit
    conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    result = conn.execute("INSERT INTO users (name) VALUES (:name)", {"name": "ada"})
    print(result.rowcount, result.lastrowid)  # 1 1
    rows = conn.fetch_all("SELECT * FROM users WHERE name = :name", {"name": "ada"})
    print(rows)  # [{'id': 1, 'name': 'ada'}]

    with conn.transaction():  # commits on clean exit
        conn.execute("INSERT INTO users (name) VALUES ('bob')")
        try:
            with conn.transaction():  # nested: a savepoint
                conn.execute("INSERT INTO users (name) VALUES ('ada')")
        except IntegrityError as exc:  # rolled back to the savepoint only
            print(exc.backend, exc.message)  # sqlite UNIQUE constraint failed: ...

print(db.fetch_value("SELECT COUNT(*) FROM users"))  # 2: the only pool is the default
print(db.pool_stats()[DatabaseType.SQLITE].acquired)
db.close_all()

# --- README ---
from dbsystem.query import col, count

top = (
    db.query(DatabaseType.SQLITE)
    .select(col("a.name").as_("artist"), count().as_("albums"))
    .from_("artists", alias="a")
    .join("albums", on=col("al.artist_id") == col("a.id"), alias="al")
    .where(col("a.name").like("A%"))
    .group_by("a.name")
    .order_by("albums", "desc")
    .limit(5)
)
sql, params = top.build()  # SQLite SQL with bound parameters
rows = top.execute()

# --- README ---
from dbsystem.orm import Entity, Field


class Member(Entity, table="members"):
    id: int | None = Field(default=None, primary_key=True, auto_increment=True)
    username: str = Field(max_length=50, index=True)
    email: str = Field(unique=True)
    age: int = 0


db.create_tables([Member])  # CREATE TABLE IF NOT EXISTS, with its indexes
ada = Member.query(db).where(Member.email == "ada@example.com").first()
if ada is None:  # (unique email: saved once, found on the next run)
    ada = Member(username="ada", email="ada@example.com", age=36).save(db)  # id filled in
Member.query(db).where(Member.age > 18).order_by("username").limit(10).all()
