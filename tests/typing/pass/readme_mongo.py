"""The README's mongo example, copied unchanged (test_readme_examples_are_copied)."""

from dbsystem import DatabaseManager, DatabaseType, PoolConfig

db = DatabaseManager()

# --- README ---
from dbsystem.query import col

db.create_pool(DatabaseType.MONGODB, PoolConfig(url="mongodb://127.0.0.1:27017/app"))
users = db.query(DatabaseType.MONGODB).collection("users")
users.create_index("email", unique=True).execute()
for person in (
    {"name": "ada", "email": "ada@example.com", "age": 36},
    {"name": "alan", "email": "alan@example.com", "age": 41},
):
    users.where("email", "=", person["email"]).replace_one(person, upsert=True).execute()
users.find({"age": {"$gt": 18}}).project("name").sort("age", -1).limit(10).execute()
users.where((col("age") > 18) & col("name").like("a%")).count().execute()  # same filters as SQL
users.where("name", "=", "ada").update_one({"$inc": {"age": 1}}).execute()
users.aggregate().match(col("age") > 18).group("$country", n={"$sum": 1}).execute()
