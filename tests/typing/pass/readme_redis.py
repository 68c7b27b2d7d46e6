"""The README's redis example, copied unchanged (test_readme_examples_are_copied)."""

from dbsystem import DatabaseManager, DatabaseType, PoolConfig

db = DatabaseManager()

# --- README ---
db.create_pool(DatabaseType.REDIS, PoolConfig(url="redis://127.0.0.1:6379/0", max_size=20))
r = db.query(DatabaseType.REDIS)
r.hset("user:1", {"name": "ada", "email": "ada@example.com"}).execute()
r.hget("user:1", "email").execute()  # 'ada@example.com'
r.hget("user:1", "email").build()  # ['HGET', 'user:1', 'email']
r.zadd("board", {"ada": 120, "bob": 95}).zrevrank("board", "bob").execute()  # [2, 1]
r.incr("hits").expire("hits", 60).multi().execute()  # one MULTI/EXEC transaction
for key in r.scan(match="user:*"):
    ...  # SCAN, never KEYS
with db.connection(DatabaseType.REDIS) as conn:
    with conn.subscribe("news") as sub:  # pub/sub; sub.stop() ends the loop
        ...
