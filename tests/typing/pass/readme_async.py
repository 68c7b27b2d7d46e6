"""The README's async (in a coroutine: top-level await is a notebook's) example, copied unchanged (test_readme_examples_are_copied)."""

from dbsystem import DatabaseType


async def main() -> None:
    from dbsystem import AsyncDatabaseManager

    adb = AsyncDatabaseManager.instance()
    await adb.create_pool(DatabaseType.POSTGRES, "postgresql://app@localhost/shop")
    async with adb.connection(DatabaseType.POSTGRES) as conn:
        rows = await conn.fetch_all("SELECT * FROM users WHERE id = :id", {"id": 1})
    rows = await adb.query(DatabaseType.POSTGRES).select("*").from_("users").limit(10).execute()
