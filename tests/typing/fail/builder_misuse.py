"""Misuses of the SQL builders that both checkers must flag (each marked line only)."""

from __future__ import annotations

from typing import Any

from dbsystem import AsyncDatabaseManager, DatabaseManager, DatabaseType
from dbsystem.query import col

db = DatabaseManager()
q = db.query(DatabaseType.SQLITE)
Rows = list[dict[str, Any]]
rows: Rows = q.insert_into("t").values(a=1).execute()  # E: assignment reportAssignmentType
count: int = q.select("a").from_("t").execute()  # E: assignment reportAssignmentType
one: dict[str, Any] = q.select("a").from_("t").first()  # E: assignment reportAssignmentType
q.select("a").from_("t").limit("10")  # E: arg-type reportArgumentType
q.select("a").from_(42)  # E: arg-type reportArgumentType
q.select("a").from_("t").join("u", on="t.id = u.id")  # E: arg-type reportArgumentType
q.update("t").set({1: "x"})  # E: dict-item reportArgumentType
q.select("a").from_("t").execute(conn="sqlite")  # E: call-overload reportCallIssue
q.select("a").from_("t").nonexistent()  # E: attr-defined reportAttributeAccessIssue
col("a").like(1).foo  # E: attr-defined reportAttributeAccessIssue
q.update("t").set(a=object())  # E: arg-type reportArgumentType
q.update("t").set({"a": {1, 2}})  # E: dict-item reportArgumentType
q.insert_into("t").values(a=lambda: 1)  # E: arg-type reportArgumentType
q.insert_into("t").values([{"a": 1}, {"a": Exception()}])  # E: dict-item reportArgumentType
q.insert_into("t").values(a=1).upsert(["a"], {"b": print})  # E: dict-item reportArgumentType


async def awaited() -> None:
    adb = AsyncDatabaseManager.instance()
    aq = adb.query(DatabaseType.POSTGRES)
    found: Rows = aq.select("a").from_("t").all()  # E: assignment reportAssignmentType
    (await aq.select("a").from_("t").first())["a"]  # E: index reportOptionalSubscript
    n: int = await aq.select("a").from_("t").execute()  # E: assignment reportAssignmentType
